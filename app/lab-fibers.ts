/**
 * The crash lab's fibers, registered by the demo worker (`app/sw.ts`) and relied on by the crash
 * suite (`e2e/`): `lab.ticker` streams one `tick` chunk per journaled step, `lab.effects` performs
 * one side effect per step into a ledger keyed by the step's `idempotencyKey`, so duplicated
 * executions and duplicated effects are countable (`readEffects`, served by the worker at
 * `GET /demo-api/lab/effects?fiberId=…`).
 */

import { type DBSchema, type IDBPDatabase, openDB } from "idb";
import { defineFiber, type FiberContext } from "../src/index";

/** Input of `lab.ticker`. */
export interface TickerInput {
  /** How many ticks (steps) to run. */
  count: number;
  /** How long each step takes, in ms. */
  intervalMs: number;
  /** Stash `{ ticks }` after each tick (a durable save point the crash suite interrupts). */
  stash?: boolean;
  /** After this many ticks, sleep durably for `sleepMs` (default: no sleep). */
  sleepAfter?: number;
  /** How long the durable sleep lasts, in ms. */
  sleepMs?: number;
}

/**
 * The lab's test channel (`BroadcastChannel`): `lab.ticker` posts `{ fiberId, stashing: ticks }`
 * right before each stash, so a test knows the stash is in flight. Not durable, not journaled.
 */
export const LAB_CHANNEL = "fiberline-lab";

/** Input of `lab.effects`. */
export interface EffectsInput {
  /** How many side-effecting steps to run. */
  count: number;
  /** How long each step waits after its effect, in ms (default 100): a crash then re-runs the step. */
  intervalMs?: number;
}

/** One ledger row: what happened under one idempotency key. */
export interface EffectEntry {
  /** The step's idempotency key (`fiberId:effect#n`). */
  key: string;
  fiberId: string;
  /** Which step (0-based) of the fiber. */
  index: number;
  /** How many times the step body ran for this key (more than 1 after an interrupted step re-ran). */
  executions: number;
  firstAt: number;
  lastAt: number;
  /**
   * Each execution: when its effect applied and, if its body got that far (it was not killed),
   * when the body returned or threw. Two runners executing one step at once show as two runs
   * whose times overlap.
   */
  runs: EffectRun[];
}

/** One execution of a lab effect step's body. */
export interface EffectRun {
  at: number;
  endedAt?: number;
}

/** The ledger's counts for one fiber (or all fibers). */
export interface EffectCounts {
  /** Distinct idempotency keys seen. */
  keys: number;
  /** Step-body executions in all. */
  executions: number;
  /**
   * Executions beyond the first per key: re-runs of steps a crash cut off after their effect. A
   * downstream that deduplicates by key (as this ledger does) applies each effect once anyway.
   */
  reExecutions: number;
  entries: EffectEntry[];
}

interface LedgerSchema extends DBSchema {
  effects: { key: string; value: EffectEntry; indexes: { fiberId: string } };
}

/** The IndexedDB database of the lab's side effects (separate from the runtime's `fiberline`). */
export const LEDGER_DB = "fiberline-lab-ledger";

let ledger: Promise<IDBPDatabase<LedgerSchema>> | undefined;

function openLedger(): Promise<IDBPDatabase<LedgerSchema>> {
  ledger ??= openDB<LedgerSchema>(LEDGER_DB, 1, {
    upgrade(db, oldVersion) {
      if (oldVersion < 1) {
        const effects = db.createObjectStore("effects", { keyPath: "key" });
        effects.createIndex("fiberId", "fiberId");
      }
    },
    terminated() {
      ledger = undefined;
    },
  });
  return ledger;
}

/**
 * Performs the lab's side effect under `key`: the first execution creates the row, later ones
 * (a step re-run after a crash) only count another execution, as a downstream API that
 * deduplicates by idempotency key would. One transaction, so a crash leaves all or nothing.
 */
export async function performEffect(key: string, fiberId: string, index: number): Promise<EffectEntry> {
  const db = await openLedger();
  const tx = db.transaction("effects", "readwrite");
  const now = Date.now();
  const existing = await tx.store.get(key);
  const entry: EffectEntry = existing
    ? {
        ...existing,
        executions: existing.executions + 1,
        lastAt: now,
        runs: [...(existing.runs ?? []), { at: now }],
      }
    : { key, fiberId, index, executions: 1, firstAt: now, lastAt: now, runs: [{ at: now }] };
  await tx.store.put(entry);
  await tx.done;
  return entry;
}

/**
 * Two runs of one effect step whose times overlap (one began while another's body had not yet
 * ended), described; `undefined` when none do. A run with no end (its worker was killed) is only
 * compared by when it began.
 */
export function overlappingRuns(runs: readonly EffectRun[]): string | undefined {
  for (const running of runs) {
    if (running.endedAt === undefined) continue;
    for (const other of runs) {
      if (other !== running && other.at >= running.at && other.at < running.endedAt)
        return `one ran from ${running.at} to ${running.endedAt}, another began at ${other.at}`;
    }
  }
  return undefined;
}

/** Records that the body of execution `run` (0-based) under `key` has returned or thrown. */
export async function endEffect(key: string, run: number): Promise<void> {
  const db = await openLedger();
  const tx = db.transaction("effects", "readwrite");
  const entry = await tx.store.get(key);
  const ended = entry?.runs?.[run];
  if (entry !== undefined && ended !== undefined) {
    ended.endedAt = Date.now();
    await tx.store.put(entry);
  }
  await tx.done;
}

/** The ledger's counts, for one fiber or all. */
export async function readEffects(fiberId?: string): Promise<EffectCounts> {
  const db = await openLedger();
  const entries = fiberId
    ? await db.getAllFromIndex("effects", "fiberId", fiberId)
    : await db.getAll("effects");
  entries.sort((a, b) => a.fiberId.localeCompare(b.fiberId) || a.index - b.index);
  const executions = entries.reduce((n, entry) => n + entry.executions, 0);
  return { keys: entries.length, executions, reExecutions: executions - entries.length, entries };
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts (cancel). */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function checkCount(count: unknown, what: string): number {
  if (!Number.isInteger(count) || (count as number) < 0 || (count as number) > 100_000)
    throw new TypeError(`${what}: count must be an integer from 0 to 100000, got ${String(count)}.`);
  return count as number;
}

/**
 * `lab.ticker`: for each `i` in `0..count-1`, a step that takes `intervalMs`, then a `tick`
 * chunk `{ i }`; with `stash`, a stash `{ ticks: i + 1 }` after each tick; with `sleepAfter`, a
 * durable sleep of `sleepMs` after that many ticks. Returns `{ ticks }`.
 *
 * Failure semantics: a completed step is never run again; a step cut off by a crash runs again,
 * and the reader still sees each `tick` exactly once (emits outside steps are replay-silent). A
 * stash cut off by a crash leaves the previous one; the replay stashes again as it passes.
 */
export const labTicker = defineFiber("lab.ticker", {
  async run(ctx, input: TickerInput): Promise<{ ticks: number }> {
    const count = checkCount(input.count, "lab.ticker");
    const intervalMs = Math.max(0, Number(input.intervalMs) || 0);
    const channel =
      input.stash && typeof BroadcastChannel === "function" ? new BroadcastChannel(LAB_CHANNEL) : null;
    try {
      for (let i = 0; i < count; i++) {
        await ctx.step("tick", async ({ signal }) => {
          if (intervalMs > 0) await delay(intervalMs, signal);
          return i;
        });
        ctx.emit("tick", { i });
        if (input.stash) {
          channel?.postMessage({ fiberId: ctx.id, stashing: i + 1 });
          await ctx.stash({ ticks: i + 1 });
        }
        if (input.sleepAfter === i + 1 && (input.sleepMs ?? 0) > 0)
          await ctx.sleep("nap", Number(input.sleepMs));
      }
    } finally {
      channel?.close();
    }
    return { ticks: count };
  },
});

/**
 * `lab.effects`: `count` steps, each applying one side effect to the ledger under its
 * `idempotencyKey` and then waiting `intervalMs`, with a `progress` chunk `{ done, count }` after
 * each. Returns `{ effects }`.
 *
 * Failure semantics: a step interrupted after its effect runs again with the same key; the
 * ledger counts the re-execution and does not apply the effect twice.
 */
export const labEffects = defineFiber("lab.effects", {
  async run(ctx, input: EffectsInput): Promise<{ effects: number }> {
    const count = checkCount(input.count, "lab.effects");
    const intervalMs = Math.max(0, Number(input.intervalMs ?? 100) || 0);
    for (let i = 0; i < count; i++) {
      await effectStep(ctx, i, intervalMs);
      ctx.emit("progress", { done: i + 1, count });
    }
    return { effects: count };
  },
});

/**
 * `lab.batch`: `lab.effects` in the fiber + stash shape (`resumeFrom: "stash"`). It keeps how many
 * items it has done in its snapshot and, run again after a crash, starts from there instead of
 * replaying from the top: per item, a step applying one side effect to the ledger under its
 * `idempotencyKey` and waiting `intervalMs`, a `progress` chunk `{ done, count }`, then a stash
 * `{ done }`. Returns `{ effects }`.
 *
 * Failure semantics: the steps and chunk made after the last stash replay (a completed step
 * returns its result, the chunk is not appended twice) and the rest run live, so each item's
 * effect is applied once and each `progress` chunk appears once.
 */
export const labBatch = defineFiber("lab.batch", {
  resumeFrom: "stash",
  async run(ctx, input: EffectsInput): Promise<{ effects: number }> {
    const count = checkCount(input.count, "lab.batch");
    const intervalMs = Math.max(0, Number(input.intervalMs ?? 100) || 0);
    let done = (ctx.snapshot as { done: number } | undefined)?.done ?? 0;
    while (done < count) {
      const i = done;
      await effectStep(ctx, i, intervalMs);
      ctx.emit("progress", { done: i + 1, count });
      done = i + 1;
      await ctx.stash({ done });
    }
    return { effects: count };
  },
});

/** Step "effect" of item `i`: its side effect on the ledger under the step's key, then `intervalMs`. */
function effectStep(ctx: FiberContext, i: number, intervalMs: number): Promise<number> {
  return ctx.step("effect", async ({ idempotencyKey, signal }) => {
    const { runs } = await performEffect(idempotencyKey, ctx.id, i);
    try {
      if (intervalMs > 0) await delay(intervalMs, signal);
    } finally {
      await endEffect(idempotencyKey, runs.length - 1);
    }
    return i;
  });
}
