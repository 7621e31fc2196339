/**
 * B1 and B2, run in the dedicated bench worker: sequential steps and stashes of one fiber, and
 * many fibers stepping at once, each beside the raw single-put baseline. The two sides alternate
 * in blocks (a block of steps, then a block of raw transactions, and so on), so that both see the
 * same moments of a machine that other work is loading.
 */

import { createRuntime, IdbStore, type Store } from "../../../src/index";
import { probe, stasher, stepper } from "../fibers";
import type { JobContext } from "../protocol";
import {
  deleteDatabase,
  openRaw,
  paddedRow,
  rawBatchedPuts,
  rawFencedBatch,
  rawFencedPuts,
  rawSinglePuts,
  rawStashPuts,
} from "../raw-idb";
import { watchTransactions } from "../tx-clock";

/** Record size of the baseline rows, the size PLATFORM.md's baseline used. */
const ROW_BYTES = 200;

export function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * A `probe.between` that runs `count` raw single-put transactions and adds up their time; with
 * `fenced`, also `count` raw fenced writes (`rawFencedPuts`), the shape a journal append needs.
 */
function rawBlocks(raw: IDBDatabase, ctx: JobContext, count: number, fenced = false, stashed = false) {
  const total = { ms: 0, puts: 0, fencedMs: 0, fencedPuts: 0, stashMs: 0, stashPuts: 0 };
  let n = 0;
  const between = async () => {
    const ms = await rawSinglePuts(raw, ctx.durability, count, () => paddedRow("raw", n++, ROW_BYTES));
    total.ms += ms * count;
    total.puts += count;
    if (stashed) {
      // The stasher's snapshot value: { i, pad }.
      const pad = "x".repeat(ROW_BYTES - 110);
      const stashMs = await rawStashPuts(raw, ctx.durability, count, (i) => ({ i, pad }));
      total.stashMs += stashMs * count;
      total.stashPuts += count;
    }
    if (!fenced) return;
    const fencedMs = await rawFencedPuts(raw, ctx.durability, count, () => paddedRow("raw", n++, ROW_BYTES));
    total.fencedMs += fencedMs * count;
    total.fencedPuts += count;
  };
  return { between, total };
}

/** B1: 1 fiber, `n` sequential steps and `n` stashes, against as many single-put transactions. */
export async function b1(
  ctx: JobContext,
  params: { n: number; block: number; profile?: "steps" | "stashes" },
) {
  const rawName = uniqueName("raw-b1");
  const engineName = uniqueName("engine-b1");
  const raw = await openRaw(rawName);
  const store = new IdbStore({ name: engineName, durability: ctx.durability });
  const runtime = createRuntime({ store, fibers: [stepper, stasher] });
  try {
    // Warm both connections so neither side pays for opening.
    await rawSinglePuts(raw, ctx.durability, 20, (n) => paddedRow("warm", n, ROW_BYTES));
    await store.getFiber("warm");

    const forSteps = rawBlocks(raw, ctx, params.block, true);
    probe.between = forSteps.between;
    const tx0 = runtime.commitStats.transactions;
    // Each step's time split: inside its transaction, and between two (the runtime's own path).
    const clock = watchTransactions([engineName, rawName]);
    // `npm run bench -- --profile-steps`: a CPU profile of this worker while the steps run.
    if (params.profile === "steps") await ctx.checkpoint("profile-start");
    const steps = await runtime.result(await runtime.start(stepper, { n: params.n, block: params.block }));
    if (params.profile === "steps") await ctx.checkpoint("profile-stop");
    clock.stop();
    const tx1 = runtime.commitStats.transactions;

    const forStashes = rawBlocks(raw, ctx, params.block, false, true);
    probe.between = forStashes.between;
    // A ~200-byte snapshot record: { fiberId, value: { i, pad }, at }.
    if (params.profile === "stashes") await ctx.checkpoint("profile-start");
    const stashes = await runtime.result(
      await runtime.start(stasher, { n: params.n, block: params.block, pad: "x".repeat(ROW_BYTES - 110) }),
    );
    if (params.profile === "stashes") await ctx.checkpoint("profile-stop");
    const tx2 = runtime.commitStats.transactions;

    const stepMs = steps.ms / params.n;
    const stashMs = stashes.ms / params.n;
    const rawForSteps = forSteps.total.ms / forSteps.total.puts;
    const rawForStashes = forStashes.total.ms / forStashes.total.puts;
    return {
      rawPutMs: (forSteps.total.ms + forStashes.total.ms) / (forSteps.total.puts + forStashes.total.puts),
      stepMs,
      stashMs,
      stepRatio: stepMs / rawForSteps,
      rawFencedMs: forSteps.total.fencedMs / forSteps.total.fencedPuts,
      stepFencedRatio: stepMs / (forSteps.total.fencedMs / forSteps.total.fencedPuts),
      stashRatio: stashMs / rawForStashes,
      rawStashShapedMs: forStashes.total.stashMs / forStashes.total.stashPuts,
      stashShapedRatio: stashMs / (forStashes.total.stashMs / forStashes.total.stashPuts),
      transactionsPerStep: (tx1 - tx0) / params.n,
      stepInsideTxMs: clock.of(engineName).insideMs,
      stepBetweenTxMs: clock.of(engineName).betweenMs,
      fencedInsideTxMs: clock.of(rawName, "records,rows").insideMs,
      fencedBetweenTxMs: clock.of(rawName, "records,rows").betweenMs,
      transactionsPerStash: (tx2 - tx1) / params.n,
    };
  } finally {
    probe.between = async () => {};
    await runtime.close();
    await store.close();
    raw.close();
    await Promise.all([deleteDatabase(rawName), deleteDatabase(engineName)]);
  }
}

/**
 * `store` with a way to wait until no commit is in flight: `idle()` first yields a task, so a
 * write deferred to the next task has started, then waits for every commit to settle.
 */
function commitsInFlight(inner: IdbStore): { store: Store; idle: () => Promise<void> } {
  let inFlight = 0;
  const store = new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      // Methods run on the store itself: its private fields are not the proxy's.
      if (property !== "commit") return value.bind(target);
      return (...args: unknown[]) => {
        inFlight++;
        return (value.apply(target, args) as Promise<unknown>).finally(() => {
          inFlight--;
        });
      };
    },
  }) as Store;
  const task = () => new Promise<void>((resolve) => setTimeout(resolve, 0));
  const idle = async () => {
    await task();
    while (inFlight > 0) await task();
  };
  return { store, idle };
}

/**
 * B2: `fibers` fibers stepping `steps` times each, all at once, in rounds of `block` steps; after
 * each round every fiber waits at a barrier while the job runs a block of raw single-put commits.
 */
export async function b2(
  ctx: JobContext,
  params: { fibers: number; steps: number; block: number; rawCount: number },
) {
  const rawName = uniqueName("raw-b2");
  const engineName = uniqueName("engine-b2");
  const raw = await openRaw(rawName);
  const idb = new IdbStore({ name: engineName, durability: ctx.durability });
  const { store, idle } = commitsInFlight(idb);
  const runtime = createRuntime({ store, fibers: [stepper] });
  try {
    await rawSinglePuts(raw, ctx.durability, 20, (n) => paddedRow("warm", n, ROW_BYTES));
    const blocks = rawBlocks(raw, ctx, params.rawCount);
    // The barrier: the last fiber to arrive runs the raw block, then releases everyone.
    let arrived = 0;
    let release: () => void = () => {};
    let round = new Promise<void>((resolve) => {
      release = resolve;
    });
    let rawMsTotal = 0;
    // The floor: one raw transaction of one put per fiber (what a batch of every fiber's step
    // writes at the very least), measured at the same barriers; rows/s.
    const batched = { puts: 0, ms: 0 };
    // The fenced floor: the same, plus a read of each fiber's owner record in the transaction
    // (what the engine's fence needs), committed once the reads are back.
    const fencedBatch = { puts: 0, ms: 0 };
    let batchRow = 0;
    probe.between = async () => {
      const mine = round;
      if (++arrived === params.fibers) {
        arrived = 0;
        // The round's last commit (every fiber's last completion, deferred to the next task) is
        // engine time: let it land before the raw side is timed, or it would run during it (and
        // be counted as raw time).
        await idle();
        const t0 = performance.now();
        const perSec = await rawBatchedPuts(raw, ctx.durability, params.fibers, () =>
          paddedRow("batch", batchRow++, ROW_BYTES),
        );
        batched.puts += params.fibers;
        batched.ms += (params.fibers / perSec) * 1000;
        const fencedPerSec = await rawFencedBatch(raw, ctx.durability, params.fibers, () =>
          paddedRow("fenced", batchRow++, ROW_BYTES),
        );
        fencedBatch.puts += params.fibers;
        fencedBatch.ms += (params.fibers / fencedPerSec) * 1000;
        await blocks.between();
        rawMsTotal += performance.now() - t0;
        const done = release;
        round = new Promise<void>((resolve) => {
          release = resolve;
        });
        done();
      }
      await mine;
    };
    let open!: () => void;
    probe.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const started = await Promise.all(
      Array.from({ length: params.fibers }, () =>
        runtime.start(stepper, { n: params.steps, block: params.block }),
      ),
    );
    const before = { ...runtime.commitStats };
    const t0 = performance.now();
    open();
    await Promise.all(started.map((fiber) => runtime.result(fiber)));
    const engineMs = performance.now() - t0 - rawMsTotal;
    const rawCommitsPerSec = 1000 / (blocks.total.ms / blocks.total.puts);
    const stepsPerSec = (params.fibers * params.steps) / (engineMs / 1000);
    const transactions = runtime.commitStats.transactions - before.transactions;
    const groups = runtime.commitStats.groups - before.groups;
    return {
      stepsPerSec,
      rawCommitsPerSec,
      ratio: stepsPerSec / rawCommitsPerSec,
      rawBatchedPerSec: batched.puts / (batched.ms / 1000),
      batchedRatio: stepsPerSec / (batched.puts / (batched.ms / 1000)),
      rawFencedBatchPerSec: fencedBatch.puts / (fencedBatch.ms / 1000),
      fencedBatchRatio: stepsPerSec / (fencedBatch.puts / (fencedBatch.ms / 1000)),
      transactions,
      fibersPerTransaction: groups / transactions,
    };
  } finally {
    probe.gate = Promise.resolve();
    probe.between = async () => {};
    await runtime.close();
    await store.close();
    raw.close();
    await Promise.all([deleteDatabase(rawName), deleteDatabase(engineName)]);
  }
}
