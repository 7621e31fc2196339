/**
 * B6 and B7, run in the dedicated bench worker: cold recovery of one fiber with a long journal
 * (against a raw `getAll` of the same rows), and a worker holding many waiting fibers and some
 * active ones (heap measured by the harness over CDP at the checkpoints, then a full `recover()`).
 */

import { createRuntime, IdbStore, type Runtime } from "../../../src/index";
import { delay, finisher, longJournal, probe, ticker, waiter } from "../fibers";
import type { JobContext } from "../protocol";
import { deleteDatabase, openRaw, rawGetAll } from "../raw-idb";
import { timedStore } from "../timed-store";
import { uniqueName } from "./step-jobs";

function openJournalDb(name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** One raw `getAll` of fiber `id`'s journal segments in the engine's database `name` (its handle looked up first, untimed). */
async function ownJournalRows(name: string, id: string): Promise<{ ms: number; rows: number }> {
  const db = await openJournalDb(name);
  try {
    const handle = await new Promise<number>((resolve, reject) => {
      const request = db.transaction("handles").objectStore("handles").get(id);
      request.onsuccess = () => resolve(request.result as number);
      request.onerror = () => reject(request.error);
    });
    return await rawGetAll(db, "journalSegments", handle);
  } finally {
    db.close();
  }
}

/** B6: a fiber with `n` completed steps, its runtime closed, then a cold runtime recovers it. */
export async function b6(ctx: JobContext, params: { n: number; batch: number; profile?: "replay" }) {
  const name = uniqueName("engine-b6");
  const first = new IdbStore({ name, durability: ctx.durability });
  const setup = createRuntime({ store: first, fibers: [longJournal] });
  const setupDone = new Promise<number>((resolve) => {
    probe.resumed = resolve;
  });
  const { id } = await setup.start(longJournal, { n: params.n, batch: params.batch });
  await setupDone;
  // Abandon the run as a crash would: the fiber stays `running` with its journal on disk.
  await setup.close();
  await first.close();

  // Raw baseline: the same journal entries stored the plain way (one object per entry, keyed
  // [fiberId, pos]), read with one getAll on a fresh connection.
  const reader = new IdbStore({ name });
  const entries = await reader.readJournal(id);
  await reader.close();
  const rawName = `${name}-raw`;
  const seed = await openRaw(rawName);
  const seeding = seed.transaction("rows", "readwrite", { durability: ctx.durability });
  for (const entry of entries) seeding.objectStore("rows").put({ ...entry, n: entry.pos });
  await new Promise((resolve, reject) => {
    seeding.oncomplete = resolve;
    seeding.onabort = () => reject(seeding.error);
  });
  seed.close();
  const rawDb = await openJournalDb(rawName);
  const rawFirst = await rawGetAll(rawDb, "rows", id);
  rawDb.close();
  // The read recovery cannot skip: the engine's own journal rows, one raw getAll, cold.
  const ownRows = await ownJournalRows(name, id);

  const store = new IdbStore({ name, durability: ctx.durability });
  await store.getFiber("warm-the-connection");
  const runtime = createRuntime({ store, fibers: [longJournal] });
  const resumed = new Promise<number>((resolve) => {
    probe.resumed = resolve;
  });
  // `npm run bench -- --profile-replay`: a CPU profile of this worker while it recovers.
  if (params.profile === "replay") await ctx.checkpoint("profile-start");
  const t0 = performance.now();
  const recovered = runtime.recover().then(() => performance.now());
  const resumedAt = await resumed;
  const recoverResolvedAt = await recovered;
  if (params.profile === "replay") await ctx.checkpoint("profile-stop");

  const rawDb2 = await openJournalDb(rawName);
  const rawSecond = await rawGetAll(rawDb2, "rows", id);
  rawDb2.close();
  await runtime.close();
  await store.close();
  await deleteDatabase(name);
  await deleteDatabase(rawName);

  const rawMs = Math.min(rawFirst.ms, rawSecond.ms);
  const resumeMs = resumedAt - t0;
  return {
    resumeMs,
    recoverCallMs: recoverResolvedAt - t0,
    rawGetAllMs: rawMs,
    rawRows: rawFirst.rows,
    ratio: resumeMs / rawMs,
    ownRowsMs: ownRows.ms,
    ownRows: ownRows.rows,
    ownRowsRatio: resumeMs / ownRows.ms,
  };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const end = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

/** B7: `waiting` suspended fibers and `active` stepping ones in one worker; then a cold `recover()`. */
export async function b7(ctx: JobContext, params: { waiting: number; active: number; interval: number }) {
  const name = uniqueName("engine-b7");
  await ctx.checkpoint("empty");
  const first = new IdbStore({ name, durability: ctx.durability });
  let runtime: Runtime = createRuntime({ store: first, fibers: [waiter, ticker] });
  probe.stop = false;
  const tStart = performance.now();
  await startInSlices(params.waiting, () => runtime.start(waiter, {}), 100);
  await until(
    async () => (await runtime.list({ status: "waiting" })).length === params.waiting,
    60_000,
    "waiting fibers to suspend",
  );
  const setupWaitingMs = performance.now() - tStart;
  for (let i = 0; i < params.active; i++) {
    await runtime.start(ticker, { n: 1_000_000, interval: params.interval, emit: false });
  }
  await delay(1_000);
  const loaded = { active: runtime.activeCount, setupWaitingMs };
  await ctx.checkpoint("loaded", loaded);

  // A worker restart: drop everything in memory, then recover all from disk.
  await runtime.close();
  await first.close();
  const store = new IdbStore({ name, durability: ctx.durability });
  await store.getFiber("warm-the-connection");
  const timed = timedStore(store);
  runtime = createRuntime({ store: timed.store, fibers: [waiter, ticker] });
  const t0 = performance.now();
  const summary = await runtime.recover();
  const recoverMs = performance.now() - t0;
  const storeCalls = structuredClone(timed.stats);
  await delay(1_000);
  await ctx.checkpoint("recovered", { active: runtime.activeCount });
  probe.stop = true;
  await runtime.close();
  await store.close();
  await deleteDatabase(name);
  return {
    recoverMs,
    resumed: summary.resumed.length,
    scheduled: summary.scheduled.length,
    activeBefore: loaded.active,
    setupWaitingMs,
    storeCalls,
  };
}

/** Calls `start` `count` times in slices of `slice`, so a setup does not queue thousands of transactions at once. */
async function startInSlices(count: number, start: () => Promise<unknown>, slice = 200) {
  for (let i = 0; i < count; i += slice) {
    await Promise.all(Array.from({ length: Math.min(slice, count - i) }, start));
  }
}

/**
 * B12: a database of `active` running, `waiting` suspended and `ended` completed fibers (10,000
 * in all in a full run), then `runs` cold `recover()`s of all of it, each in a fresh runtime on a
 * fresh connection, with the worker's heap measured by the harness after each.
 */
export async function b12(
  ctx: JobContext,
  params: { active: number; waiting: number; ended: number; interval: number; runs: number },
) {
  const name = uniqueName("engine-b12");
  const fibers = [waiter, ticker, finisher];
  await ctx.checkpoint("empty");
  const tSetup = performance.now();
  const first = new IdbStore({ name, durability: ctx.durability });
  const setup = createRuntime({ store: first, fibers });
  probe.stop = false;
  await startInSlices(params.ended, async () => {
    const { id } = await setup.start(finisher, {});
    await setup.result(id);
  });
  await startInSlices(params.waiting, () => setup.start(waiter, {}));
  await until(
    async () => (await setup.list({ status: "waiting" })).length === params.waiting,
    120_000,
    "waiting fibers to suspend",
  );
  await startInSlices(params.active, () =>
    setup.start(ticker, { n: 1_000_000, interval: params.interval, emit: false }),
  );
  await delay(500);
  // A worker restart: everything in memory dropped, the active fibers left `running` on disk.
  await setup.close();
  await first.close();
  const setupMs = performance.now() - tSetup;

  const runs: Array<{ recoverMs: number; resumed: number; scheduled: number }> = [];
  for (let r = 0; r < params.runs; r++) {
    const store = new IdbStore({ name, durability: ctx.durability });
    await store.getFiber("warm-the-connection");
    const runtime = createRuntime({ store, fibers });
    const t0 = performance.now();
    const summary = await runtime.recover();
    const recoverMs = performance.now() - t0;
    runs.push({ recoverMs, resumed: summary.resumed.length, scheduled: summary.scheduled.length });
    await ctx.checkpoint(`recovered-${r}`, { active: runtime.activeCount });
    // Abandoned as a crash would: the next run recovers the same database again.
    await runtime.close();
    await store.close();
  }
  probe.stop = true;
  await deleteDatabase(name);
  return { setupMs, total: params.active + params.waiting + params.ended, runs };
}
