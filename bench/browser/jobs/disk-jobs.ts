/**
 * B8, run in the dedicated bench worker: bytes on disk per step and per chunk, against raw rows
 * of the same payload, and collection of terminal fibers after their retention. Payloads are
 * random (incompressible) text, so the storage backend's compression cannot hide overhead. The
 * harness measures the profile's IndexedDB directory at each checkpoint; the worker adds
 * `navigator.storage.estimate()`.
 */

import { createRuntime, IdbStore } from "../../../src/index";
import { delay, diskEmitter, diskStepper } from "../fibers";
import type { JobContext } from "../protocol";
import { deleteDatabase, openRaw, randomText } from "../raw-idb";
import { uniqueName } from "./step-jobs";

async function usage(): Promise<number> {
  return (await navigator.storage.estimate()).usage ?? 0;
}

/** B8: `n` steps and `n` chunks of `size` random characters; raw rows of the same payload first. */
export async function b8(ctx: JobContext, params: { n: number; size: number; retentionMs: number }) {
  const rawName = uniqueName("raw-b8");
  const engineName = uniqueName("engine-b8");
  const marks: Record<string, number> = {};
  const mark = async (name: string) => {
    marks[name] = await usage();
    await ctx.checkpoint(name, { estimate: marks[name] });
  };

  await mark("empty");
  const raw = await openRaw(rawName);
  for (let i = 0; i < params.n; i += 100) {
    const tx = raw.transaction("rows", "readwrite", { durability: ctx.durability });
    const rows = tx.objectStore("rows");
    for (let j = i; j < Math.min(params.n, i + 100); j++)
      rows.put({ fiberId: "raw-fiber-0123456789abcdef0123456789ab", n: j, payload: randomText(params.size) });
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onabort = () => reject(tx.error);
    });
  }
  raw.close();
  await mark("raw");

  const store = new IdbStore({ name: engineName, durability: ctx.durability });
  const runtime = createRuntime({
    store,
    fibers: [diskStepper, diskEmitter],
    retentionMs: params.retentionMs,
  });
  const steps = await runtime.start(diskStepper, { n: params.n, size: params.size, batch: 100 });
  await runtime.result(steps);
  await mark("steps");
  const chunks = await runtime.start(diskEmitter, { n: params.n, size: params.size, burst: 100 });
  await runtime.result(chunks);
  await mark("chunks");

  await delay(params.retentionMs + 50);
  const collected = await runtime.collect();
  const left = {
    records: (await Promise.all([store.getFiber(steps.id), store.getFiber(chunks.id)])).filter(Boolean)
      .length,
    journal: (await store.readJournal(steps.id)).length,
    chunks: (await store.readStream(chunks.id, 0)).length,
  };
  await runtime.close();
  await store.close();
  await mark("collected");
  await Promise.all([deleteDatabase(rawName), deleteDatabase(engineName)]);
  return {
    collected: collected.length,
    left,
    estimates: marks,
  };
}
