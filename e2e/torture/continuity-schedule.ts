/**
 * The continuity torture run's seeded plan (`npm run torture -- --continuity`): which faults hit a
 * browser that replicates its fibers to the edge, in which order, after how much progress and for
 * how long, and which fibers (tickers and agents of `e2e/continuity/fibers.ts`) to start. Drawn
 * from the same seeded PRNG as the browser-only run's `schedule.ts`, so a seed replays the same
 * decisions whatever the machine's speed.
 */

import { prng } from "./schedule";

/** The faults of the continuity run: the browser's own, and the edge's and the link's. */
export type ContinuityFaultKind =
  /** SIGKILL of the browser; relaunched after `gapMs` (shorter or longer than the lease). */
  | "crash"
  /** Every Service Worker stopped over CDP (the tab stays open and starts a new one). */
  | "stop-worker"
  /** The tab closed; a new one opened after `gapMs`. */
  | "close-tab"
  /** `context.setOffline` for `gapMs`, well within the lease. */
  | "offline"
  /** `context.setOffline` past the lease: the tab stops, the edge takes over, the tab mirrors. */
  | "offline-past-lease"
  /** SIGKILL of wrangler and workerd; restarted on the same persisted state after `gapMs`. */
  | "edge-kill"
  /** The link between the homes cut for `gapMs`, well within the lease. */
  | "cut"
  /** The link cut past the lease, the page still open. */
  | "cut-past-lease";

export const CONTINUITY_FAULT_KINDS: readonly ContinuityFaultKind[] = [
  "crash",
  "stop-worker",
  "close-tab",
  "offline",
  "offline-past-lease",
  "edge-kill",
  "cut",
  "cut-past-lease",
];

/** One planned fault. */
export interface ContinuityFault {
  /** 1-based position in the schedule. */
  n: number;
  kind: ContinuityFaultKind;
  /** Chunks the live fibers must add (at the edge) after the previous fault before this one hits. */
  afterChunks: number;
  /** How long the fault lasts: offline, cut, no tab, the browser or the edge down (ms). */
  gapMs: number;
}

/**
 * One planned fiber of `e2e/continuity/fibers.ts`: a ticker, started as `ticker` (it stays at the
 * edge once taken over) or as `homer` (the same loop, whose kind comes home to the browser at its
 * next sleep), or an agent.
 */
export type ContinuityFiber =
  | { kind: "ticker"; name: "ticker" | "homer"; input: { ticks: number; intervalMs: number } }
  | { kind: "agent"; turns: number; turnMs: number };

function int(random: () => number, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1));
}

/** How often each fault is drawn: the new ones (edge, link, past the lease) most. */
const WEIGHTS: ReadonlyArray<readonly [ContinuityFaultKind, number]> = [
  ["crash", 3],
  ["stop-worker", 2],
  ["close-tab", 1],
  ["offline", 1],
  ["offline-past-lease", 2],
  ["edge-kill", 3],
  ["cut", 2],
  ["cut-past-lease", 2],
];

/**
 * How long each fault lasts, given the lease: "short" faults end well before the browser's own
 * deadline (lease minus its margin, DESIGN's Rule C), "past" ones outlast the arbiter's lease by
 * a second or more, so the edge takes over; a crash or an edge kill may be either.
 */
function gapFor(kind: ContinuityFaultKind, random: () => number, leaseMs: number): number {
  const short = () => int(random, 200, Math.floor(leaseMs * 0.4));
  const past = () => int(random, leaseMs + 1_500, leaseMs * 2 + 1_500);
  switch (kind) {
    case "stop-worker":
      return 0;
    case "close-tab":
    case "offline":
    case "cut":
      return short();
    case "offline-past-lease":
    case "cut-past-lease":
      return past();
    case "crash":
      return random() < 0.5 ? short() : past();
    case "edge-kill":
      // Plus the restart itself (wrangler takes seconds): often past the lease anyway.
      return int(random, 0, leaseMs);
  }
}

/**
 * The fault schedule of `seed`: `count` faults, each after 1 to `pace` chunks of progress, drawn
 * from `kinds` (default: all).
 */
export function planContinuityFaults(
  seed: number,
  count: number,
  options: { leaseMs: number; pace?: number; kinds?: readonly ContinuityFaultKind[] },
): ContinuityFault[] {
  const random = prng(seed);
  // `kinds` narrows the mix (to reduce a failing schedule); the draws stay seeded.
  const weights = WEIGHTS.filter(([kind]) => !options.kinds || options.kinds.includes(kind));
  if (weights.length === 0) throw new Error(`no fault kind among ${options.kinds?.join(",")}`);
  const total = weights.reduce((n, [, w]) => n + w, 0);
  return Array.from({ length: count }, (_, i) => {
    let roll = random() * total;
    let kind = weights[0]?.[0] ?? "crash";
    for (const [candidate, weight] of weights) {
      roll -= weight;
      if (roll < 0) {
        kind = candidate;
        break;
      }
    }
    return {
      n: i + 1,
      kind,
      afterChunks: int(random, 1, Math.max(1, options.pace ?? 8)),
      gapMs: gapFor(kind, random, options.leaseMs),
    };
  });
}

/** The `index`-th fiber of `seed`: tickers (durable sleeps between ticks; some come home) and agents. */
export function planContinuityFiber(seed: number, index: number): ContinuityFiber {
  const random = prng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const roll = random();
  if (roll < 0.55)
    return {
      kind: "ticker",
      name: roll < 0.35 ? "ticker" : "homer",
      input: { ticks: int(random, 6, 16), intervalMs: int(random, 300, 1_200) },
    };
  return { kind: "agent", turns: int(random, 3, 8), turnMs: int(random, 250, 900) };
}
