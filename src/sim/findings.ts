/**
 * What a schedule found: each violation names its seed, the invariant it broke, what was seen,
 * and the trace tail at the moment it was found. Shared by the ledger, the world and the final
 * checks of one schedule.
 */

import type { Trace } from "./trace";

/** One broken invariant. */
export interface Violation {
  seed: number;
  /** A stable name, e.g. `stream-gap`, `step-reexecuted`; the CLI groups by it. */
  invariant: string;
  /** The fiber concerned, when there is one. */
  fiberId?: string;
  detail: string;
  /** Virtual ms since the schedule started. */
  at: number;
  /** The last trace lines when it was found. */
  trace: string[];
}

/** The violations of one schedule, at most one per invariant and fiber. */
export class Findings {
  readonly seed: number;
  readonly violations: Violation[] = [];
  readonly #trace: Trace;
  readonly #now: () => number;
  readonly #seen = new Set<string>();
  /** Per fiber, a line printed above its violations' traces (its program). */
  readonly context = new Map<string, string>();

  /** How many trace lines each violation keeps. */
  lines = 40;

  constructor(seed: number, trace: Trace, now: () => number) {
    this.seed = seed;
    this.#trace = trace;
    this.#now = now;
  }

  /** Records a violation of `invariant` (repeats for the same fiber are dropped). */
  add(invariant: string, detail: string, fiberId?: string): void {
    const key = `${invariant}|${fiberId ?? ""}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.#trace.add("VIOLATE", `${invariant}${fiberId ? ` ${fiberId}` : ""}: ${detail}`);
    this.violations.push({
      seed: this.seed,
      invariant,
      ...(fiberId === undefined ? {} : { fiberId }),
      detail,
      at: this.#now(),
      trace: [
        ...(fiberId !== undefined && this.context.has(fiberId)
          ? [`  ${fiberId} = ${this.context.get(fiberId)}`]
          : []),
        ...this.#trace.format(this.lines),
      ],
    });
  }
}
