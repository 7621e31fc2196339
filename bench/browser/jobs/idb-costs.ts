/**
 * A diagnostic job (`npm run bench -- --costs`, not part of the table): what the engine's commit
 * shapes cost on this browser, request by request, next to the raw shapes. It is how a missed
 * target is traced to its cause (a read before the writes, one request per fiber, the `idb`
 * promise wrapper...). The raw shapes run on a database of their own with the engine's layout
 * (`fibers` keyed by id, rows keyed `[handle, n]`), plus a `fence` index for the key-only fence.
 */

import { unwrap, wrap } from "idb";
import type { FiberRecord } from "../../../src/core/records";
import { testRecord } from "../../../src/core/test-records";
import { IdbStore, type JournalEntry } from "../../../src/index";
import { commitGroups, commitScope, FiberKeys } from "../../../src/store/idb-commit";
import { IdbConnection } from "../../../src/store/idb-connection";
import { DB_VERSION, upgradeSchema } from "../../../src/store/idb-database";
import { encodeSegment } from "../../../src/store/idb-rows";
import type { JobContext } from "../protocol";
import { deleteDatabase, openRaw, paddedRow } from "../raw-idb";
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

/** A journal segment as the engine stores it (two entries: a completion and the next start). */
function segment(pos: number): unknown[] {
  const now = Date.now();
  return [
    [pos, 0, `s#${pos + 1}`, 1, 1, now, now, pos, undefined, undefined, 1],
    [pos + 1, 0, `s#${pos + 2}`, 0, 1, now],
  ];
}

/** The costs' fiber: a running record (`testRecord`), with the handle `IdbStore` stores beside it. */
function fiberRecord(id: string, handle: number) {
  return { ...costsRecord(id), handle };
}

function costsRecord(id: string): FiberRecord {
  const now = Date.now();
  return testRecord({ id, name: "x", input: {}, createdAt: now, updatedAt: now });
}

/** Per-transaction ms of each commit shape. */
export async function idbCosts(
  ctx: JobContext,
  params: { reps: number; fibers: number; profile?: boolean | string },
) {
  const d = { durability: ctx.durability };
  const ids = Array.from({ length: params.fibers }, () => crypto.randomUUID());
  const rawName = uniqueName("costs-raw");
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const r = indexedDB.open(rawName, 1);
    r.onupgradeneeded = () => {
      const fibers = r.result.createObjectStore("fibers", { keyPath: "id" });
      fibers.createIndex("fence", ["id", "handle", "generation"]);
      fibers.createIndex("status", "status");
      r.result.createObjectStore("journalSegments");
      r.result.createObjectStore("snapshots", { keyPath: "fiberId" });
    };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  {
    const tx = db.transaction("fibers", "readwrite");
    ids.forEach((id, i) => {
      tx.objectStore("fibers").put(fiberRecord(id, i + 1));
    });
    await done(tx);
  }

  // The engine's schema on an otherwise empty database: tells the schema's cost from the data's.
  const schemaName = uniqueName("costs-schema");
  const schemaDb = await new Promise<IDBDatabase>((resolve, reject) => {
    const r = indexedDB.open(schemaName, DB_VERSION);
    r.onupgradeneeded = (event) => upgradeSchema(r.result, event.oldVersion, r.transaction as IDBTransaction);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  {
    const tx = schemaDb.transaction("fibers", "readwrite");
    tx.objectStore("fibers").put(fiberRecord(ids[0] as string, 1));
    await done(tx);
  }
  const engineName = uniqueName("costs-engine");
  const engine = new IdbStore({ name: engineName, durability: ctx.durability });
  for (const id of ids) {
    await engine.createFiber(costsRecord(id), []);
    await engine.claimFiber(id, { owner: "costs", now: 0, leaseMs: 1 });
  }
  const generation = 2;

  const id = ids[0] as string;
  let pos = 0;
  const fence = (tx: IDBTransaction, fiberId: string, handle: number) =>
    req(
      tx
        .objectStore("fibers")
        .index("fence")
        .count(IDBKeyRange.only([fiberId, handle, 1])),
    );
  const snapshot = () => ({ fiberId: id, value: { i: pos++, pad: "x".repeat(90) }, at: Date.now() });

  const CREATE_SCOPE = ["fibers", "handles", "inputs", "meta", "stashes", "streamChunks"];
  let blindHandle = 5_000_000;
  const createWrites = (tx: IDBTransaction, fresh: string, h: number, how: "put" | "add") => {
    const record = { ...costsRecord(fresh), handle: h };
    const { input: _input, ...stored } = record;
    tx.objectStore("handles").put(h, fresh);
    if (how === "add") tx.objectStore("fibers").add(stored);
    else tx.objectStore("fibers").put(stored);
    tx.objectStore("inputs").put({ messages: [{ role: "user", content: "hi" }] }, fresh);
    tx.objectStore("stashes").delete(IDBKeyRange.bound([fresh], [fresh, []]));
    tx.objectStore("stashes").put({ fiber: fresh }, [fresh, 1]);
    tx.objectStore("streamChunks").put([1, "fiber.start", { name: "x", version: "1" }, Date.now()], [h, 1]);
  };
  const plainName = uniqueName("costs-plain");
  const plain = await openRaw(plainName);
  let plainN = 0;
  const plainRow = () => paddedRow("raw", plainN++, 200);
  // The probe fence: a row per fiber keyed [fiberId, generation] with a unique index on the
  // fiber id; a write under another generation collides, so nothing needs waiting on to commit.
  const probeName = uniqueName("costs-probe");
  const probe = await new Promise<IDBDatabase>((resolve, reject) => {
    const r = indexedDB.open(probeName, 1);
    r.onupgradeneeded = () => {
      r.result.createObjectStore("rows", { keyPath: ["fiberId", "n"] });
      r.result.createObjectStore("journalSegments");
      r.result.createObjectStore("fences").createIndex("fiber", "fiber", { unique: true });
    };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  {
    const tx = probe.transaction("fences", "readwrite");
    tx.objectStore("fences").put({ fiber: "fiber" }, ["fiber", 1]);
    for (const f of ids) tx.objectStore("fences").put({ fiber: f }, [f, 1]);
    await done(tx);
  }
  const wrapped = wrap(db);
  const engineDb = await new Promise<IDBDatabase>((resolve, reject) => {
    const r = indexedDB.open(engineName);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  // IdbStore.commit's layers, peeled one at a time (each on a fiber of its own, so none rewrites
  // another's segments): `commitGroups` in a raw transaction, then inside `IdbConnection.run`.
  const layerKeys = new FiberKeys();
  const runKeys = new FiberKeys();
  const connection = new IdbConnection({ name: engineName, durability: ctx.durability, kind: "costs" });
  const layerId = ids[1 % ids.length] as string;
  const runId = ids[2 % ids.length] as string;
  let layerPos = 0;
  let runPos = 0;
  // A step's write as the engine makes it: the completion of one step and the start of the next.
  const stepGroup = (fiberId: string, at: number) => ({
    fiberId,
    generation,
    journal: [entry(fiberId, at), entry(fiberId, at + 1)],
  });
  const single: Record<string, () => Promise<void>> = {
    engineCommitGroupsRawTx: async () => {
      const groups = [stepGroup(layerId, layerPos++)];
      const tx = engineDb.transaction(commitScope(groups), "readwrite", d);
      await Promise.all([commitGroups(tx, groups, layerKeys), done(tx)]);
    },
    engineCommitGroupsRun: async () => {
      const groups = [stepGroup(runId, runPos++)];
      await connection.run("commit", commitScope(groups), "readwrite", (tx) =>
        commitGroups(tx, groups, runKeys),
      );
    },
    // B1's two baselines, in their own database (inline [fiberId, n] keys, one small record).
    plainRowPut: async () => {
      const tx = plain.transaction("rows", "readwrite", d);
      tx.objectStore("rows").put(plainRow());
      await done(tx);
    },
    plainFencedCommit: async () => {
      const tx = plain.transaction(["records", "rows"], "readwrite", d);
      const read = req(tx.objectStore("records").get("fiber"));
      tx.objectStore("rows").put(plainRow());
      await read;
      tx.commit();
      await done(tx);
    },
    // A fenced write that waits on nothing: the probe row put under the writer's generation (a
    // collision aborts it), the key looked up before it (to tell a deleted fiber), commit() at once.
    probeFencedCommit: async () => {
      const tx = probe.transaction(["fences", "rows"], "readwrite", d);
      const fences = tx.objectStore("fences");
      const found = req(fences.getKey(["fiber", 1]));
      fences.put({ fiber: "fiber" }, ["fiber", 1]);
      tx.objectStore("rows").put(plainRow());
      tx.commit();
      await Promise.all([found, done(tx)]);
    },
    probeFencedSegmentCommit: async () => {
      const tx = probe.transaction(["fences", "journalSegments"], "readwrite", d);
      const fences = tx.objectStore("fences");
      const found = req(fences.getKey(["fiber", 1]));
      fences.put({ fiber: "fiber" }, ["fiber", 1]);
      tx.objectStore("journalSegments").put(segment(pos), [1, pos++]);
      tx.commit();
      await Promise.all([found, done(tx)]);
    },
    probeRowPutCommit: async () => {
      const tx = probe.transaction(["rows"], "readwrite", d);
      tx.objectStore("rows").put(plainRow());
      tx.commit();
      await done(tx);
    },
    // The same fenced write, with the segment value and key of a step in the plain database.
    plainFencedSegmentCommit: async () => {
      const tx = plain.transaction(["records", "rows"], "readwrite", d);
      const read = req(tx.objectStore("records").get("fiber"));
      tx.objectStore("rows").put({ fiberId: "raw", n: plainN++, s: segment(pos++) });
      await read;
      tx.commit();
      await done(tx);
    },
    // The engine's step shape in the engine's own database, by hand.
    engineDbGetAndPutCommit: async () => {
      const tx = engineDb.transaction(["fibers", "handles", "journalSegments"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      tx.objectStore("journalSegments").put(segment(pos), [1, 1_000_000 + pos++]);
      await read;
      tx.commit();
      await done(tx);
    },
    // The same, with the segment IdbStore would write for engineStep1's entries.
    engineDbEncodedCommit: async () => {
      const tx = engineDb.transaction(["fibers", "handles", "journalSegments"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      tx.objectStore("journalSegments").put(encodeSegment([entry(id, pos), entry(id, pos + 1)]), [
        1,
        1_000_000 + pos++,
      ]);
      await read;
      tx.commit();
      await done(tx);
    },
    // The same value rebuilt as fresh arrays (JSON round trip): the same bytes on disk, other
    // in-memory shapes (elements kinds) for V8's serializer.
    engineDbEncodedFreshCommit: async () => {
      const tx = engineDb.transaction(["fibers", "handles", "journalSegments"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      const value = JSON.parse(JSON.stringify(encodeSegment([entry(id, pos), entry(id, pos + 1)])));
      tx.objectStore("journalSegments").put(value, [1, 1_000_000 + pos++]);
      await read;
      tx.commit();
      await done(tx);
    },
    engineDbGetAndPutCommit2: async () => {
      const tx = engineDb.transaction(["fibers", "journalSegments"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      tx.objectStore("journalSegments").put(segment(pos), [1, 1_000_000 + pos++]);
      await read;
      tx.commit();
      await done(tx);
    },
    put1: async () => {
      const tx = db.transaction(["journalSegments"], "readwrite", d);
      tx.objectStore("journalSegments").put(segment(pos), [1, pos++]);
      await done(tx);
    },
    putSnapshot1: async () => {
      const tx = db.transaction(["snapshots"], "readwrite", d);
      tx.objectStore("snapshots").put(snapshot());
      await done(tx);
    },
    // IdbStore.commit's shape for steps and chunks: the fence read and the writes issued together,
    // commit() once the read is back.
    getAndPutCommit: async () => {
      const tx = db.transaction(["fibers", "journalSegments"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      tx.objectStore("journalSegments").put(segment(pos), [1, pos++]);
      await read;
      tx.commit();
      await done(tx);
    },
    // The same with a key-only fence: count() on an index of [id, handle, generation].
    countAndPutCommit: async () => {
      const tx = db.transaction(["fibers", "journalSegments"], "readwrite", d);
      const read = fence(tx, id, 1);
      tx.objectStore("journalSegments").put(segment(pos), [1, pos++]);
      await read;
      tx.commit();
      await done(tx);
    },
    // The stash shape of schema v2 (the same fence read first); v3's is sameDbStashRowCommit.
    getAndPutSnapshotCommit: async () => {
      const tx = db.transaction(["fibers", "snapshots"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      tx.objectStore("snapshots").put(snapshot());
      await read;
      tx.commit();
      await done(tx);
    },
    // The same without the explicit commit(): the transaction commits itself once the get's
    // success callback has run and nothing else is pending.
    getAndPutSnapshotAuto: async () => {
      const tx = db.transaction(["fibers", "snapshots"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      tx.objectStore("snapshots").put(snapshot());
      await read;
      await done(tx);
    },
    // The stash shape with the snapshot kept in the fibers store itself: one store in scope.
    getAndPutOneStoreCommit: async () => {
      const tx = db.transaction(["fibers"], "readwrite", d);
      const read = req(tx.objectStore("fibers").get(id));
      tx.objectStore("fibers").put({ ...snapshot(), id: `snapshot:${id}` });
      await read;
      tx.commit();
      await done(tx);
    },
    countAndPutSnapshotCommit: async () => {
      const tx = db.transaction(["fibers", "snapshots"], "readwrite", d);
      const read = fence(tx, id, 1);
      tx.objectStore("snapshots").put(snapshot());
      await read;
      tx.commit();
      await done(tx);
    },
    // The raw stash shape, but through idb's wrappers (proxies, a promise per request).
    idbGetAndPutSnapshotCommit: async () => {
      const tx = wrapped.transaction(["fibers", "snapshots"], "readwrite", d);
      const read = tx.objectStore("fibers").get(id);
      tx.objectStore("snapshots").put(snapshot());
      await read;
      (unwrap(tx) as IDBTransaction).commit();
      await tx.done;
    },
    // The engine's stash shape (schema v3), raw, on the engine's own database: the stash row is its
    // own fence (a unique index), the fiber's key is read alongside but not waited on to commit.
    sameDbStashRowCommit: async () => {
      const tx = engineDb.transaction(["fibers", "stashes"], "readwrite", d);
      const found = req(tx.objectStore("fibers").getKey(id));
      const { value, at } = snapshot();
      tx.objectStore("stashes").put({ fiber: id, value, at }, [id, generation]);
      tx.commit();
      await Promise.all([found, done(tx)]);
    },
    // The same on a fresh database with the engine's schema: tells the schema's cost from the data's.
    schemaDbStashRowCommit: async () => {
      const tx = schemaDb.transaction(["fibers", "stashes"], "readwrite", d);
      const found = req(tx.objectStore("fibers").getKey(id));
      const { value, at } = snapshot();
      tx.objectStore("stashes").put({ fiber: id, value, at }, [id, 1]);
      tx.commit();
      await Promise.all([found, done(tx)]);
    },
    // Start's registration (`IdbStore.createFiber`) on the engine's schema: as it is, reading
    // whether the id exists, the next handle and the generation floor before writing...
    createReadFirst: async () => {
      const tx = schemaDb.transaction(CREATE_SCOPE, "readwrite", d);
      const fresh = crypto.randomUUID();
      const [, handle] = await Promise.all([
        req(tx.objectStore("fibers").get(fresh)),
        req(tx.objectStore("meta").get("nextHandle")),
        req(tx.objectStore("meta").get("generationFloor")),
      ]);
      const h = ((handle as number | undefined) ?? 1_000_000) + 1;
      tx.objectStore("meta").put(h + 1, "nextHandle");
      createWrites(tx, fresh, h, "put");
      tx.commit();
      await done(tx);
    },
    // ... and blind: `add` refuses an id or idempotency key that exists (aborting), the handle
    // comes from a block reserved earlier, nothing is read; it commits itself, as IdbStore's does.
    createBlind: async () => {
      const tx = schemaDb.transaction(CREATE_SCOPE, "readwrite", d);
      createWrites(tx, crypto.randomUUID(), blindHandle++, "add");
      await done(tx);
    },
    engineStash1: async () => {
      await engine.commit([{ fiberId: id, generation, snapshot: snapshot() }]);
    },
    engineStep1: async () => {
      await engine.commit([stepGroup(id, pos++)]);
    },
  };
  const batch: Record<string, () => Promise<void>> = {
    batchPuts1: async () => {
      const tx = db.transaction(["journalSegments"], "readwrite", d);
      const j = tx.objectStore("journalSegments");
      ids.forEach((_, i) => {
        j.put(segment(pos), [i + 1, pos++]);
      });
      await done(tx);
    },
    batchGetsAndPutsCommit: async () => {
      const tx = db.transaction(["fibers", "journalSegments"], "readwrite", d);
      const fibers = tx.objectStore("fibers");
      const reads = Promise.all(ids.map((f) => req(fibers.get(f))));
      const j = tx.objectStore("journalSegments");
      ids.forEach((_, i) => {
        j.put(segment(pos), [i + 1, pos++]);
      });
      await reads;
      tx.commit();
      await done(tx);
    },
    batchProbesAndPutsCommit: async () => {
      const tx = probe.transaction(["fences", "journalSegments"], "readwrite", d);
      const fences = tx.objectStore("fences");
      const found = Promise.all(ids.map((f) => req(fences.getKey([f, 1]))));
      const j = tx.objectStore("journalSegments");
      ids.forEach((f, i) => {
        fences.put({ fiber: f }, [f, 1]);
        j.put(segment(pos), [i + 1, pos++]);
      });
      tx.commit();
      await Promise.all([found, done(tx)]);
    },
    batchPutsProbeDb: async () => {
      const tx = probe.transaction(["journalSegments"], "readwrite", d);
      const j = tx.objectStore("journalSegments");
      ids.forEach((_, i) => {
        j.put(segment(pos), [i + 1, pos++]);
      });
      await done(tx);
    },
    batchCountsAndPutsCommit: async () => {
      const tx = db.transaction(["fibers", "journalSegments"], "readwrite", d);
      const reads = Promise.all(ids.map((f, i) => fence(tx, f, i + 1)));
      const j = tx.objectStore("journalSegments");
      ids.forEach((_, i) => {
        j.put(segment(pos), [i + 1, pos++]);
      });
      await reads;
      tx.commit();
      await done(tx);
    },
    engineCommitBatch: async () => {
      await engine.commit(ids.map((f) => stepGroup(f, pos)));
      pos++;
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
  if (params.profile) {
    // The harness samples this worker's CPU while the engine commits one shape (npm run bench --
    // --costs --profile[=shape], default engineStash1; e.g. engineCommitBatch for B2's batches).
    const shape = typeof params.profile === "string" ? params.profile : "engineStash1";
    const body = single[shape] ?? batch[shape];
    if (body === undefined) throw new Error(`--profile=${shape}: no such shape`);
    await ctx.checkpoint("profile-start");
    for (let i = 0; i < params.reps; i++) await body();
    await ctx.checkpoint("profile-stop");
  }
  await run(single, params.reps);
  await run(batch, Math.max(5, Math.floor(params.reps / 15)));
  db.close();
  plain.close();
  probe.close();
  await deleteDatabase(probeName);
  await deleteDatabase(plainName);
  engineDb.close();
  await connection.close();
  schemaDb.close();
  await deleteDatabase(schemaName);
  await engine.close();
  await deleteDatabase(rawName);
  await deleteDatabase(engineName);
  return out;
}
