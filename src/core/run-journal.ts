/**
 * The journal as one run walks it. Every journaled operation of a handler (step, sleep, event
 * wait, `now`, `random`, `uuid`) takes the next position and a `name#n` key; on replay it gets
 * back what an earlier run recorded there. A handler that calls something else at a recorded
 * position has diverged, and its fiber fails. Used by `FiberRun` and its `FiberWaits`.
 */

import { deserializeError, ReplayDivergedError, StepFailedError } from "./errors";
import type { JournalEntry, JournalKind } from "./records";

/** An operation's place in the journal, and what an earlier run recorded there. */
export interface JournalSlot {
  pos: number;
  key: string;
  recorded: JournalEntry | undefined;
}

/** The in-memory journal of one run: loaded entries, and the entries this run settles. */
export class RunJournal {
  readonly #fiberId: string;
  readonly #entries = new Map<number, JournalEntry>();
  readonly #calls = new Map<string, number>();
  readonly #onDiverged: (error: ReplayDivergedError) => void;
  #nextPos = 0;

  /** `onDiverged` fails the fiber; `next` throws the same error to the handler right after. */
  constructor(
    fiberId: string,
    entries: readonly JournalEntry[],
    onDiverged: (error: ReplayDivergedError) => void,
  ) {
    this.#fiberId = fiberId;
    this.#onDiverged = onDiverged;
    for (const entry of entries) this.#entries.set(entry.pos, entry);
  }

  /**
   * Takes the next position for an operation of `kind` keyed `${label}#n`, the n-th call of this
   * run with that kind and label, and returns what the journal holds there. Throws
   * `ReplayDivergedError` when it holds a different operation.
   */
  next(kind: JournalKind, label: string): JournalSlot {
    const pos = this.#nextPos++;
    const call = `${kind}:${label}`;
    const n = (this.#calls.get(call) ?? 0) + 1;
    this.#calls.set(call, n);
    const key = `${label}#${n}`;
    const recorded = this.#entries.get(pos);
    if (recorded && (recorded.kind !== kind || recorded.key !== key)) {
      const error = new ReplayDivergedError(
        "replay_diverged",
        `Replay of fiber ${this.#fiberId} diverged at position ${pos}: the journal recorded ${recorded.kind} "${recorded.key}" but the handler now calls ${kind} "${key}". A handler must make the same calls in the same order on every run; to change a fiber's code, bump its version.`,
      );
      this.#onDiverged(error);
      throw error;
    }
    return { pos, key, recorded };
  }

  /** The entry at `pos`, as loaded or as this run last set it. */
  get(pos: number): JournalEntry | undefined {
    return this.#entries.get(pos);
  }

  /** Keeps `entry` at its position; writing it durably is the caller's job. */
  set(entry: JournalEntry): void {
    this.#entries.set(entry.pos, entry);
  }
}

/** The error a failed entry recorded, rebuilt with its class and `code`. */
export function recordedError(entry: JournalEntry): Error {
  return entry.error
    ? deserializeError(entry.error)
    : new StepFailedError("step_failed", `Step "${entry.key}" failed.`);
}
