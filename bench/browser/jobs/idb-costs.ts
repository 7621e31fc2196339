/**
 * A diagnostic job (`idb-costs`, not part of the table): what the engine's commit shapes cost on
 * this browser, request by request, next to the raw shapes. It is how a missed target is traced to
 * its cause (a read before the writes, one request per fiber, the `idb` promise wrapper...).
 */

import { IdbStore, type JournalEntry } from "../../../src/index";
import type { JobContext } from "../protocol";
import { deleteDatabase } from "../raw-idb";
import { uniqueName } from "./step-jobs";

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error);
  });
}

function req<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function entry(fiberId: string, pos: number): JournalEntry {
  return {
    fiberId,
    pos,
    kind: "step",
    key: `s#${pos + 1}`,
    status: "completed",
    attempt: 1,
    startedAt: Date.now(),
    endedAt: Date.now(),
    result: pos,
    streamFrom: 1,
  };
}

/** Per-transaction ms of each commit shape. */
export async function idbCosts(ctx: JobContext, params: { reps: number; fibers: number }) {
  const name = uniqueName("costs");
  const store = new IdbStore({ name, durability: ctx.durability });
  const ids = Array.from({ length: params.fibers }, () => crypto.randomUUID());
  for (const id of ids) {
    await store.createFiber(
      {
        id,
        name: "x",
        version: "1",
        input: {},
        status: "running",
        createdAt: Date.now(),
        updatedAt: Date.now(),
        generation: 1,
        streamHead: 1,
        emitOrdinal: 0,
        epoch: 0,
        stalledRecoveries: 0,
        progressMark: "",
      },
      [],
    );
  }
  await store.close();
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const r = indexedDB.open(name);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  const d = { durability: ctx.durability };
  const id = ids[0] as string;
  let pos = 0;
  const engine = new IdbStore({ name, durability: ctx.durability });
  await engine.getFiber(id);
  // A write-only fence, for comparison: rows keyed [fiberId, generation] with a unique index on
  // fiberId, so a put carrying a stale generation fails with ConstraintError instead of needing
  // a read first.
  const fenceName = `${name}-fence`;
  const fenceDb = await new Promise<IDBDatabase>((resolve, reject) => {
    const r = indexedDB.open(fenceName, 1);
    r.onupgradeneeded = () => {
      const fences = r.result.createObjectStore("fences", { keyPath: ["fiberId", "generation"] });
      fences.createIndex("fiber", "fiberId", { unique: true });
      r.result.createObjectStore("journal", { keyPath: ["fiberId", "pos"] });
    };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  {
    const tx = fenceDb.transaction("fences", "readwrite");
    for (const f of ids) tx.objectStore("fences").put({ fiberId: f, generation: 1 });
    await done(tx);
  }
  // The write-only fence really fences: a stale generation aborts the transaction.
  const staleFenceRejected = await (async () => {
    const tx = fenceDb.transaction(["fences", "journal"], "readwrite", d);
    tx.objectStore("fences").put({ fiberId: id, generation: 0 });
    tx.objectStore("journal").put(entry(id, -1));
    return done(tx).then(
      () => false,
      (error: unknown) => (error as DOMException | null)?.name === "ConstraintError",
    );
  })();
  const single: Record<string, () => Promise<void>> = {
    fencePut2Commit: async () => {
      const tx = fenceDb.transaction(["fences", "journal"], "readwrite", d);
      tx.objectStore("fences").put({ fiberId: id, generation: 1 });
      tx.objectStore("journal").put(entry(id, pos++));
      tx.objectStore("journal").put(entry(id, pos++));
      tx.commit();
      await done(tx);
    },
    put1: async () => {
      const tx = db.transaction(["journal"], "readwrite", d);
      tx.objectStore("journal").put(entry(id, pos++));
      await done(tx);
    },
    put2: async () => {
      const tx = db.transaction(["journal"], "readwrite", d);
      tx.objectStore("journal").put(entry(id, pos++));
      tx.objectStore("journal").put(entry(id, pos++));
      await done(tx);
    },
    get1: async () => {
      const tx = db.transaction(["fibers", "journal"], "readwrite", d);
      tx.objectStore("fibers").get(id);
      await done(tx);
    },
    getThenPut2: async () => {
      const tx = db.transaction(["fibers", "journal"], "readwrite", d);
      await req(tx.objectStore("fibers").get(id));
      tx.objectStore("journal").put(entry(id, pos++));
      tx.objectStore("journal").put(entry(id, pos++));
      await done(tx);
    },
    getAndPut2: async () => {
      const tx = db.transaction(["fibers", "journal"], "readwrite", d);
      tx.objectStore("fibers").get(id);
      tx.objectStore("journal").put(entry(id, pos++));
      tx.objectStore("journal").put(entry(id, pos++));
      await done(tx);
    },
    // The shape of IdbStore.commit: the fence read and the writes issued together, commit() once
    // the read is back.
    getAndPut2Commit: async () => {
      const tx = db.transaction(["fibers", "journal"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      tx.objectStore("journal").put(entry(id, pos++));
      tx.objectStore("journal").put(entry(id, pos++));
      await read;
      tx.commit();
      await done(tx);
    },
    put2Commit: async () => {
      const tx = db.transaction(["journal"], "readwrite", d);
      tx.objectStore("journal").put(entry(id, pos++));
      tx.objectStore("journal").put(entry(id, pos++));
      tx.commit();
      await done(tx);
    },
    // A stash's commit: the fence read and the snapshot put, raw and through IdbStore.
    getAndPutSnapshotCommit: async () => {
      const tx = db.transaction(["fibers", "snapshots"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      tx.objectStore("snapshots").put({
        fiberId: id,
        value: { i: pos++, pad: "x".repeat(90) },
        at: Date.now(),
      });
      await read;
      tx.commit();
      await done(tx);
    },
    engineStash1: async () => {
      await engine.commit([
        {
          fiberId: id,
          generation: 1,
          snapshot: { fiberId: id, value: { i: pos++, pad: "x".repeat(90) }, at: Date.now() },
        },
      ]);
    },
    engineCommit1: async () => {
      await engine.commit([{ fiberId: id, generation: 1, journal: [entry(id, pos++), entry(id, pos++)] }]);
    },
  };
  const batch: Record<string, () => Promise<void>> = {
    batchFencePutsAndPuts: async () => {
      const tx = fenceDb.transaction(["fences", "journal"], "readwrite", d);
      const fences = tx.objectStore("fences");
      const j = tx.objectStore("journal");
      for (const f of ids) {
        fences.put({ fiberId: f, generation: 1 });
        j.put(entry(f, pos++));
        j.put(entry(f, pos++));
      }
      tx.commit();
      await done(tx);
    },
    batchPuts: async () => {
      const tx = db.transaction(["journal"], "readwrite", d);
      const j = tx.objectStore("journal");
      for (const f of ids) {
        j.put(entry(f, pos++));
        j.put(entry(f, pos++));
      }
      await done(tx);
    },
    batchPuts1: async () => {
      const tx = db.transaction(["journal"], "readwrite", d);
      const j = tx.objectStore("journal");
      for (const f of ids) j.put(entry(f, pos++));
      await done(tx);
    },
    batchGets: async () => {
      const tx = db.transaction(["fibers", "journal"], "readwrite", d);
      const fibers = tx.objectStore("fibers");
      for (const f of ids) fibers.get(f);
      await done(tx);
    },
    batchGetAllRunning: async () => {
      const tx = db.transaction(["fibers", "journal"], "readwrite", d);
      await req(tx.objectStore("fibers").index("status").getAll("running"));
      await done(tx);
    },
    batchGetsThenPuts: async () => {
      const tx = db.transaction(["fibers", "journal"], "readwrite", d);
      const fibers = tx.objectStore("fibers");
      await Promise.all(ids.map((f) => req(fibers.get(f))));
      const j = tx.objectStore("journal");
      for (const f of ids) {
        j.put(entry(f, pos++));
        j.put(entry(f, pos++));
      }
      await done(tx);
    },
    engineCommitBatch: async () => {
      await engine.commit(
        ids.map((f) => ({ fiberId: f, generation: 1, journal: [entry(f, pos++), entry(f, pos++)] })),
      );
    },
  };
  const out: Record<string, number> = {};
  // Round-robin, so that a noisy moment on a shared machine hits every shape alike.
  const run = async (shapes: Record<string, () => Promise<void>>, reps: number) => {
    const totals: Record<string, number> = {};
    for (let rep = 0; rep < reps; rep++) {
      for (const [shape, body] of Object.entries(shapes)) {
        const t0 = performance.now();
        await body();
        totals[shape] = (totals[shape] ?? 0) + performance.now() - t0;
      }
    }
    for (const [shape, total] of Object.entries(totals)) out[shape] = total / reps;
  };
  await run(single, params.reps);
  await run(batch, Math.max(5, Math.floor(params.reps / 15)));
  db.close();
  fenceDb.close();
  await deleteDatabase(fenceName);
  out.staleFenceRejected = staleFenceRejected ? 1 : 0;
  await engine.close();
  await deleteDatabase(name);
  return out;
}
