/**
 * `IdbStore` in Node on fake-indexeddb: the `Store` contract suite, plus what only IndexedDB
 * has (durability, reopening, schema upgrade, another context upgrading or deleting the database).
 */

// idb needs IDBDatabase, IDBKeyRange & co. as globals; each test still injects a fresh factory.
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { FiberRecord, JournalEntry } from "../core/records";
import { FENCE_KEEP_MS, FENCELESS_WINDOW_MS, FOLD_MAX_BYTES } from "./idb-commit";
import { DB_VERSION } from "./idb-database";
import { runFencelessAppendTests } from "./idb-fenceless-cases";
import { IdbStore } from "./idb-store";
import { runUpgradeTests, step } from "./idb-upgrade-cases";
import { runStoreContract } from "./store-contract";

let dbCount = 0;
const uniqueName = () => `fiberline-test-${++dbCount}`;

runStoreContract(
  "IdbStore (fake-indexeddb)",
  () => new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() }),
);

// The same contract with a fold at every second commit of a journal: no case may tell it apart.
runStoreContract(
  "IdbStore (fake-indexeddb, journal folded every 2 commits)",
  () => new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory(), journalFold: 2 }),
);

describe("IdbStore schema upgrade (fake-indexeddb)", () => {
  runUpgradeTests(() => ({ factory: new IDBFactory(), name: uniqueName() }));
});

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
        [["fibers", "handles", "inputs", "meta", "stashes", "streamChunks"], "readwrite", { durability }],
        [["fibers", "inputs", "stashes", "journalSegments"], "readwrite", { durability }],
        [["fibers", "inputs"], "readonly", {}],
      ]);
      await store.close();
    },
  );

  it("claims fibers claimed at once in one transaction", async () => {
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
    const ids = Array.from({ length: 20 }, (_, i) => `f${i}`);
    for (const id of ids) await store.createFiber({ ...record, id, idempotencyKey: undefined }, []);
    const spy = vi.spyOn(IDBDatabase.prototype, "transaction");
    const claims = await Promise.all(
      ids.map((id) => store.claimFiber(id, { owner: "a", now: 1, leaseMs: 1 })),
    );
    expect(claims.every((claim) => claim.status === "claimed")).toBe(true);
    expect(spy.mock.calls.filter(([, mode]) => mode === "readwrite")).toHaveLength(1);
    await store.close();
  });

  it("reads a stream page and the fiber's record in one transaction, from one state", async () => {
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
    const chunk = (seq: number) => ({ fiberId: "f1", seq, type: "token", data: { seq }, at: 1 });
    await store.createFiber({ ...record, streamHead: 1 }, [{ ...chunk(1), type: "fiber.start" }]);
    const { record: claimed } = (await store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1 })) as {
      record: FiberRecord;
    };
    await store.commit([{ fiberId: "f1", generation: claimed.generation, chunks: [chunk(2), chunk(3)] }]);
    const spy = vi.spyOn(IDBDatabase.prototype, "transaction");
    const read = await store.readStreamAndRecord("f1", 1, 10);
    expect(read.chunks.map((c) => c.seq)).toEqual([2, 3]);
    expect(read.record?.streamHead).toBe(3);
    expect(spy.mock.calls.filter(([, mode]) => mode !== "versionchange")).toHaveLength(1);
    // The same answer as the two calls made one after the other.
    expect(read).toEqual({ chunks: await store.readStream("f1", 1, 10), record: await store.getFiber("f1") });
    expect(await store.readStreamAndRecord("missing", 0)).toEqual({ chunks: [], record: undefined });
    await store.close();
  });

  it("keeps each fiber's input in a row of its own, so a commit neither reads nor rewrites it", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    const conversation = {
      messages: Array.from({ length: 50 }, (_, i) => ({ role: "user", content: `turn ${i}` })),
    };
    const created = await store.createFiber({ ...record, input: conversation }, []);
    expect(created).toMatchObject({ status: "created", record: { input: conversation } });
    const { record: claimed } = (await store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1 })) as {
      record: FiberRecord;
    };
    expect(claimed.input).toEqual(conversation);
    const chunk = { fiberId: "f1", seq: claimed.streamHead + 1, type: "token", data: "hi", at: 2 };
    const put = vi.spyOn(IDBObjectStore.prototype, "put");
    await store.commit([{ fiberId: "f1", generation: claimed.generation, chunks: [chunk] }]);
    // The record is written back with its new stream head, without the conversation.
    const written = put.mock.calls.find(([value]) => (value as { id?: string }).id === "f1")?.[0];
    expect(written).toMatchObject({ id: "f1", streamHead: chunk.seq });
    expect(written).not.toHaveProperty("input");
    put.mockRestore();
    // Every way of reading the record gives it back whole.
    const whole = { ...claimed, streamHead: chunk.seq };
    expect(await store.getFiber("f1")).toEqual(whole);
    expect(await store.findByIdempotencyKey("k1")).toEqual(whole);
    expect(await store.listFibers()).toEqual([whole]);
    expect(await store.listFibers({ status: "running" })).toEqual([whole]);
    expect((await store.readStreamAndRecord("f1", 0)).record).toEqual(whole);
    expect(await store.createFiber({ ...record, input: "another" }, [])).toEqual({
      status: "exists",
      record: whole,
    });
    expect(await store.createFiber({ ...record, id: "other", input: "another" }, [])).toEqual({
      status: "exists",
      record: whole,
    });
    // Deleting the fiber deletes its input; the id created again has the new one.
    expect(await store.deleteFibers(["f1"])).toEqual(["f1"]);
    expect(await rawRows(factory, name, "inputs")).toEqual([]);
    await store.createFiber({ ...record, input: undefined }, []);
    expect(await store.getFiber("f1")).toMatchObject({ id: "f1", input: undefined });
    await store.close();
  });

  it("writes an input a commit's patch carries to the input's row, not into the record", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    await store.createFiber({ ...record, input: "first" }, []);
    const { record: claimed } = (await store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1 })) as {
      record: FiberRecord;
    };
    // The continuity mirror patches every field of the record it copies, the input too.
    const patch = { input: { messages: ["copied"] }, updatedAt: 9 };
    await store.commit([{ fiberId: "f1", generation: claimed.generation, fiber: patch }]);
    expect(await store.getFiber("f1")).toMatchObject(patch);
    await store.close();
    const [fiber] = await rawRows(factory, name, "fibers");
    expect(fiber?.value).not.toHaveProperty("input");
    expect(await rawRows(factory, name, "inputs")).toEqual([{ key: "f1", value: patch.input }]);
  });

  it("lists records without reading their inputs when asked to (what recovery and the sweep ask)", async () => {
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
    await store.createFiber({ ...record, input: { messages: ["a long conversation"] } }, []);
    await store.createFiber({ ...record, id: "f2", idempotencyKey: undefined, input: "second" }, []);
    const get = vi.spyOn(IDBObjectStore.prototype, "get");
    const listed = await store.listFibers({ status: "running", withInput: false });
    expect(listed.map((r) => [r.id, r.input])).toEqual([
      ["f1", undefined],
      ["f2", undefined],
    ]);
    expect(get.mock.contexts.filter((store) => (store as IDBObjectStore).name === "inputs")).toEqual([]);
    get.mockRestore();
    // Asked with inputs (the default), the same listing reads them.
    expect((await store.listFibers({ status: "running" })).map((r) => r.input)).toEqual([
      { messages: ["a long conversation"] },
      "second",
    ]);
    await store.close();
  });

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
    const stored = { ...record, createdGeneration: record.generation };
    expect(await second.getFiber("f1")).toEqual(stored);
    expect(await second.findByIdempotencyKey("k1")).toEqual(stored);
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
    expect([...db.objectStoreNames]).toEqual([
      "fibers",
      "handles",
      "inboxEvents",
      "inputs",
      "journalSegments",
      "meta",
      "outbox",
      "outboxFibers",
      "stashes",
      "streamChunks",
    ]);
    const tx = db.transaction([...db.objectStoreNames]);
    const fibers = tx.objectStore("fibers");
    expect([...fibers.indexNames]).toEqual(["createdAt", "endedAt", "idempotencyKey", "status"]);
    expect(fibers.index("idempotencyKey").unique).toBe(true);
    // Every store but `fibers` has out-of-line keys: the values do not repeat them.
    for (const name of [
      "handles",
      "meta",
      "journalSegments",
      "streamChunks",
      "inboxEvents",
      "stashes",
      "outbox",
      "outboxFibers",
      "inputs",
    ]) {
      expect(tx.objectStore(name).keyPath).toBeNull();
    }
    // Stash rows are keyed [fiberId, generation], one per fiber: the unique index is their fence.
    expect([...tx.objectStore("stashes").indexNames]).toEqual(["fiber"]);
    expect(tx.objectStore("stashes").index("fiber").unique).toBe(true);
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

/** Every row of `store` in `name`, as raw IndexedDB holds it. */
async function rawRows(
  factory: IDBFactory,
  name: string,
  storeName: string,
): Promise<Array<{ key: IDBValidKey; value: unknown }>> {
  const db = await rawOpen(factory, name);
  try {
    return await new Promise((resolve, reject) => {
      const rows: Array<{ key: IDBValidKey; value: unknown }> = [];
      const request = db.transaction(storeName).objectStore(storeName).openCursor();
      request.onsuccess = () => {
        const cursor = request.result;
        if (cursor === null) return resolve(rows);
        rows.push({ key: cursor.key, value: cursor.value });
        cursor.continue();
      };
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

/** The stash rows of fibers (without the generation floor's row, keyed by a number). */
async function stashRows(factory: IDBFactory, name: string) {
  return (await rawRows(factory, name, "stashes")).filter(
    (row) => typeof (row.key as unknown[])[0] === "string",
  );
}

describe("IdbStore layout (schema v5)", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("appends one journal row per commit, keyed by the fiber's integer handle", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    await store.createFiber(record, []);
    const claim = await store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("setup");
    const generation = claim.record.generation;
    // A sequential step loop: step n's completion rides with step n+1's start.
    await store.commit([{ fiberId: "f1", generation, journal: [step(0, "started")] }]);
    await store.commit([{ fiberId: "f1", generation, journal: [step(0, "completed"), step(1, "started")] }]);
    await store.commit([{ fiberId: "f1", generation, journal: [step(1, "completed")] }]);
    await store.commit([
      { fiberId: "f1", generation, chunks: [{ fiberId: "f1", seq: 1, type: "t", data: "d", at: 5 }] },
    ]);
    expect(await store.readJournal("f1")).toEqual([step(0, "completed"), step(1, "completed")]);
    await store.close();

    const segments = await rawRows(factory, name, "journalSegments");
    expect(segments.map((row) => row.key)).toEqual([
      [1, 1],
      [1, 2],
      [1, 3],
    ]);
    const chunks = await rawRows(factory, name, "streamChunks");
    // The seq is the key's second part, not repeated in the value.
    expect(chunks).toEqual([{ key: [1, 1], value: ["t", "d", 5] }]);
    expect(await rawRows(factory, name, "handles")).toEqual([{ key: "f1", value: 1 }]);
  });

  /** A store holding fiber `f1`, created (its stash row at generation 0), then claimed once. */
  async function claimedFiber() {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    await store.createFiber(record, []);
    const created = await stashRows(factory, name);
    const claim = await store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("setup");
    return { factory, name, store, created, current: claim.record.generation };
  }

  const stash = (generation: number, value: string) => ({
    fiberId: "f1",
    generation,
    snapshot: { fiberId: "f1", value, at: 1 },
  });

  it("keeps one stash row per fiber, moved by each claim, and a tombstone when it is deleted", async () => {
    const { factory, name, store, created, current } = await claimedFiber();
    expect(created).toEqual([{ key: ["f1", 0], value: { fiber: "f1" } }]);
    await store.commit([stash(current, "one")]);
    expect(await stashRows(factory, name)).toEqual([
      { key: ["f1", 1], value: { fiber: "f1", value: "one", at: 1 } },
    ]);

    // Deleted while its runner still runs: the runner's next stash, which reads nothing before
    // committing, collides with the tombstone the deletion left; the runner is reported fenced.
    await store.deleteFibers(["f1"]);
    expect(await stashRows(factory, name)).toEqual([{ key: ["f1", -2], value: { fiber: "f1" } }]);
    expect(await store.commit([stash(current, "late")])).toEqual({ fenced: ["f1"] });
    expect(await store.readSnapshot("f1")).toBeUndefined();
    expect(await stashRows(factory, name)).toEqual([{ key: ["f1", -2], value: { fiber: "f1" } }]);
    await store.close();
  });

  it("looks for the row a stash replaces only when the writer's last stash is older than the window", async () => {
    const { store, current } = await claimedFiber();
    const getKey = vi.spyOn(IDBObjectStore.prototype, "getKey");
    await store.commit([stash(current, "first")]);
    expect(getKey).toHaveBeenCalledTimes(1);
    await store.commit([stash(current, "second")]);
    await store.commit([stash(current, "third")]);
    expect(getKey).toHaveBeenCalledTimes(1);
    const later = Date.now() + FENCELESS_WINDOW_MS;
    vi.spyOn(Date, "now").mockReturnValue(later);
    await store.commit([stash(current, "fourth")]);
    expect(getKey).toHaveBeenCalledTimes(2);
    expect(await store.readSnapshot("f1")).toMatchObject({ value: "fourth" });
    await store.close();
  });

  it("fences a runner's stash without a look when another context deleted the fiber, even twice", async () => {
    const { factory, name, store, current } = await claimedFiber();
    const other = new IdbStore({ name, indexedDB: factory });
    await store.commit([stash(current, "one")]);
    const getKey = vi.spyOn(IDBObjectStore.prototype, "getKey");
    await store.commit([stash(current, "two")]);
    expect(getKey).not.toHaveBeenCalled();
    await other.deleteFibers(["f1"]);
    // A second deletion of the id (a retry, a double click) keeps the first one's tombstone.
    await other.deleteFibers(["f1"]);
    expect(await stashRows(factory, name)).toEqual([{ key: ["f1", -(current + 1)], value: { fiber: "f1" } }]);
    // The runner, inside its window, writes without a look: its put collides with the tombstone.
    expect(await store.commit([stash(current, "late")])).toEqual({ fenced: ["f1"] });
    expect(getKey).not.toHaveBeenCalled();
    expect(await other.readSnapshot("f1")).toBeUndefined();
    expect(await stashRows(factory, name)).toEqual([{ key: ["f1", -(current + 1)], value: { fiber: "f1" } }]);
    await store.close();
    await other.close();
  });

  it("fences a stash under generation 0 of a fiber deleted at generation 0", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    const other = new IdbStore({ name, indexedDB: factory });
    const created = await store.createFiber(record, []);
    expect(created.record.generation).toBe(0);
    await store.commit([stash(0, "one")]);
    await other.deleteFibers(["f1"]);
    expect(await store.commit([stash(0, "late")])).toEqual({ fenced: ["f1"] });
    expect(await other.readSnapshot("f1")).toBeUndefined();
    expect((await stashRows(factory, name)).map((row) => row.key)).toEqual([["f1", -1]]);
    await store.close();
    await other.close();
  });

  it("forgets what it knew of a database deleted and created again: a runner's writes there are fenced", async () => {
    const { factory, name, store, current } = await claimedFiber();
    await store.commit([stash(current, "one")]);
    await store.commit([{ fiberId: "f1", generation: current, journal: [step(0, "started")] }]);
    await store.commit([{ fiberId: "f1", generation: current, journal: [step(0, "completed")] }]);
    await new Promise<void>((resolve, reject) => {
      const request = factory.deleteDatabase(name);
      request.onsuccess = () => resolve();
      request.onerror = () => reject(request.error);
    });
    // The next writes find a new, empty database: neither is taken on trust.
    expect(await store.commit([stash(current, "two")])).toEqual({ fenced: ["f1"] });
    expect(
      await store.commit([{ fiberId: "f1", generation: current, journal: [step(1, "started")] }]),
    ).toEqual({ fenced: ["f1"] });
    expect(await stashRows(factory, name)).toEqual([]);
    expect(await store.readJournal("f1")).toEqual([]);
    await store.close();
  });

  it("removes a late runner's orphan when the deletion's tombstone is gone", async () => {
    const { factory, name, store, current } = await claimedFiber();
    await store.commit([stash(current, "one")]);
    await store.deleteFibers(["f1"]);
    // An hour later, another deletion collects the tombstone; the runner, silent since, stashes.
    const later = Date.now() + FENCE_KEEP_MS + 1;
    vi.spyOn(Date, "now").mockReturnValue(later);
    const other = await store.createFiber({ ...record, id: "other", idempotencyKey: "other" }, []);
    await store.deleteFibers(["other"]);
    const left = [["other", -(other.record.generation + 1)]];
    expect((await stashRows(factory, name)).map((row) => row.key)).toEqual(left);
    // Its stash lands where no row stood: the store removes the orphan and reports it fenced.
    expect(await store.commit([stash(current, "late")])).toEqual({ fenced: ["f1"] });
    expect((await stashRows(factory, name)).map((row) => row.key)).toEqual(left);
    await store.close();
  });

  it("clears a deleted fiber's tombstone when its id is created again, and fences the old runner", async () => {
    const { factory, name, store, current } = await claimedFiber();
    await store.commit([stash(current, "old")]);
    await store.deleteFibers(["f1"]);
    const again = await store.createFiber(record, []);
    expect(again.status).toBe("created");
    const generation = again.record.generation;
    expect(generation).toBeGreaterThan(current);
    expect((await stashRows(factory, name)).map((row) => row.key)).toEqual([["f1", generation]]);
    expect(await store.commit([stash(current, "stale")])).toEqual({ fenced: ["f1"] });
    expect(await store.commit([stash(generation, "new")])).toEqual({ fenced: [] });
    expect(await store.readSnapshot("f1")).toMatchObject({ value: "new" });
    await store.close();
  });

  it("fences a stash from another context's stale runner, in a batch with a fresh stash and one of a deleted fiber", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const a = new IdbStore({ name, indexedDB: factory });
    const b = new IdbStore({ name, indexedDB: factory });
    for (const id of ["taken", "kept", "gone"])
      await a.createFiber({ ...record, id, idempotencyKey: id }, []);
    const claims = await Promise.all(
      ["taken", "kept", "gone"].map((id) => a.claimFiber(id, { owner: "a", now: 1, leaseMs: 1 })),
    );
    const [taken, kept, gone] = claims.map((claim) =>
      claim.status === "claimed" ? claim.record.generation : -1,
    );
    // Context b takes one fiber over and deletes another.
    await b.claimFiber("taken", { owner: "b", now: 2, leaseMs: 1_000, force: true });
    await b.commit([
      { fiberId: "taken", generation: (taken ?? 0) + 1, snapshot: { fiberId: "taken", value: "b's", at: 2 } },
    ]);
    await b.deleteFibers(["gone"]);
    const stash = (fiberId: string, generation: number | undefined) => ({
      fiberId,
      generation: generation ?? -1,
      snapshot: { fiberId, value: "a's", at: 3 },
    });
    expect(await a.commit([stash("taken", taken), stash("kept", kept), stash("gone", gone)])).toEqual({
      fenced: ["taken", "gone"],
    });
    expect(await b.readSnapshot("taken")).toMatchObject({ value: "b's" });
    expect(await b.readSnapshot("kept")).toMatchObject({ value: "a's" });
    expect(await b.readSnapshot("gone")).toBeUndefined();
    expect((await stashRows(factory, name)).map((row) => row.key)).toEqual([
      ["gone", -((gone ?? 0) + 1)],
      ["kept", kept],
      ["taken", (taken ?? 0) + 1],
    ]);
    await a.close();
    await b.close();
  });

  it("puts a missing stash row back at the record's generation, so the fence holds again", async () => {
    const { factory, name, store, current } = await claimedFiber();
    // Another writer of this database removed the row (no Fiberline code does).
    const removeRow = async () => {
      const db = await rawOpen(factory, name);
      const tx = db.transaction("stashes", "readwrite");
      tx.objectStore("stashes").clear();
      await new Promise((resolve) => {
        tx.oncomplete = resolve;
      });
      db.close();
    };
    await removeRow();
    // A stale runner finds no row to collide with: fenced all the same, and the row is back.
    expect(await store.commit([stash(current - 1, "stale")])).toEqual({ fenced: ["f1"] });
    expect(await stashRows(factory, name)).toEqual([{ key: ["f1", current], value: { fiber: "f1" } }]);
    expect(await store.commit([stash(current - 1, "stale")])).toEqual({ fenced: ["f1"] });
    // The current runner's stash simply puts it back.
    await removeRow();
    expect(await store.commit([stash(current, "mine")])).toEqual({ fenced: [] });
    expect(await store.readSnapshot("f1")).toMatchObject({ value: "mine" });
    await store.close();
  });

  it("never reuses a handle, so a deleted fiber's rows cannot reappear under a new one", async () => {
    const factory = new IDBFactory();
    const store = new IdbStore({ name: uniqueName(), indexedDB: factory });
    await store.createFiber(record, [{ fiberId: "f1", seq: 1, type: "old", data: null, at: 1 }]);
    await store.deleteFibers(["f1"]);
    await store.createFiber(record, [{ fiberId: "f1", seq: 1, type: "new", data: null, at: 1 }]);
    expect((await store.readStream("f1", 0)).map((chunk) => chunk.type)).toEqual(["new"]);
    await store.close();
  });

  it("notices when another context deleted and re-created a fiber it knows, for reads and writes", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const a = new IdbStore({ name, indexedDB: factory });
    const b = new IdbStore({ name, indexedDB: factory });
    await a.createFiber(record, [{ fiberId: "f1", seq: 1, type: "first", data: null, at: 1 }]);
    await a.commit([{ fiberId: "f1", generation: 0, journal: [step(0, "completed")] }]);
    expect(await a.readJournal("f1")).toHaveLength(1);

    await b.deleteFibers(["f1"]);
    const { record: second } = await b.createFiber(record, [
      { fiberId: "f1", seq: 1, type: "second", data: null, at: 1 },
    ]);
    // `a` still remembers the old handle: its reads and writes must land on the new fiber's rows.
    expect(await a.readJournal("f1")).toEqual([]);
    expect((await a.readStream("f1", 0)).map((chunk) => chunk.type)).toEqual(["second"]);
    const write = { fiberId: "f1", generation: second.generation, journal: [step(0, "started")] };
    expect(await a.commit([write])).toEqual({ fenced: [] });
    expect(await b.readJournal("f1")).toEqual([step(0, "started")]);
    await a.close();
    await b.close();
  });

  it("lands a journal-only write of a re-created fiber on its new rows, and fences the deleted one's writer", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const a = new IdbStore({ name, indexedDB: factory });
    const b = new IdbStore({ name, indexedDB: factory });
    await a.createFiber(record, []);
    // `a` knows where generation 0 writes (its own createFiber and commit).
    await a.commit([{ fiberId: "f1", generation: 0, journal: [step(0, "completed")] }]);
    await b.deleteFibers(["f1"]);
    const again = await b.createFiber(record, []);
    // A journal-only write under the new generation: `a`'s remembered handle is stale, and the
    // write must still land on the new fiber's rows.
    const write = { fiberId: "f1", generation: again.record.generation, journal: [step(2, "started")] };
    expect(await a.commit([write])).toEqual({ fenced: [] });
    expect(await b.readJournal("f1")).toEqual([step(2, "started")]);
    expect(await a.commit([{ ...write, journal: [step(3, "started")] }])).toEqual({ fenced: [] });
    expect((await b.readJournal("f1")).map((entry) => entry.pos)).toEqual([2, 3]);
    // The deleted fiber's writer, which `a` knows where to write, is fenced.
    expect(await a.commit([{ fiberId: "f1", generation: 0, journal: [step(1, "started")] }])).toEqual({
      fenced: ["f1"],
    });
    expect((await b.readJournal("f1")).map((entry) => entry.pos)).toEqual([2, 3]);
    await a.close();
    await b.close();
  });

  it("retries a write whose remembered handle went stale, onto the re-created fiber's rows", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const a = new IdbStore({ name, indexedDB: factory });
    const b = new IdbStore({ name, indexedDB: factory });
    await a.createFiber(record, []);
    await a.commit([{ fiberId: "f1", generation: 0, journal: [step(0, "completed")] }]);
    await b.deleteFibers(["f1"]);
    const again = await b.createFiber(record, []);
    expect(again.record.generation).toBeGreaterThan(record.generation);
    // No read in between: `a` writes under the old handle, sees the record's new one, retries.
    expect(
      await a.commit([
        {
          fiberId: "f1",
          generation: again.record.generation,
          journal: [step(1, "started")],
          chunks: [{ fiberId: "f1", seq: 1, type: "t", data: 1, at: 1 }],
        },
      ]),
    ).toEqual({ fenced: [] });
    expect(await b.readJournal("f1")).toEqual([step(1, "started")]);
    expect(await b.readStream("f1", 0)).toHaveLength(1);
    // The deleted fiber's writer (generation 0) is fenced from the new one.
    expect(await a.commit([{ fiberId: "f1", generation: 0, journal: [step(2, "started")] }])).toEqual({
      fenced: ["f1"],
    });
    expect(await b.readJournal("f1")).toEqual([step(1, "started")]);
    await a.close();
    await b.close();
  });
});

/**
 * Two stores on one database write fiber f1 under one generation, as the continuity mirror of an
 * old and a new worker does: `old` writes step 0; `fresh` rewrites the journal whole (a mirror's
 * first read, `rewritten` steps, into the segment `old` remembers as its next); then `old` writes
 * the next step there. Checks that it lands, and that the journal holds every step once.
 */
async function writeOverAnotherStore(journalFold: number | undefined, rewritten: number): Promise<void> {
  const options = {
    name: uniqueName(),
    indexedDB: new IDBFactory(),
    ...(journalFold ? { journalFold } : {}),
  };
  const old = new IdbStore(options);
  const fresh = new IdbStore(options);
  const { record: created } = await old.createFiber(record, []);
  const { generation } = created;
  await old.commit([{ fiberId: "f1", generation, journal: [step(0, "completed")] }]);
  const steps = Array.from({ length: rewritten }, (_, pos) => step(pos, "completed"));
  await fresh.commit([{ fiberId: "f1", generation, clearJournal: true, journal: steps }]);
  // The first store's next segment, as it remembers it, is taken: it reads the last one again.
  expect(await old.commit([{ fiberId: "f1", generation, journal: [step(rewritten, "completed")] }])).toEqual({
    fenced: [],
  });
  expect((await fresh.readJournal("f1")).map((entry) => entry.pos)).toEqual(
    Array.from({ length: rewritten + 1 }, (_, pos) => pos),
  );
  await old.close();
  await fresh.close();
}

describe("IdbStore with two stores writing one generation", () => {
  it("never replaces a journal row another store wrote under the same generation (the mirror of an old and a new worker)", async () => {
    await writeOverAnotherStore(undefined, 3);
  });

  it("retries a taken segment also when its commit would have folded (the fold's read fails with the abort)", async () => {
    // Folded every 2 commits: the taken segment, 2, is the one whose commit folds.
    await writeOverAnotherStore(2, 2);
  });

  it("never hides an unclaimed write (the mirror's) under another store's fold, which freed the segment this store remembers", async () => {
    // Folded every 4 segments. The first store writes segment 1 and remembers 2 as its next;
    // the other writes 2, 3 and 4, whose commit folds 1-4 into one row at 4, freeing 1-3. Both
    // write without a claim under one generation, as the mirrors of an old and a new worker do.
    const options = { name: uniqueName(), indexedDB: new IDBFactory(), journalFold: 4 };
    const old = new IdbStore(options);
    const fresh = new IdbStore(options);
    const { record: created } = await old.createFiber(record, []);
    const mirrored = (journal: JournalEntry[]) => [
      { fiberId: "f1", generation: created.generation, journal, unclaimed: true },
    ];
    await old.commit(mirrored([step(0, "started")]));
    await fresh.commit(mirrored([step(0, "completed")]));
    await fresh.commit(mirrored([step(1, "started")]));
    await fresh.commit(mirrored([step(1, "completed"), step(2, "started")]));
    // The first store's next segment, 2, is free now; a row put there would read back below the
    // fold's row at 4, which says step 2 started, and hide this completion.
    expect(await old.commit(mirrored([step(2, "completed")]))).toEqual({ fenced: [] });
    for (const store of [old, fresh])
      expect((await store.readJournal("f1")).map((e) => [e.pos, e.status])).toEqual([
        [0, "completed"],
        [1, "completed"],
        [2, "completed"],
      ]);
    await old.close();
    await fresh.close();
  });

  it("rejects a stash that cannot be stored with store_error and leaves no unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
      const { record: created } = await store.createFiber(record, []);
      await expect(
        store.commit([
          {
            fiberId: "f1",
            generation: created.generation,
            snapshot: { fiberId: "f1", value: () => 1, at: 1 },
          },
        ]),
      ).rejects.toMatchObject({ code: "store_error" });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
      await store.close();
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

describe("IdbStore registrations written blind", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });
  const fresh = (id: string): FiberRecord => ({ ...record, id, idempotencyKey: `k-${id}` });
  const start = (id: string) => [{ fiberId: id, seq: 1, type: "fiber.start", data: { id }, at: 1 }];
  /** `fresh(id)` as stored: with the generation it was created with. */
  const stored = (id: string): FiberRecord => ({ ...fresh(id), createdGeneration: record.generation });

  it("registers a fiber after the first in one transaction that reads nothing", async () => {
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
    await store.createFiber(record, []);
    const transactions = vi.spyOn(IDBDatabase.prototype, "transaction");
    const reads = [
      vi.spyOn(IDBObjectStore.prototype, "get"),
      vi.spyOn(IDBObjectStore.prototype, "getKey"),
      vi.spyOn(IDBObjectStore.prototype, "getAll"),
      vi.spyOn(IDBObjectStore.prototype, "openCursor"),
      vi.spyOn(IDBIndex.prototype, "get"),
    ];
    expect((await store.createFiber(fresh("n1"), start("n1"))).status).toBe("created");
    expect(transactions.mock.calls.map(([, mode]) => mode)).toEqual(["readwrite"]);
    for (const read of reads) expect(read).not.toHaveBeenCalled();
    vi.restoreAllMocks();
    expect(await store.getFiber("n1")).toEqual(stored("n1"));
    await store.close();
  });

  it("takes handles from blocks reserved in the database, so two stores on it never share one", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const a = new IdbStore({ name, indexedDB: factory });
    const b = new IdbStore({ name, indexedDB: factory });
    const ids: string[] = [];
    for (let i = 0; i < 150; i++) {
      const store = i % 3 === 0 ? b : a;
      const id = `n${i}`;
      ids.push(id);
      expect((await store.createFiber(fresh(id), start(id))).status).toBe("created");
    }
    const handles = (await rawRows(factory, name, "handles")).map((row) => row.value);
    expect(handles).toHaveLength(150);
    expect(new Set(handles).size).toBe(150);
    for (const id of ids) expect((await a.readStream(id, 0)).map((c) => c.data)).toEqual([{ id }]);
    await a.close();
    await b.close();
  });

  it("answers a blind registration whose id is taken with the existing fiber, writing nothing", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    await store.createFiber(fresh("n0"), start("n0"));
    await store.createFiber(fresh("n1"), start("n1"));
    const result = await store.createFiber({ ...fresh("n1"), idempotencyKey: "other", name: "x" }, [
      { fiberId: "n1", seq: 1, type: "changed", data: null, at: 2 },
    ]);
    expect(result).toEqual({ status: "exists", record: stored("n1") });
    expect((await store.readStream("n1", 0)).map((c) => c.type)).toEqual(["fiber.start"]);
    expect(await rawRows(factory, name, "handles")).toHaveLength(2);
    await store.close();
  });

  it("starts above a generation floor that another store raised since it read it", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const a = new IdbStore({ name, indexedDB: factory });
    const b = new IdbStore({ name, indexedDB: factory });
    await a.createFiber(fresh("n0"), start("n0"));
    await b.createFiber({ ...fresh("f1"), generation: 1 }, start("f1"));
    for (let i = 0; i < 5; i++) await b.claimFiber("f1", { owner: "b", now: 1, leaseMs: 1, force: true });
    await b.deleteFibers(["f1"]);
    // `a` read the floor before the delete: its blind registration collides with the floor's row.
    const again = await a.createFiber({ ...fresh("f1"), generation: 1 }, start("f1"));
    expect(again.record.generation).toBe(7);
    expect(await a.commit([{ fiberId: "f1", generation: 6, journal: [step(0, "completed")] }])).toEqual({
      fenced: ["f1"],
    });
    // ... and reads it anew: the next ones start above it too, written blind again.
    const transactions = vi.spyOn(IDBDatabase.prototype, "transaction");
    expect((await a.createFiber({ ...fresh("n2"), generation: 1 }, start("n2"))).record.generation).toBe(7);
    expect(transactions.mock.calls.map(([stores]) => stores)).toEqual([
      ["fibers", "handles", "inputs", "stashes", "streamChunks"],
    ]);
    await a.close();
    await b.close();
  });

  it("starts above the floor it raised itself, still written blind", async () => {
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
    await store.createFiber({ ...fresh("f1"), generation: 3 }, start("f1"));
    await store.deleteFibers(["f1"]);
    const transactions = vi.spyOn(IDBDatabase.prototype, "transaction");
    // (Another id: "f1" itself collides with its stash tombstone and is registered reading.)
    expect((await store.createFiber({ ...fresh("f2"), generation: 1 }, start("f2"))).record.generation).toBe(
      4,
    );
    expect(transactions.mock.calls.map(([stores, mode]) => [stores, mode])).toEqual([
      [["fibers", "handles", "inputs", "stashes", "streamChunks"], "readwrite"],
    ]);
    await store.close();
  });

  it("answers a taken id with the existing fiber even when the new record cannot be stored", async () => {
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
    await store.createFiber(fresh("n0"), start("n0"));
    await store.createFiber(fresh("n1"), start("n1"));
    const bad = [{ fiberId: "n1", seq: 1, type: "x", data: { f: () => 1 }, at: 1 }];
    expect(await store.createFiber({ ...fresh("n1"), idempotencyKey: "other" }, bad)).toEqual({
      status: "exists",
      record: stored("n1"),
    });
    await expect(store.createFiber(fresh("n2"), bad)).rejects.toMatchObject({ code: "store_error" });
    expect(await store.getFiber("n2")).toBeUndefined();
    await store.close();
  });

  it("refuses ids and idempotency keys that are not strings, which could pass for the floor's row", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const store = new IdbStore({ name, indexedDB: factory });
    await store.createFiber(fresh("n0"), start("n0"));
    const numeric = { ...fresh("n1"), id: 0 as unknown as string };
    await expect(store.createFiber(numeric, [])).rejects.toMatchObject({ code: "invalid_argument" });
    const keyed = { ...fresh("n1"), idempotencyKey: { k: 1 } as unknown as string };
    await expect(store.createFiber(keyed, [])).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(store.deleteFibers([0 as unknown as string])).rejects.toMatchObject({
      code: "invalid_argument",
    });
    expect((await rawRows(factory, name, "stashes")).map((row) => row.key)).toEqual([
      [0, -1],
      ["n0", 0],
    ]);
    await store.close();
  });

  it("reserves handles anew in a database deleted and created again under it", async () => {
    const factory = new IDBFactory();
    const name = uniqueName();
    const a = new IdbStore({ name, indexedDB: factory });
    await a.createFiber(fresh("n0"), start("n0"));
    await a.createFiber(fresh("n1"), start("n1"));
    await new Promise<void>((resolve, reject) => {
      const request = factory.deleteDatabase(name);
      request.onsuccess = () => resolve();
      request.onerror = () => reject(request.error);
    });
    const b = new IdbStore({ name, indexedDB: factory });
    // `a`'s block was reserved in the deleted database: the new one gives the same handles to `b`.
    for (const id of ["b0", "b1", "b2", "b3"]) await b.createFiber(fresh(id), start(id));
    await a.createFiber(fresh("n2"), start("n2"));
    await a.createFiber(fresh("n3"), start("n3"));
    const ids = ["b0", "b1", "b2", "b3", "n2", "n3"];
    const handles = (await rawRows(factory, name, "handles")).map((row) => row.value);
    expect(new Set(handles).size).toBe(ids.length);
    for (const id of ids) expect((await b.readStream(id, 0)).map((c) => c.data)).toEqual([{ id }]);
    await a.close();
    await b.close();
  });
});

describe("IdbStore key cache", () => {
  it("runs many fibers at once correctly with a key cache far smaller than them", async () => {
    const { createRuntime, defineFiber } = await import("../index");
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory(), keyCacheSize: 3 });
    const waiter = defineFiber("cache.waiter", {
      async run(ctx) {
        const first = await ctx.step("a", () => 1);
        ctx.emit("tick", first);
        const second = await ctx.step("b", () => 2);
        return first + second + ((await ctx.waitForEvent("go")) as number);
      },
    });
    const runtime = createRuntime({ store, fibers: [waiter] });
    const started = await Promise.all(Array.from({ length: 40 }, () => runtime.start(waiter, {})));
    await expect
      .poll(async () => (await store.listFibers({ status: "waiting" })).length, { timeout: 10_000 })
      .toBe(40);
    await Promise.all(started.map((fiber) => runtime.sendEvent(fiber.id, "go", 10)));
    expect(await Promise.all(started.map((fiber) => runtime.result(fiber)))).toEqual(started.map(() => 13));
    for (const fiber of started.slice(0, 3)) {
      expect((await store.readJournal(fiber.id)).map((entry) => [entry.key, entry.status])).toEqual([
        ["a#1", "completed"],
        ["b#1", "completed"],
        ["event:go#1", "completed"],
      ]);
    }
    await runtime.close();
    await store.close();
  });
});

describe("IdbStore journal fold", () => {
  /** The engine's writes for `n` sequential steps: step n's completion rides with step n+1's start. */
  function sequentialSteps(n: number): JournalEntry[][] {
    const commits: JournalEntry[][] = [[step(0, "started")]];
    for (let pos = 0; pos < n - 1; pos++) commits.push([step(pos, "completed"), step(pos + 1, "started")]);
    commits.push([step(n - 1, "completed")]);
    return commits;
  }

  /** Fiber f1, claimed, in a store folding every `journalFold` commits (on `at`'s database, if given). */
  async function claimed(
    journalFold: number,
    at: { factory?: IDBFactory; name?: string; keyCacheSize?: number } = {},
  ) {
    const { factory = new IDBFactory(), name = uniqueName(), keyCacheSize } = at;
    const store = new IdbStore({ name, indexedDB: factory, journalFold, keyCacheSize });
    if ((await store.getFiber("f1")) === undefined) await store.createFiber(record, []);
    const claim = await store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("setup");
    return { factory, name, store, generation: claim.record.generation };
  }

  it("folds every journalFold commits into one row holding each step once, and reads the same", async () => {
    const folded = await claimed(4);
    const plain = await claimed(0);
    for (const journal of sequentialSteps(10)) {
      for (const { store, generation } of [folded, plain]) {
        expect(await store.commit([{ fiberId: "f1", generation, journal }])).toEqual({ fenced: [] });
      }
    }
    const expected = Array.from({ length: 10 }, (_, pos) => step(pos, "completed"));
    expect(await folded.store.readJournal("f1")).toEqual(expected);
    expect(await plain.store.readJournal("f1")).toEqual(expected);
    await folded.store.close();
    await plain.store.close();

    // 11 commits: segments 1-4 and 5-8 folded into the rows at 4 and 8.
    const rows = await rawRows(folded.factory, folded.name, "journalSegments");
    expect(rows.map((row) => row.key)).toEqual([
      [1, 4],
      [1, 8],
      [1, 9],
      [1, 10],
      [1, 11],
    ]);
    // Segment row values are `[base, ...entries]`: positions 0-3 once each (3 not yet completed).
    const entriesIn = (value: unknown) => (value as unknown[][]).slice(1).map((entry) => entry[0]);
    expect(entriesIn(rows[0]?.value)).toEqual([0, 1, 2, 3]);
    expect(entriesIn(rows[1]?.value)).toEqual([3, 4, 5, 6, 7]);
    const unfolded = await rawRows(plain.factory, plain.name, "journalSegments");
    expect(unfolded).toHaveLength(11);
  });

  it("keeps the highest key where it was, so a store that forgets its keys does not fold a range again", async () => {
    // keyCacheSize 0: every commit learns the next segment from disk (the last key + 1).
    const { store, factory, name, generation } = await claimed(4, { keyCacheSize: 0 });
    for (const journal of sequentialSteps(11)) {
      await store.commit([{ fiberId: "f1", generation, journal }]);
    }
    const expected = Array.from({ length: 11 }, (_, pos) => step(pos, "completed"));
    expect(await store.readJournal("f1")).toEqual(expected);
    await store.close();
    const rows = await rawRows(factory, name, "journalSegments");
    expect(rows.map((row) => row.key)).toEqual([
      [1, 4],
      [1, 8],
      [1, 12],
    ]);
    // Each fold holds its own range's positions, not the ranges before it again.
    const entriesIn = (value: unknown) => (value as unknown[][]).slice(1).map((entry) => entry[0]);
    expect(entriesIn(rows[1]?.value)).toEqual([3, 4, 5, 6, 7]);
  });

  it("folds where it should after a commit retried without a fenced fiber", async () => {
    const { store, factory, name, generation } = await claimed(2);
    await store.createFiber({ ...record, id: "f2", idempotencyKey: "k2" }, []);
    const stale = await store.claimFiber("f2", { owner: "a", now: 1, leaseMs: 1_000 });
    if (stale.status !== "claimed") throw new Error("setup");
    // Another runner takes f2 over: a write under the first claim's generation is fenced.
    await store.claimFiber("f2", { owner: "b", now: 5_000, leaseMs: 1_000 });
    await store.commit([{ fiberId: "f1", generation, journal: [step(0, "started")] }]);
    // f1's group closes the fold range [1, 2]; the first attempt is aborted for f2's fence.
    const f2Step = { ...step(0, "started"), fiberId: "f2" };
    expect(
      await store.commit([
        { fiberId: "f1", generation, journal: [step(0, "completed"), step(1, "started")] },
        { fiberId: "f2", generation: stale.record.generation, journal: [f2Step] },
      ]),
    ).toEqual({ fenced: ["f2"] });
    expect(await store.readJournal("f1")).toEqual([step(0, "completed"), step(1, "started")]);
    expect(await store.readJournal("f2")).toEqual([]);
    await store.close();
    // The retry wrote segment 2 (not 3, which would leave the range unfolded for good).
    expect((await rawRows(factory, name, "journalSegments")).map((row) => row.key)).toEqual([[1, 2]]);
  });

  it("does not put back rows that a later group of the same commit cleared", async () => {
    const { store, generation } = await claimed(2);
    await store.commit([{ fiberId: "f1", generation, journal: [step(0, "started")] }]);
    // Segment 2 closes a fold range; the second group restarts the journal from scratch.
    expect(
      await store.commit([
        { fiberId: "f1", generation, journal: [step(1, "started")] },
        { fiberId: "f1", generation, clearJournal: true, journal: [step(5, "started")] },
      ]),
    ).toEqual({ fenced: [] });
    expect(await store.readJournal("f1")).toEqual([step(5, "started")]);
    await store.close();
  });

  it("leaves rows that hold more than FOLD_MAX_BYTES as they are", async () => {
    const { store, factory, name, generation } = await claimed(4);
    const big = "x".repeat(Math.ceil(FOLD_MAX_BYTES / 3));
    // 4 commits of one result each, a third of the cap each as estimateSize counts: no fold,
    // and (the store wrote and counted the whole range) not even a read of the rows.
    const reads = vi.spyOn(IDBObjectStore.prototype, "getAll");
    for (let pos = 0; pos < 4; pos++) {
      const journal = [{ ...step(pos, "completed"), result: big }];
      await store.commit([{ fiberId: "f1", generation, journal }]);
    }
    expect(reads).not.toHaveBeenCalled();
    reads.mockRestore();
    // 4 small commits after them fold as usual.
    for (let pos = 4; pos < 8; pos++) {
      await store.commit([{ fiberId: "f1", generation, journal: [step(pos, "completed")] }]);
    }
    const journal = await store.readJournal("f1");
    expect(journal.map((entry) => entry.pos)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(journal[3]?.result).toBe(big);
    await store.close();
    expect((await rawRows(factory, name, "journalSegments")).map((row) => row.key)).toEqual([
      [1, 1],
      [1, 2],
      [1, 3],
      [1, 4],
      [1, 8],
    ]);
  });

  it("weighs rows it did not write itself once read back, and leaves them as they are over the cap", async () => {
    const first = await claimed(4);
    const big = "x".repeat(Math.ceil(FOLD_MAX_BYTES / 2));
    for (let pos = 0; pos < 2; pos++) {
      const journal = [{ ...step(pos, "completed"), result: big }];
      await first.store.commit([{ fiberId: "f1", generation: first.generation, journal }]);
    }
    await first.store.close();
    // Another store (a new claim: its fence is segment 3) writes segment 4, which closes the
    // range [1, 4].
    const { store, factory, name, generation } = await claimed(4, first);
    await store.commit([{ fiberId: "f1", generation, journal: [step(2, "completed")] }]);
    expect((await store.readJournal("f1")).map((entry) => entry.pos)).toEqual([0, 1, 2]);
    await store.close();
    expect((await rawRows(factory, name, "journalSegments")).map((row) => row.key)).toEqual([
      [1, 1],
      [1, 2],
      [1, 3],
      [1, 4],
    ]);
  });

  it("reads back what was committed, across folds, reopened stores, claims and restarts from scratch", async () => {
    const entry = fc
      .record({ pos: fc.nat(12), completed: fc.boolean(), result: fc.integer() })
      .map(({ pos, completed, result }) => ({
        ...step(pos, completed ? "completed" : "started"),
        ...(completed ? { result } : {}),
      }));
    // One group in ten restarts the journal from scratch.
    const group = fc.record({
      journal: fc.array(entry, { minLength: 1, maxLength: 4 }),
      clearJournal: fc.nat(9).map((n) => n === 0),
    });
    const commit = fc.record({
      // Mostly one group; sometimes two of the fiber in one commit (as a batch may hold).
      groups: fc.array(group, { minLength: 1, maxLength: 2 }),
      // One commit in five goes to a new store.
      reopen: fc.nat(4).map((n) => n === 0),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 5 }),
        fc.array(commit, { maxLength: 40 }),
        async (fold, commits) => {
          let current = await claimed(fold);
          const model = new Map<number, JournalEntry>();
          for (const { groups, reopen } of commits) {
            if (reopen) {
              // A new store learns the segment keys from disk (a fold may have left its last row below them).
              await current.store.close();
              current = await claimed(fold, current);
            }
            const generation = current.generation;
            const written = groups.map((g) => ({ fiberId: "f1", generation, ...g }));
            expect(await current.store.commit(written)).toEqual({ fenced: [] });
            for (const { journal, clearJournal } of groups) {
              if (clearJournal) model.clear();
              for (const entry of journal) model.set(entry.pos, entry);
            }
          }
          expect(await current.store.readJournal("f1")).toEqual(
            [...model.values()].sort((a, b) => a.pos - b.pos),
          );
          await current.store.close();
        },
      ),
      { numRuns: 60 },
    );
  });

  it.each([{ journalFold: -1 }, { journalFold: 1.5 }, { keyCacheSize: -1 }])(
    "rejects %o with invalid_argument",
    (options) => {
      expect(() => new IdbStore({ indexedDB: new IDBFactory(), ...options })).toThrow(
        expect.objectContaining({ code: "invalid_argument" }),
      );
    },
  );
});

describe("IdbStore appending a journal without a fence read (fake-indexeddb)", () => {
  runFencelessAppendTests(() => ({ indexedDB: new IDBFactory(), name: uniqueName() }));
});
