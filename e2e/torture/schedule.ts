/**
 * The torture run's seeded plan: which faults, in which order, after how much progress, and which
 * fibers to start. Everything is drawn from a seeded PRNG up front (faults) or per fiber index
 * (fibers, approvals), so a seed replays the same decisions whatever the machine's speed.
 */

import type { EffectsInput, TickerInput } from "../../app/lab-fibers";

/** The faults the torture run injects. */
export type FaultKind = "crash" | "stop-worker" | "reload" | "close-tab" | "offline";

/** One planned fault. */
export interface PlannedFault {
  /** 1-based position in the schedule. */
  n: number;
  kind: FaultKind;
  /** Chunks the live fibers must deliver after the previous fault before this one is injected. */
  afterChunks: number;
  /** How long the browser stays offline, or how long no tab is open after a close (ms). */
  gapMs: number;
}

/** One planned fiber. */
export type PlannedFiber =
  | { kind: "ticker"; input: TickerInput }
  /** `batch`: run as `lab.batch`, the same effects in the fiber + stash shape. */
  | { kind: "effects"; input: EffectsInput; batch?: boolean }
  | { kind: "assistant"; prompt: string; approve: boolean };

/** mulberry32: a small, fast, seedable PRNG returning numbers in [0, 1). */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function int(random: () => number, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1));
}

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

/** How often each fault is drawn (crashes are the most telling, and the slowest). */
const WEIGHTS: ReadonlyArray<readonly [FaultKind, number]> = [
  ["crash", 3],
  ["stop-worker", 3],
  ["reload", 2],
  ["close-tab", 2],
  ["offline", 1],
];

/**
 * The fault schedule of `seed`: `count` faults, each after 1 to `pace` chunks of progress (default
 * 12; a low pace crashes the fibers again before they recover far).
 */
export function planFaults(seed: number, count: number, pace = 12): PlannedFault[] {
  const random = prng(seed);
  const total = WEIGHTS.reduce((n, [, w]) => n + w, 0);
  return Array.from({ length: count }, (_, i) => {
    let roll = random() * total;
    let kind: FaultKind = "crash";
    for (const [candidate, weight] of WEIGHTS) {
      roll -= weight;
      if (roll < 0) {
        kind = candidate;
        break;
      }
    }
    return { n: i + 1, kind, afterChunks: int(random, 1, Math.max(1, pace)), gapMs: int(random, 200, 1_500) };
  });
}

const PROSE = [
  "Explain durable execution in two sentences",
  "Why should an agent loop survive a browser crash?",
  "Describe a step journal",
  "What is a fencing token for?",
  "Tell me about resumable streams",
];

/**
 * The `index`-th fiber of `seed`'s mix: lab tickers (some stashing), lab effects (some as
 * `lab.batch`, picking up from a stash) and the assistant.
 */
export function planFiber(seed: number, index: number): PlannedFiber {
  const random = prng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const roll = random();
  if (roll < 0.35)
    return {
      kind: "ticker",
      input: {
        count: int(random, 10, 40),
        intervalMs: int(random, 40, 150),
        ...(random() < 0.4 ? { stash: true } : {}),
      },
    };
  if (roll < 0.7)
    return {
      kind: "effects",
      input: { count: int(random, 5, 15), intervalMs: int(random, 80, 300) },
      ...(random() < 0.4 ? { batch: true } : {}),
    };
  const tool = random();
  if (tool < 0.2)
    return {
      kind: "assistant",
      prompt: `What is ${int(random, 2, 99)} * ${int(random, 2, 99)}?`,
      approve: true,
    };
  if (tool < 0.35) return { kind: "assistant", prompt: "Please delete notes.txt", approve: random() < 0.75 };
  return { kind: "assistant", prompt: pick(random, PROSE), approve: true };
}
