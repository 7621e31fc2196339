/**
 * B8, run in the dedicated bench worker, one phase per origin (the harness opens the page on a
 * separate port for each, so each phase has its own IndexedDB directory and nothing else writes
 * to it): raw rows of a random payload, engine steps returning that payload, engine chunks
 * carrying it. Payloads are random (incompressible) text, so the backend's compression cannot
 * hide overhead. The harness measures the origin's directory at the checkpoints, and sizes the rows
 * each phase left as they are stored once the backend has compacted its log; the engine phases
 * also check that terminal fibers are collected after their retention.
 */

import { createRuntime, IdbStore } from "../../../src/index";
import { delay, diskEmitter, diskStepper } from "../fibers";
import type { JobContext } from "../protocol";
import { deleteDatabase, dumpDatabase, openRaw, randomText } from "../raw-idb";

type Phase = "raw" | "steps" | "chunks";

/** Writes `n` random `size`-character payloads in the way of `phase`. */
export async function b8(
  ctx: JobContext,
  params: { phase: Phase; n: number; size: number; retentionMs: number },
) {
  if (params.phase === "raw") {
    // A database of its own per run: earlier runs' rows must not count.
    const rawName = `b8-raw-${crypto.randomUUID().slice(0, 8)}`;
    const raw = await openRaw(rawName);
    await ctx.checkpoint("opened");
    for (let i = 0; i < params.n; i += 100) {
      const tx = raw.transaction("rows", "readwrite", { durability: ctx.durability });
      const rows = tx.objectStore("rows");
      for (let j = i; j < Math.min(params.n, i + 100); j++)
        rows.put({ fiberId: crypto.randomUUID(), n: j, payload: randomText(params.size) });
      await new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        tx.onabort = () => reject(tx.error);
      });
    }
    const rows = await new Promise<unknown[]>((resolve, reject) => {
      const request = raw.transaction("rows").objectStore("rows").getAll();
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    raw.close();
    await ctx.checkpoint("written", {
      rows: rows.map((value) => {
        const row = value as { fiberId: string; n: number };
        return { store: "rows", key: [row.fiberId, row.n], value };
      }),
    });
    await deleteDatabase(rawName);
    return {};
  }

  const store = new IdbStore({ name: "b8-engine", durability: ctx.durability });
  const runtime = createRuntime({
    store,
    fibers: [diskStepper, diskEmitter],
    retentionMs: params.retentionMs,
  });
  await store.getFiber("warm-the-connection");
  await ctx.checkpoint("opened");
  const fiber =
    params.phase === "steps"
      ? // Sequential steps, the common agent shape and the worst case for per-row overhead: each
        // commit (one journal row) holds one step's completion and the next one's start.
        await runtime.start(diskStepper, { n: params.n, size: params.size, batch: 1 })
      : await runtime.start(diskEmitter, { n: params.n, size: params.size, burst: 100 });
  await runtime.result(fiber);
  // Every row the phase left, read raw from every object store of the engine's database (its
  // own origin holds nothing else), for the harness to size as stored (value + encoded key).
  await ctx.checkpoint("written", { rows: await dumpDatabase("b8-engine") });

  await delay(params.retentionMs + 50);
  const collected = await runtime.collect();
  const left = {
    records: (await store.getFiber(fiber.id)) === undefined ? 0 : 1,
    journal: (await store.readJournal(fiber.id)).length,
    chunks: (await store.readStream(fiber.id, 0)).length,
  };
  await runtime.close();
  await store.close();
  await ctx.checkpoint("collected");
  return { collected: collected.length, left };
}
