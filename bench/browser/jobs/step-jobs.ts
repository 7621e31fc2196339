/**
 * B1 and B2, run in the dedicated bench worker: sequential steps and stashes of one fiber, and
 * many fibers stepping at once, each beside the raw single-put baseline of the same run.
 */

import { createRuntime, IdbStore } from "../../../src/index";
import { probe, stasher, stepper } from "../fibers";
import type { JobContext } from "../protocol";
import { deleteDatabase, openRaw, paddedRow, rawSinglePuts } from "../raw-idb";

/** Record size of the baseline rows, the size PLATFORM.md's baseline used. */
const ROW_BYTES = 200;

export function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/** B1: 1 fiber, `n` sequential steps and `n` stashes, against `n` single-put transactions. */
export async function b1(ctx: JobContext, params: { n: number }) {
  const rawName = uniqueName("raw-b1");
  const engineName = uniqueName("engine-b1");
  const raw = await openRaw(rawName);
  const store = new IdbStore({ name: engineName, durability: ctx.durability });
  const runtime = createRuntime({ store, fibers: [stepper, stasher] });
  try {
    // Warm both connections so neither side pays for opening.
    await rawSinglePuts(raw, ctx.durability, 20, (n) => paddedRow("warm", n, ROW_BYTES));
    await store.getFiber("warm");

    const rawBefore = await rawSinglePuts(raw, ctx.durability, params.n, (n) => paddedRow("a", n, ROW_BYTES));
    const txSteps = runtime.commitStats.transactions;
    const steps = await runtime.result(await runtime.start(stepper, { n: params.n }));
    const txBefore = runtime.commitStats.transactions;
    const stepTransactions = txBefore - txSteps;
    // A ~200-byte snapshot record: { fiberId, value: { i, pad }, at }.
    const stashes = await runtime.result(
      await runtime.start(stasher, { n: params.n, pad: "x".repeat(ROW_BYTES - 110) }),
    );
    const stashTransactions = runtime.commitStats.transactions - txBefore;
    const rawAfter = await rawSinglePuts(raw, ctx.durability, params.n, (n) => paddedRow("b", n, ROW_BYTES));
    const rawMs = (rawBefore + rawAfter) / 2;
    const stepMs = (steps.t1 - steps.t0) / params.n;
    const stashMs = (stashes.t1 - stashes.t0) / params.n;
    return {
      rawPutMs: rawMs,
      stepMs,
      stashMs,
      stepRatio: stepMs / rawMs,
      stashRatio: stashMs / rawMs,
      transactionsPerStep: stepTransactions / params.n,
      transactionsPerStash: stashTransactions / params.n,
    };
  } finally {
    await runtime.close();
    await store.close();
    raw.close();
    await Promise.all([deleteDatabase(rawName), deleteDatabase(engineName)]);
  }
}

/** B2: `fibers` fibers stepping `steps` times each, all at once, against sequential single puts. */
export async function b2(ctx: JobContext, params: { fibers: number; steps: number; rawCount: number }) {
  const rawName = uniqueName("raw-b2");
  const engineName = uniqueName("engine-b2");
  const raw = await openRaw(rawName);
  const store = new IdbStore({ name: engineName, durability: ctx.durability });
  const runtime = createRuntime({ store, fibers: [stepper] });
  try {
    await rawSinglePuts(raw, ctx.durability, 20, (n) => paddedRow("warm", n, ROW_BYTES));
    const rawBefore = await rawSinglePuts(raw, ctx.durability, params.rawCount, (n) =>
      paddedRow("a", n, ROW_BYTES),
    );
    let open!: () => void;
    probe.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const started = await Promise.all(
      Array.from({ length: params.fibers }, () => runtime.start(stepper, { n: params.steps })),
    );
    const before = { ...runtime.commitStats };
    const t0 = performance.now();
    open();
    const results = await Promise.all(started.map((fiber) => runtime.result(fiber)));
    const t1 = Math.max(...results.map((r) => r.t1));
    const rawAfter = await rawSinglePuts(raw, ctx.durability, params.rawCount, (n) =>
      paddedRow("b", n, ROW_BYTES),
    );
    const rawCommitsPerSec = 1000 / ((rawBefore + rawAfter) / 2);
    const stepsPerSec = (params.fibers * params.steps) / ((t1 - t0) / 1000);
    const transactions = runtime.commitStats.transactions - before.transactions;
    const groups = runtime.commitStats.groups - before.groups;
    return {
      stepsPerSec,
      rawCommitsPerSec,
      ratio: stepsPerSec / rawCommitsPerSec,
      transactions,
      fibersPerTransaction: groups / transactions,
    };
  } finally {
    probe.gate = Promise.resolve();
    await runtime.close();
    await store.close();
    raw.close();
    await Promise.all([deleteDatabase(rawName), deleteDatabase(engineName)]);
  }
}
