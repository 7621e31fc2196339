/**
 * `IdbStore` in Node on fake-indexeddb: the `Store` contract suite, plus what only IndexedDB
 * has (durability, reopening, schema upgrade, another context upgrading or deleting the database).
 */

// idb needs IDBDatabase, IDBKeyRange & co. as globals; each test still injects a fresh factory.
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { FiberRecord } from "../core/records";
import { DB_VERSION } from "./idb-database";
import { IdbStore } from "./idb-store";
import { runStoreContract } from "./store-contract";

let dbCount = 0;
const uniqueName = () => `fiberline-test-${++dbCount}`;

runStoreContract(
  "IdbStore (fake-indexeddb)",
  () => new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() }),
);

const record: FiberRecord = {
  id: "f1",
  name: "research",
  version: "1",
  input: { topic: "t" },
  status: "running",
  idempotencyKey: "k1",
  createdAt: 1,
  updatedAt: 1,
  generation: 0,
  streamHead: 0,
  emitOrdinal: 0,
  epoch: 0,
  stalledRecoveries: 0,
  progressMark: "",
};

/** Opens `name` on `factory` without idb, at `version` (or the current one). */
function rawOpen(factory: IDBFactory, name: string, version?: number): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = factory.open(name, version);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error("blocked"));
  });
}

describe("IdbStore", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it.each(["relaxed", "strict"] as const)(
    "writes with %s durability and reads without an option",
    async (durability) => {
      const spy = vi.spyOn(IDBDatabase.prototype, "transaction");
      const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory(), durability });
      await store.createFiber(record, []);
      await store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1 });
      await store.getFiber("f1");
      // fake-indexeddb opens its own versionchange transaction through the same method.
      const calls = spy.mock.calls.filter(([, mode]) => mode !== "versionchange");
      expect(calls).toEqual([
        [["fibers", "chunks"], "readwrite", { durability }],
        [["fibers"], "readwrite", { durability }],
        [["fibers"], "readonly", {}],
      ]);
      await store.close();
    },
  );

  it("defaults to relaxed durability and the name fiberline", () => {
    const store = new IdbStore({ indexedDB: new IDBFactory() });
    expect(store.durability).toBe("relaxed");
    expect(store.name).toBe("fiberline");
  });

  it("sees its data again after close and reopen", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const first = new IdbStore({ name, indexedDB: factory });
    await first.createFiber(record, [{ fiberId: "f1", seq: 1, type: "fiber.start", data: null, at: 1 }]);
    await first.close();
    const second = new IdbStore({ name, indexedDB: factory });
    expect(await second.getFiber("f1")).toEqual(record);
    expect(await second.findByIdempotencyKey("k1")).toEqual(record);
    expect(await second.readStream("f1", 0)).toHaveLength(1);
    await second.close();
  });

  it("creates every object store and index when the database is new", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    expect(await store.listFibers()).toEqual([]);
    await store.close();

    const db = await rawOpen(factory, name);
    expect(db.version).toBe(DB_VERSION);
    expect([...db.objectStoreNames]).toEqual(["chunks", "fibers", "inbox", "journal", "snapshots"]);
    const tx = db.transaction(["fibers", "journal", "chunks", "inbox", "snapshots"]);
    const fibers = tx.objectStore("fibers");
    expect([...fibers.indexNames]).toEqual(["createdAt", "idempotencyKey", "status"]);
    expect(fibers.index("idempotencyKey").unique).toBe(true);
    expect(tx.objectStore("journal").keyPath).toEqual(["fiberId", "pos"]);
    expect(tx.objectStore("chunks").keyPath).toEqual(["fiberId", "seq"]);
    expect(tx.objectStore("inbox").keyPath).toEqual(["fiberId", "seq"]);
    expect(tx.objectStore("snapshots").keyPath).toBe("fiberId");
    db.close();
  });

  it("lets another context delete the database, then reopens a fresh one", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    await store.createFiber(record, []);
    await new Promise<void>((resolve, reject) => {
      const request = factory.deleteDatabase(name);
      request.onsuccess = () => resolve();
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error("delete blocked by the store's connection"));
    });
    expect(await store.getFiber("f1")).toBeUndefined();
    expect((await store.createFiber(record, [])).status).toBe("created");
    await store.close();
  });

  it("gives way to a newer version, then says to reload", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    await store.createFiber(record, []);
    const newer = await rawOpen(factory, name, DB_VERSION + 1);
    const error = await store.getFiber("f1").catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "store_error", message: expect.stringContaining("reload the page") });
    expect((error as Error).cause).toMatchObject({ name: "VersionError" });
    newer.close();
    await store.close();
  });

  it("settles calls and close() when closed while the database is still opening", async () => {
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
    const pending = store.getFiber("f1");
    await store.close();
    await expect(pending).rejects.toMatchObject({ code: "store_closed" });
  });

  it("opens one connection for concurrent first calls", async () => {
    const factory = new IDBFactory();
    const open = vi.spyOn(factory, "open");
    const store = new IdbStore({ name: uniqueName(), indexedDB: factory });
    await Promise.all([store.getFiber("a"), store.listFibers(), store.readStream("a", 0)]);
    expect(open).toHaveBeenCalledTimes(1);
    await store.close();
  });

  it("rejects with store_error when no IndexedDB exists", async () => {
    const saved = globalThis.indexedDB;
    vi.stubGlobal("indexedDB", undefined);
    try {
      await expect(new IdbStore({ name: uniqueName() }).getFiber("x")).rejects.toMatchObject({
        code: "store_error",
        message: expect.stringContaining("MemoryStore"),
      });
    } finally {
      vi.unstubAllGlobals();
    }
    expect(globalThis.indexedDB).toBe(saved);
  });

  it("rolls back a commit whose fiber write violates the idempotency index, naming the cause", async () => {
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
    await store.createFiber(record, []);
    await store.createFiber({ ...record, id: "f2", idempotencyKey: "k2" }, []);
    const error = await store
      .commit([{ fiberId: "f2", generation: 0, fiber: { idempotencyKey: "k1" } }])
      .catch((e: unknown) => e);
    expect((error as Error).cause).toMatchObject({ name: "ConstraintError" });
    expect(error).toMatchObject({ message: expect.stringContaining("idempotency key") });
    await store.close();
  });
});
