/**
 * The schema-upgrade tests of `IdbStore`, shared by the Node suite (fake-indexeddb) and the
 * Chromium suite (real IndexedDB): databases written by schemas v1, v2, v3, v5, v6 and v7, exactly as they
 * shipped, are opened by the current `IdbStore` and must read back every fiber, journal entry,
 * chunk, event and snapshot, then go on working. They import Vitest, so they are not exported
 * from the package.
 */

import { expect, it } from "vitest";
import type { FiberRecord, JournalEntry } from "../core/records";
import { DB_VERSION } from "./idb-database";
import { IdbStore } from "./idb-store";

/** Where the test database lives. */
export interface UpgradeTarget {
  factory: IDBFactory;
  name: string;
}

/** Registers the v1, v2, v3, v5, v6, v7, v8, v9 and v10 -> current upgrade tests; `target()` gives a fresh, unused database name. */
export function runUpgradeTests(target: () => UpgradeTarget): void {
  it("upgrades a v10 database, making due the waiting fibers whose inbox already holds what they wait for", async () => {
    const { factory, name } = target();
    await writeV10(factory, name);
    const store = new IdbStore({ name, indexedDB: factory });
    // recover() no longer reads every waiting fiber's inbox: the upgrade made these due once.
    expect((await store.getFiber("w1"))?.wakeAt).toBe(30); // the earliest of its two events
    expect((await store.getFiber("w2"))?.wakeAt).toBe(10); // an earlier timer stays
    expect((await store.getFiber("w3"))?.wakeAt).toBeUndefined(); // its event was consumed
    expect((await store.getFiber("w4"))?.wakeAt).toBeUndefined(); // not what it waits for
    expect((await store.getFiber("w1"))?.status).toBe("waiting");
    expect((await store.readInbox("w1")).map((event) => event.seq)).toEqual([1, 2]);
    await store.close();
  });

  it("upgrades a v9 database, closing an earlier build's connection, and leaves stash tombstones from then on", async () => {
    const { factory, name } = target();
    const earlier = await writeV9(factory, name);
    let closedByUpgrade = false;
    earlier.onversionchange = () => {
      closedByUpgrade = true;
      earlier.close();
    };
    const store = new IdbStore({ name, indexedDB: factory });
    expect(await store.readSnapshot("f1")).toBeUndefined();
    // The earlier build, which deletes a fiber without its stash tombstone, can no longer write.
    expect(closedByUpgrade).toBe(true);
    const stash = (generation: number, value: string) => ({
      fiberId: "f1",
      generation,
      snapshot: { fiberId: "f1", value, at: 9 },
    });
    expect(await store.commit([stash(3, "kept")])).toEqual({ fenced: [] });
    expect(await store.readSnapshot("f1")).toMatchObject({ value: "kept" });
    await store.deleteFibers(["f1"]);
    expect(await store.commit([stash(3, "late")])).toEqual({ fenced: ["f1"] });
    expect(await store.readSnapshot("f1")).toBeUndefined();
    await store.close();
    const db = await open(factory, name);
    expect(db.version).toBe(DB_VERSION);
    db.close();
  });

  it("upgrades a v8 database, setting its generation floor's row so a registration written blind sees the floor", async () => {
    const { factory, name } = target();
    await writeV8(factory, name);
    const a = new IdbStore({ name, indexedDB: factory });
    const b = new IdbStore({ name, indexedDB: factory });
    expect(await a.getFiber("f1")).toMatchObject({ generation: 3, input: f1.input });
    const keys = await new Promise<IDBValidKey[]>((resolve, reject) => {
      void open(factory, name).then((db) => {
        const request = db.transaction("stashes").objectStore("stashes").getAllKeys();
        request.onsuccess = () => {
          db.close();
          resolve(request.result);
        };
        request.onerror = () => reject(request.error);
      }, reject);
    });
    expect(keys).toEqual([
      [0, 6],
      ["f1", 3],
    ]);

    // A fiber deleted at generation 6 left the floor at 6: f2, created again, starts above it,
    // and so does every registration after it, written blind.
    expect(
      (await a.createFiber({ ...f1, id: "f2", idempotencyKey: "k2", generation: 1 }, [])).record.generation,
    ).toBe(7);
    expect(
      (await a.createFiber({ ...f1, id: "f3", idempotencyKey: "k3", generation: 1 }, [])).record.generation,
    ).toBe(7);
    // Another store raises the floor: the first store's next blind registration collides and reads it.
    for (let i = 0; i < 4; i++) await b.claimFiber("f1", { owner: "b", now: 1, leaseMs: 1, force: true });
    await b.deleteFibers(["f1"]);
    expect(
      (await a.createFiber({ ...f1, id: "f1", idempotencyKey: "k1", generation: 1 }, [])).record.generation,
    ).toBe(8);
    expect(
      (await a.createFiber({ ...f1, id: "f4", idempotencyKey: "k4", generation: 1 }, [])).record.generation,
    ).toBe(8);
    await b.deleteFibers(["f1"]);
    expect(
      (await a.createFiber({ ...f1, id: "f5", idempotencyKey: "k5", generation: 1 }, [])).record.generation,
    ).toBe(9);
    await a.close();
    await b.close();
  });

  it("upgrades a v7 database, reading inputs kept in records and moving each out at its next claim", async () => {
    const { factory, name } = target();
    await writeV7(factory, name);

    const store = new IdbStore({ name, indexedDB: factory });
    const before = { ...f1, generation: 3, streamHead: 1 };
    expect(await store.getFiber("f1")).toEqual(before);
    expect(await store.findByIdempotencyKey("k1")).toEqual(before);
    expect(await store.listFibers()).toEqual([before]);
    // A commit rewrites the old record as it is, input included.
    const token = { fiberId: "f1", seq: 2, type: "token", data: "hi", at: 5 };
    expect(await store.commit([{ fiberId: "f1", generation: 3, chunks: [token] }])).toEqual({ fenced: [] });
    expect(await store.getFiber("f1")).toEqual({ ...before, streamHead: 2 });
    expect(await rawRow(factory, name, "fibers", "f1")).toHaveProperty("input", f1.input);

    // A claim (recovery) moves the input to its own row; the record no longer carries it.
    const claim = await store.claimFiber("f1", { owner: "b", now: 10, leaseMs: 5, force: true });
    expect(claim).toMatchObject({ status: "claimed", record: { input: f1.input, generation: 4 } });
    expect(await store.getFiber("f1")).toMatchObject({ input: f1.input, generation: 4, streamHead: 2 });
    await store.close();
    expect(await rawRow(factory, name, "fibers", "f1")).not.toHaveProperty("input");
    expect(await rawRow(factory, name, "inputs", "f1")).toEqual(f1.input);

    const reopened = new IdbStore({ name, indexedDB: factory });
    expect(await reopened.listFibers()).toMatchObject([{ id: "f1", input: f1.input, generation: 4 }]);
    await reopened.close();
  });

  it("upgrades a v6 database, indexing its ended fibers by end time for the collector", async () => {
    const { factory, name } = target();
    await writeV6(factory, name);

    const store = new IdbStore({ name, indexedDB: factory });
    // "done" ended with an endedAt; "old" ended by hand without one gets its updatedAt; the
    // running fiber is not listed.
    expect(await store.getFiber("old")).toMatchObject({ status: "cancelled", endedAt: 7 });
    expect(ids(await store.listFibers({ endedBefore: 100 }))).toEqual(["old", "done"]);
    expect(ids(await store.listFibers({ endedBefore: 8 }))).toEqual(["old"]);
    expect(await store.getFiber("f1")).toEqual({ ...f1, generation: 3 });
    // A fiber ended after the upgrade is indexed by the write that ends it.
    await store.commit([{ fiberId: "f1", generation: 3, fiber: { status: "completed", endedAt: 50 } }]);
    expect(ids(await store.listFibers({ endedBefore: 50 }))).toEqual(["f1", "old", "done"]);
    await store.close();

    const db = await open(factory, name);
    expect(db.version).toBe(DB_VERSION);
    expect([...db.transaction("fibers").objectStore("fibers").indexNames]).toContain("endedAt");
    db.close();
  });

  it("upgrades a v5 database, keeping every row and adding an empty outbox that replicated fibers then use", async () => {
    const { factory, name } = target();
    await writeV5(factory, name);

    const store = new IdbStore({ name, indexedDB: factory });
    expect(await store.getFiber("f1")).toEqual({ ...f1, generation: 3 });
    expect(await store.readJournal("f1")).toEqual([step(0, "completed"), step(1, "started")]);
    expect(await store.readStream("f1", 0)).toEqual([
      { fiberId: "f1", seq: 1, type: "fiber.start", data: null, at: 1 },
      { fiberId: "f1", seq: 2, type: "token", data: "hi", at: 2, step: 0 },
    ]);
    expect(await store.readInbox("f1")).toEqual([
      { fiberId: "f1", seq: 1, name: "approve", payload: true, at: 3 },
    ]);
    expect(await store.readSnapshot("f1")).toEqual({ fiberId: "f1", value: "v5", at: 8 });
    // No fiber was replicated before v6: the outbox is empty, and the old fiber writes none.
    expect(await store.loadOutbox()).toEqual([]);
    const write = { home: "browser:d1", replicated: new Set(["f3"]), appended: () => undefined };
    await store.commit([{ fiberId: "f1", generation: 3, journal: [step(1, "completed")] }], write);
    expect(await store.readJournal("f1")).toEqual([step(0, "completed"), step(1, "completed")]);
    // A fiber created replicated after the upgrade has its outbox.
    await store.createFiber({ ...f1, id: "f3", idempotencyKey: "k3" }, [], write);
    expect(
      (await store.loadOutbox()).map((saved) => [saved.fiberId, saved.entries.map((e) => e.pos)]),
    ).toEqual([["f3", [1]]]);
    await store.close();

    const db = await open(factory, name);
    expect(db.version).toBe(DB_VERSION);
    expect([...db.objectStoreNames]).toContain("outbox");
    expect([...db.objectStoreNames]).toContain("outboxFibers");
    db.close();
  });

  it("upgrades a v1 database in place, keeping every fiber, journal entry, chunk, event and snapshot", async () => {
    const { factory, name } = target();
    await writeV1(factory, name);

    const store = new IdbStore({ name, indexedDB: factory });
    expect(await store.listFibers()).toEqual([f2, f1]);
    expect(await store.findByIdempotencyKey("k1")).toEqual(f1);
    expect(await store.readJournal("f1")).toEqual([step(0, "completed"), step(1, "started")]);
    expect(await store.readStream("f1", 0)).toEqual([
      { fiberId: "f1", seq: 1, type: "fiber.start", data: null, at: 1 },
      { fiberId: "f1", seq: 2, type: "token", data: "hi", at: 2, step: 0 },
    ]);
    expect(await store.readInbox("f2")).toEqual([
      { fiberId: "f2", seq: 1, name: "approve", payload: true, at: 3, consumedBy: 4 },
      { fiberId: "f2", seq: 2, name: "approve", payload: false, at: 4 },
    ]);
    expect(await store.readSnapshot("f1")).toEqual({ fiberId: "f1", value: { draft: 1 }, at: 5 });

    // The migrated fibers go on as usual: a claim appends after the migrated entries, events number on.
    const claim = await store.claimFiber("f1", { owner: "a", now: 10, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("claim after upgrade");
    await store.commit([
      { fiberId: "f1", generation: claim.record.generation, journal: [step(1, "completed")] },
    ]);
    expect(await store.readJournal("f1")).toEqual([step(0, "completed"), step(1, "completed")]);
    // The snapshot moved with the claim, and a stash of the old generation is fenced.
    const stale = { fiberId: "f1", generation: f1.generation, snapshot: { fiberId: "f1", value: 0, at: 0 } };
    expect(await store.commit([stale])).toEqual({ fenced: ["f1"] });
    expect(await store.readSnapshot("f1")).toEqual({ fiberId: "f1", value: { draft: 1 }, at: 5 });
    expect((await store.enqueueEvent({ fiberId: "f2", name: "approve", payload: 1, at: 6 })).seq).toBe(3);
    // A fiber created after the upgrade has rows of its own.
    await store.createFiber({ ...f1, id: "f3", idempotencyKey: "k3" }, [
      { fiberId: "f3", seq: 1, type: "fiber.start", data: null, at: 7 },
    ]);
    expect(await store.readStream("f3", 0)).toHaveLength(1);
    expect(await store.readStream("f1", 0)).toHaveLength(2);
    await store.deleteFibers(["f1", "f2", "f3"]);
    expect(await store.listFibers()).toEqual([]);
    await store.close();

    const db = await open(factory, name);
    expect(db.version).toBe(DB_VERSION);
    expect([...db.objectStoreNames]).not.toContain("journal");
    expect([...db.objectStoreNames]).not.toContain("chunks");
    expect([...db.objectStoreNames]).not.toContain("inbox");
    expect([...db.objectStoreNames]).not.toContain("snapshots");
    db.close();
  });

  it("upgrades a v1 database straight to the current schema, making due a fiber whose event was stored while it ran", async () => {
    const { factory, name } = target();
    await writeV1(factory, name, true);
    const store = new IdbStore({ name, indexedDB: factory });
    // Made due once v1's inbox rows had moved (its event's time), with the record's handle kept.
    expect(await store.getFiber("f2")).toEqual({ ...f2, waitingFor: ["approve"], wakeAt: 4 });
    expect(await store.readInbox("f2")).toHaveLength(2);
    const claim = await store.claimFiber("f2", { owner: "a", now: 10, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("claim after upgrade");
    const group = {
      fiberId: "f2",
      generation: claim.record.generation,
      journal: [{ ...step(0, "completed"), fiberId: "f2" }],
    };
    expect(await store.commit([group])).toEqual({ fenced: [] });
    expect(await store.readJournal("f2")).toHaveLength(1);
    expect(await store.readJournal("f1")).toEqual([step(0, "completed"), step(1, "started")]);
    await store.close();
  });

  it("folds journal rows an earlier schema wrote together with new ones", async () => {
    const { factory, name } = target();
    // v1's entries become one row each at [handle, pos + 1]; rows before v5 hold absolute times.
    await writeV1(factory, name);
    const store = new IdbStore({ name, indexedDB: factory, journalFold: 4 });
    const claim = await store.claimFiber("f1", { owner: "a", now: 10, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("claim after upgrade");
    // Segment 4 closes the fold range [1, 4]: the two migrated rows, the claim's fence (3) and
    // this one.
    const generation = claim.record.generation;
    await store.commit([{ fiberId: "f1", generation, journal: [step(1, "completed"), step(2, "started")] }]);
    const expected = [step(0, "completed"), step(1, "completed"), step(2, "started")];
    expect(await store.readJournal("f1")).toEqual(expected);
    await store.close();
    // Read again by a store that did not write it.
    const again = new IdbStore({ name, indexedDB: factory });
    expect(await again.readJournal("f1")).toEqual(expected);
    await again.close();
    const db = await open(factory, name);
    const keys = await new Promise<IDBValidKey[]>((resolve, reject) => {
      const request = db.transaction("journalSegments").objectStore("journalSegments").getAllKeys();
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    db.close();
    // The fold, and the claim's fence (a recent claim's fence row is put back where it was).
    expect(keys).toHaveLength(2);
  });

  it("upgrades a v3 database, closing the connection an earlier build still holds on it", async () => {
    const { factory, name } = target();
    const earlier = await writeV3(factory, name);
    let closedByUpgrade = false;
    earlier.onversionchange = () => {
      closedByUpgrade = true;
      earlier.close();
    };

    const store = new IdbStore({ name, indexedDB: factory });
    expect(await store.getFiber("f1")).toEqual({ ...f1, generation: 3 });
    expect(await store.readSnapshot("f1")).toEqual({ fiberId: "f1", value: "v3", at: 8 });
    // Rows in the earlier layouts read back as written, and new rows go on after them.
    expect(await store.readJournal("f1")).toEqual([step(0, "completed")]);
    expect(await store.readStream("f1", 0)).toEqual([
      { fiberId: "f1", seq: 1, type: "fiber.start", data: null, at: 1 },
      { fiberId: "f1", seq: 2, type: "token", data: "hi", at: 2, step: 0 },
    ]);
    await store.commit([
      {
        fiberId: "f1",
        generation: 3,
        journal: [step(1, "completed")],
        chunks: [{ fiberId: "f1", seq: 3, type: "token", data: "new", at: 12, step: 1 }],
      },
    ]);
    expect(await store.readJournal("f1")).toEqual([step(0, "completed"), step(1, "completed")]);
    expect((await store.readStream("f1", 1)).map((chunk) => [chunk.seq, chunk.data])).toEqual([
      [2, "hi"],
      [3, "new"],
    ]);
    // The earlier build, which does not keep the generation floor, can no longer write.
    expect(closedByUpgrade).toBe(true);
    // The floor starts with the first deletion after the upgrade.
    await store.deleteFibers(["f1"]);
    expect((await store.createFiber(f1, [])).record.generation).toBe(4);
    await store.close();

    const db = await open(factory, name);
    expect(db.version).toBe(DB_VERSION);
    db.close();
  });

  it("upgrades a v2 database in place, giving every fiber its stash row and keeping its snapshot", async () => {
    const { factory, name } = target();
    await writeV2(factory, name);

    const store = new IdbStore({ name, indexedDB: factory });
    expect(await store.readSnapshot("f1")).toEqual({ fiberId: "f1", value: { draft: 2 }, at: 6 });
    expect(await store.readSnapshot("f2")).toBeUndefined();
    expect(await store.readJournal("f1")).toEqual([step(0, "completed")]);
    // Stashes are fenced from the first write on: the stored generation holds, any other collides.
    const stash = (fiberId: string, generation: number, value: unknown) => ({
      fiberId,
      generation,
      snapshot: { fiberId, value, at: 7 },
    });
    expect(await store.commit([stash("f1", 3, "new"), stash("f2", 0, "first")])).toEqual({ fenced: [] });
    expect(await store.commit([stash("f1", 2, "stale"), stash("f2", 1, "stale")])).toEqual({
      fenced: ["f1", "f2"],
    });
    expect(await store.readSnapshot("f1")).toMatchObject({ value: "new" });
    expect(await store.readSnapshot("f2")).toMatchObject({ value: "first" });
    const claim = await store.claimFiber("f2", { owner: "a", now: 10, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("claim after upgrade");
    expect(await store.readSnapshot("f2")).toMatchObject({ value: "first" });
    expect(await store.commit([stash("f2", 0, "stale")])).toEqual({ fenced: ["f2"] });
    await store.close();

    const db = await open(factory, name);
    expect(db.version).toBe(DB_VERSION);
    expect([...db.objectStoreNames]).not.toContain("snapshots");
    // One stash row per fiber: the snapshot of a fiber that no longer existed was dropped.
    const keys = await new Promise<IDBValidKey[]>((resolve, reject) => {
      const request = db.transaction("stashes").objectStore("stashes").getAllKeys();
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    // (The generation floor's row, keyed by a number, stands first since v9.)
    expect(keys.filter((key) => typeof (key as unknown[])[0] === "string")).toEqual([
      ["f1", 3],
      ["f2", 1],
    ]);
    db.close();
  });
}

const f1: FiberRecord = {
  id: "f1",
  name: "research",
  version: "1",
  input: { topic: "t" },
  status: "running",
  idempotencyKey: "k1",
  createdAt: 1,
  updatedAt: 1,
  generation: 0,
  streamHead: 2,
  emitOrdinal: 0,
  epoch: 0,
  stalledRecoveries: 0,
  progressMark: "",
};
const f2: FiberRecord = { ...f1, id: "f2", createdAt: 0, status: "waiting", idempotencyKey: "k2" };

/** Step `pos` of fiber f1 as a journal entry, the fixture of the IdbStore test files. */
export function step(pos: number, status: "started" | "completed"): JournalEntry {
  return {
    fiberId: "f1",
    pos,
    kind: "step",
    key: `s#${pos + 1}`,
    status,
    attempt: 1,
    startedAt: 10,
    ...(status === "completed" ? { endedAt: 11, result: pos } : {}),
  };
}

/** The `fibers` store and its indexes, the same in schemas v1, v2 and v3 as they shipped. */
function createShippedFibers(db: IDBDatabase): IDBObjectStore {
  const fibers = db.createObjectStore("fibers", { keyPath: "id" });
  fibers.createIndex("status", "status");
  fibers.createIndex("idempotencyKey", "idempotencyKey", { unique: true });
  fibers.createIndex("createdAt", "createdAt");
  return fibers;
}

/** The stores of schema v3 as it shipped, which v4 and v5 kept and v6 added the outbox to. */
function createShippedV3Stores(db: IDBDatabase): IDBObjectStore {
  const fibers = createShippedFibers(db);
  for (const store of ["handles", "meta", "journalSegments", "streamChunks", "inboxEvents"]) {
    db.createObjectStore(store);
  }
  db.createObjectStore("stashes").createIndex("fiber", "fiber", { unique: true });
  return fibers;
}

/** The stores of schema v6 as it shipped: v3's and the outbox (v7 indexed `fibers` by `endedAt`). */
function createShippedV6Stores(db: IDBDatabase): IDBObjectStore {
  const fibers = createShippedV3Stores(db);
  db.createObjectStore("outbox");
  db.createObjectStore("outboxFibers");
  return fibers;
}

/** Resolves once `tx` commits; rejects with its error if it aborts. */
function completion(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error);
  });
}

function open(factory: IDBFactory, name: string, version?: number, upgrade?: (db: IDBDatabase) => void) {
  return new Promise<IDBDatabase>((resolve, reject) => {
    const request = factory.open(name, version);
    request.onupgradeneeded = () => upgrade?.(request.result);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error(`opening ${name} is blocked by another connection`));
  });
}

/**
 * Schema v2 exactly as it shipped (v1's `fibers` and `snapshots`, the v2 stores), with two fibers
 * (one with a snapshot), a journal segment and the snapshot of a fiber that no longer exists.
 */
async function writeV2(factory: IDBFactory, name: string): Promise<void> {
  const db = await open(factory, name, 2, (v2) => {
    createShippedFibers(v2);
    v2.createObjectStore("snapshots", { keyPath: "fiberId" });
    for (const store of ["handles", "meta", "journalSegments", "streamChunks", "inboxEvents"]) {
      v2.createObjectStore(store);
    }
  });
  const tx = db.transaction(["fibers", "handles", "meta", "journalSegments", "snapshots"], "readwrite");
  tx.objectStore("fibers").put({ ...f1, generation: 3, handle: 1 });
  tx.objectStore("fibers").put({ ...f2, handle: 2 });
  tx.objectStore("handles").put(1, "f1");
  tx.objectStore("handles").put(2, "f2");
  tx.objectStore("meta").put(3, "nextHandle");
  // step(0, "completed") in the segment layout v2 to v4 shipped: no time base, absolute times.
  tx.objectStore("journalSegments").put(SHIPPED_SEGMENT, [1, 1]);
  tx.objectStore("snapshots").put({ fiberId: "f1", value: { draft: 2 }, at: 6 });
  tx.objectStore("snapshots").put({ fiberId: "gone", value: "orphan", at: 1 });
  await completion(tx);
  db.close();
}

/**
 * Schema v3 exactly as it shipped (v2's stores with `stashes` for `snapshots`) holding fiber f1
 * at generation 3 with a snapshot; returns the connection left open, as an earlier build's tab.
 */
async function writeV3(factory: IDBFactory, name: string): Promise<IDBDatabase> {
  const db = await open(factory, name, 3, createShippedV3Stores);
  const tx = db.transaction(
    ["fibers", "handles", "meta", "stashes", "journalSegments", "streamChunks"],
    "readwrite",
  );
  tx.objectStore("fibers").put({ ...f1, generation: 3, handle: 1 });
  tx.objectStore("handles").put(1, "f1");
  tx.objectStore("meta").put(2, "nextHandle");
  tx.objectStore("stashes").put({ fiber: "f1", value: "v3", at: 8 }, ["f1", 3]);
  // Rows in the layouts v2 to v4 shipped: a segment without a time base, chunks holding their seq.
  tx.objectStore("journalSegments").put(SHIPPED_SEGMENT, [1, 1]);
  tx.objectStore("streamChunks").put([1, "fiber.start", null, 1], [1, 1]);
  tx.objectStore("streamChunks").put([2, "token", "hi", 2, 0], [1, 2]);
  await completion(tx);
  return db;
}

/**
 * Schema v5 exactly as it shipped (v3's stores; rows in the v5 layout: segments with a time base,
 * chunks without their seq), holding fiber f1 at generation 3 with a journal, a stream, an event
 * and a snapshot.
 */
async function writeV5(factory: IDBFactory, name: string): Promise<void> {
  const db = await open(factory, name, 5, createShippedV3Stores);
  const stores = ["fibers", "handles", "meta", "stashes", "journalSegments", "streamChunks", "inboxEvents"];
  const tx = db.transaction(stores, "readwrite");
  tx.objectStore("fibers").put({ ...f1, generation: 3, handle: 1 });
  tx.objectStore("handles").put(1, "f1");
  tx.objectStore("meta").put(2, "nextHandle");
  tx.objectStore("stashes").put({ fiber: "f1", value: "v5", at: 8 }, ["f1", 3]);
  // step(0, "completed") and step(1, "started") in one v5 segment, time base 10.
  tx.objectStore("journalSegments").put(
    [10, [0, 19, "s#1", 0, 1, null, null, null, 0], [1, 18, "s#2", 0]],
    [1, 1],
  );
  tx.objectStore("streamChunks").put(["fiber.start", null, 1], [1, 1]);
  tx.objectStore("streamChunks").put(["token", "hi", 2, 0], [1, 2]);
  tx.objectStore("inboxEvents").put({ seq: 1, name: "approve", payload: true, at: 3 }, ["f1", 1]);
  await completion(tx);
  db.close();
}

/**
 * Schema v6 exactly as it shipped (v5's stores plus the outbox), holding fiber f1 running at
 * generation 3, a fiber that completed with an `endedAt` and one cancelled by hand without one.
 */
async function writeV6(factory: IDBFactory, name: string): Promise<void> {
  const db = await open(factory, name, 6, createShippedV6Stores);
  const tx = db.transaction(["fibers", "handles", "meta"], "readwrite");
  tx.objectStore("fibers").put({ ...f1, generation: 3, handle: 1 });
  tx.objectStore("fibers").put({
    ...f1,
    id: "done",
    idempotencyKey: "k-done",
    createdAt: 2,
    status: "completed",
    endedAt: 9,
    handle: 2,
  });
  tx.objectStore("fibers").put({
    ...f1,
    id: "old",
    idempotencyKey: "k-old",
    createdAt: 1,
    updatedAt: 7,
    status: "cancelled",
    handle: 3,
  });
  for (const [id, handle] of [
    ["f1", 1],
    ["done", 2],
    ["old", 3],
  ] as const) {
    tx.objectStore("handles").put(handle, id);
  }
  tx.objectStore("meta").put(4, "nextHandle");
  await completion(tx);
  db.close();
}

/**
 * Schema v7 exactly as it shipped (v6's stores, the `endedAt` index; inputs inside the records),
 * holding fiber f1 running at generation 3 with its stash row and its `fiber.start` chunk.
 */
async function writeV7(factory: IDBFactory, name: string): Promise<void> {
  const db = await open(factory, name, 7, (v7) => {
    createShippedV6Stores(v7).createIndex("endedAt", "endedAt");
  });
  const tx = db.transaction(["fibers", "handles", "meta", "stashes", "streamChunks"], "readwrite");
  tx.objectStore("fibers").put({ ...f1, generation: 3, streamHead: 1, handle: 1 });
  tx.objectStore("handles").put(1, "f1");
  tx.objectStore("meta").put(2, "nextHandle");
  tx.objectStore("stashes").put({ fiber: "f1" }, ["f1", 3]);
  tx.objectStore("streamChunks").put(["fiber.start", null, 1], [1, 1]);
  await completion(tx);
  db.close();
}

/**
 * Schema v8 exactly as it shipped (v7's stores and `inputs`), holding fiber f1 running at
 * generation 3, its input in its own row, and the generation floor at 6 (a fiber deleted there).
 */
async function writeV8(factory: IDBFactory, name: string): Promise<void> {
  const db = await open(factory, name, 8, (v8) => {
    createShippedV6Stores(v8).createIndex("endedAt", "endedAt");
    v8.createObjectStore("inputs");
  });
  const tx = db.transaction(["fibers", "handles", "inputs", "meta", "stashes", "streamChunks"], "readwrite");
  const { input, ...record } = f1;
  tx.objectStore("fibers").put({ ...record, generation: 3, streamHead: 1, handle: 1 });
  tx.objectStore("inputs").put(input, "f1");
  tx.objectStore("handles").put(1, "f1");
  tx.objectStore("meta").put(2, "nextHandle");
  tx.objectStore("meta").put(6, "generationFloor");
  tx.objectStore("stashes").put({ fiber: "f1" }, ["f1", 3]);
  tx.objectStore("streamChunks").put(["fiber.start", null, 1], [1, 1]);
  await completion(tx);
  db.close();
}

/** `writeV8`'s database as schema v9 left it (the floor's row in `stashes`), kept open as an earlier build would. */
async function writeV9(factory: IDBFactory, name: string): Promise<IDBDatabase> {
  await writeV8(factory, name);
  const db = await open(factory, name, 9);
  const tx = db.transaction("stashes", "readwrite");
  tx.objectStore("stashes").put({ fiber: 0 }, [0, 6]);
  await completion(tx);
  return db;
}

/**
 * `writeV9`'s database as schema v10 left it, with four fibers waiting for "go" whose runs
 * suspended after events were stored for them (the window v11 closes): w1 has two unconsumed
 * "go" events, w2 one and an earlier timer, w3 only a consumed one, w4 a "stop".
 */
async function writeV10(factory: IDBFactory, name: string): Promise<void> {
  (await writeV9(factory, name)).close();
  const db = await open(factory, name, 10);
  const tx = db.transaction(["fibers", "inboxEvents"], "readwrite");
  const { input: _input, ...record } = f1;
  const waiting = { ...record, status: "waiting", waitingFor: ["go"], idempotencyKey: undefined };
  tx.objectStore("fibers").put({ ...waiting, id: "w1", handle: 2 });
  tx.objectStore("fibers").put({ ...waiting, id: "w2", handle: 3, wakeAt: 10 });
  tx.objectStore("fibers").put({ ...waiting, id: "w3", handle: 4 });
  tx.objectStore("fibers").put({ ...waiting, id: "w4", handle: 5 });
  const event = (seq: number, at: number, more: object = {}) => ({
    seq,
    name: "go",
    payload: 1,
    at,
    ...more,
  });
  tx.objectStore("inboxEvents").put(event(1, 40), ["w1", 1]);
  tx.objectStore("inboxEvents").put(event(2, 30), ["w1", 2]);
  tx.objectStore("inboxEvents").put(event(1, 40), ["w2", 1]);
  tx.objectStore("inboxEvents").put(event(1, 40, { consumedBy: 2 }), ["w3", 1]);
  tx.objectStore("inboxEvents").put(event(1, 40, { name: "stop" }), ["w4", 1]);
  await completion(tx);
  db.close();
}

/** One row of `store` in the database `name`, read raw. */
async function rawRow(factory: IDBFactory, name: string, store: string, key: IDBValidKey): Promise<unknown> {
  const db = await open(factory, name);
  try {
    const tx = db.transaction(store);
    return await new Promise((resolve, reject) => {
      const request = tx.objectStore(store).get(key);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

function ids(records: readonly FiberRecord[]): string[] {
  return records.map((record) => record.id);
}

/** `step(0, "completed")` as a v2-v4 segment: `[pos, meta, key, startedAt, duration, error, dueAt, streamFrom, result]`. */
const SHIPPED_SEGMENT = [[0, 1 + 18 * 1, "s#1", 10, 1, null, null, null, 0]];

/**
 * Schema v1 exactly as it shipped, with rows of two fibers and one orphan journal entry; with
 * `waiting`, f2 waits for "approve" (its unconsumed one, seq 2, was stored while it ran).
 */
async function writeV1(factory: IDBFactory, name: string, waiting = false): Promise<void> {
  const db = await open(factory, name, 1, (v1) => {
    createShippedFibers(v1);
    v1.createObjectStore("journal", { keyPath: ["fiberId", "pos"] });
    v1.createObjectStore("snapshots", { keyPath: "fiberId" });
    v1.createObjectStore("chunks", { keyPath: ["fiberId", "seq"] });
    v1.createObjectStore("inbox", { keyPath: ["fiberId", "seq"] });
  });
  const tx = db.transaction(["fibers", "journal", "snapshots", "chunks", "inbox"], "readwrite");
  tx.objectStore("fibers").put(f1);
  tx.objectStore("fibers").put(waiting ? { ...f2, waitingFor: ["approve"] } : f2);
  tx.objectStore("journal").put(step(0, "completed"));
  tx.objectStore("journal").put(step(1, "started"));
  tx.objectStore("journal").put({ ...step(0, "completed"), fiberId: "gone" });
  tx.objectStore("chunks").put({ fiberId: "f1", seq: 1, type: "fiber.start", data: null, at: 1 });
  tx.objectStore("chunks").put({ fiberId: "f1", seq: 2, type: "token", data: "hi", at: 2, step: 0 });
  tx.objectStore("inbox").put({
    fiberId: "f2",
    seq: 1,
    name: "approve",
    payload: true,
    at: 3,
    consumedBy: 4,
  });
  tx.objectStore("inbox").put({ fiberId: "f2", seq: 2, name: "approve", payload: false, at: 4 });
  tx.objectStore("snapshots").put({ fiberId: "f1", value: { draft: 1 }, at: 5 });
  await completion(tx);
  db.close();
}
