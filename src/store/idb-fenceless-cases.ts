/**
 * How `IdbStore` appends a step's journal entries without reading the fiber's record for its
 * fence (`FiberKeys.fenceless`), and what still fences such a writer: another store's claim, a
 * forced claim in its own store, a deletion, a restart from scratch, a fold, the window. Run on
 * fake-indexeddb (`idb-store.test.ts`) and on Chromium's IndexedDB (`idb-store.browser.test.ts`).
 */

import { afterEach, expect, it, vi } from "vitest";
import type { WriteGroup } from "../core/store";
import { testRecord } from "../core/test-records";
import { FENCE_KEEP_MS, FENCELESS_WINDOW_MS } from "./idb-commit";
import { IdbStore } from "./idb-store";
import { step } from "./idb-upgrade-cases";

const record = testRecord({ id: "f1", idempotencyKey: "k1", generation: 0, streamHead: 0 });

/** Every key of `journalSegments` in database `name`. */
async function journalKeys(factory: IDBFactory, name: string): Promise<IDBValidKey[]> {
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const request = factory.open(name);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  try {
    return await new Promise((resolve, reject) => {
      const request = db.transaction("journalSegments").objectStore("journalSegments").getAllKeys();
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

/** `target` gives each case a factory and a database name of its own. */
export function runFencelessAppendTests(target: () => { indexedDB: IDBFactory; name: string }): void {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** Fiber `f1` claimed in a store `a` that has committed two segments (its writer confirmed). */
  async function confirmedWriter() {
    const options = target();
    const a = new IdbStore(options);
    await a.createFiber(record, []);
    const claim = await a.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("setup");
    const { generation } = claim.record;
    await a.commit([{ fiberId: "f1", generation, journal: [step(0, "started")] }]);
    await a.commit([{ fiberId: "f1", generation, journal: [step(0, "completed"), step(1, "started")] }]);
    const next = (pos: number) =>
      a.commit([{ fiberId: "f1", generation, journal: [step(pos, "completed")] }]);
    return { options, a, generation, next };
  }

  it("appends a confirmed writer's step in a transaction over journalSegments alone", async () => {
    const { a, next } = await confirmedWriter();
    const spy = vi.spyOn(IDBDatabase.prototype, "transaction");
    expect(await next(1)).toEqual({ fenced: [] });
    expect(spy.mock.calls.map(([scope]) => scope)).toEqual([["journalSegments"]]);
    expect(await a.readJournal("f1")).toEqual([step(0, "completed"), step(1, "completed")]);
    await a.close();
  });

  it("is fenced by another store's claim: its append collides with the claim's fence row", async () => {
    const { options, a, next } = await confirmedWriter();
    const b = new IdbStore(options);
    const claim = await b.claimFiber("f1", { owner: "b", now: 2_000, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("setup");
    expect(await next(1)).toEqual({ fenced: ["f1"] });
    // The late step's completion is not in the journal: the new generation runs it again.
    expect(await b.readJournal("f1")).toEqual([step(0, "completed"), step(1, "started")]);
    await b.commit([{ fiberId: "f1", generation: claim.record.generation, journal: [step(1, "completed")] }]);
    expect(await b.readJournal("f1")).toEqual([step(0, "completed"), step(1, "completed")]);
    await a.close();
    await b.close();
  });

  it("is fenced by a forced claim in its own store", async () => {
    const { a, next } = await confirmedWriter();
    const claim = await a.claimFiber("f1", { owner: "c", now: 2, leaseMs: 1_000, force: true });
    if (claim.status !== "claimed") throw new Error("setup");
    expect(await next(1)).toEqual({ fenced: ["f1"] });
    expect(await a.readJournal("f1")).toEqual([step(0, "completed"), step(1, "started")]);
    await a.close();
  });

  it("after clearing its journal without a new segment, reads the fence again (another store's claim finds no row to fence)", async () => {
    const { options, a, generation, next } = await confirmedWriter();
    expect(await a.commit([{ fiberId: "f1", generation, clearJournal: true }])).toEqual({ fenced: [] });
    const b = new IdbStore(options);
    const claim = await b.claimFiber("f1", { owner: "b", now: 2_000, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("setup");
    expect(await next(1)).toEqual({ fenced: ["f1"] });
    expect(await b.readJournal("f1")).toEqual([]);
    const { indexedDB: factory, name } = options;
    expect(await journalKeys(factory, name)).toEqual([]);
    await a.close();
    await b.close();
  });

  it.each([false, true])(
    "is fenced when another store deleted the fiber (created again: %s): its append collides with the tombstone",
    async (recreate) => {
      const { options, a, next } = await confirmedWriter();
      const b = new IdbStore(options);
      await b.deleteFibers(["f1"]);
      if (recreate) await b.createFiber(record, []);
      expect(await next(1)).toEqual({ fenced: ["f1"] });
      // Segments 1 and 2 went with the fiber; the tombstone stands where the writer appends next.
      const { indexedDB: factory, name } = options;
      expect(await journalKeys(factory, name)).toEqual([[1, 3]]);
      if (recreate) expect(await b.readJournal("f1")).toEqual([]);
      await a.close();
      await b.close();
    },
  );

  /** Store `b` claims `f1` from `a`'s writer (its fence row at segment 3). */
  async function claimedAway(options: { indexedDB: IDBFactory; name: string }, journalFold?: number) {
    const b = new IdbStore({ ...options, ...(journalFold === undefined ? {} : { journalFold }) });
    const claim = await b.claimFiber("f1", { owner: "b", now: 2_000, leaseMs: 1_000 });
    if (claim.status !== "claimed") throw new Error("setup");
    const write = (group: Omit<WriteGroup, "fiberId" | "generation">) =>
      b.commit([{ fiberId: "f1", generation: claim.record.generation, ...group }]);
    return { b, write };
  }

  it("is fenced after the new generation restarted the journal from scratch (the claim's fence row is put back)", async () => {
    const { options, a, next } = await confirmedWriter();
    const { b, write } = await claimedAway(options);
    expect(await write({ clearJournal: true, journal: [step(0, "started")] })).toEqual({ fenced: [] });
    expect(await next(1)).toEqual({ fenced: ["f1"] });
    expect(await b.readJournal("f1")).toEqual([step(0, "started")]);
    await a.close();
    await b.close();
  });

  it("is fenced after the new generation folded the range holding the claim's fence row", async () => {
    const { options, a, next } = await confirmedWriter();
    // Folded every 4 segments: the new writer's first segment, 4, folds [1, 4].
    const { b, write } = await claimedAway(options, 4);
    expect(await write({ journal: [step(1, "completed")] })).toEqual({ fenced: [] });
    expect(await journalKeys(options.indexedDB, options.name)).toEqual([
      [1, 3],
      [1, 4],
    ]);
    expect(await next(1)).toEqual({ fenced: ["f1"] });
    expect(await b.readJournal("f1")).toEqual([step(0, "completed"), step(1, "completed")]);
    await a.close();
    await b.close();
  });

  it("is fenced when the fiber is deleted soon after another store claimed it and wrote on", async () => {
    const { options, a, next } = await confirmedWriter();
    const { b, write } = await claimedAway(options);
    await write({ journal: [step(1, "completed")] });
    await write({ journal: [step(2, "started")] });
    await b.deleteFibers(["f1"]);
    // Tombstones where the new writer would go on (6) and where the claim fenced the old one (3).
    expect(await journalKeys(options.indexedDB, options.name)).toEqual([
      [1, 3],
      [1, 6],
    ]);
    expect(await next(1)).toEqual({ fenced: ["f1"] });
    await a.close();
    await b.close();
  });

  it("reads the fence once its last commit is older than the window, and a deletion's tombstone is removed long after", async () => {
    const clock = vi.spyOn(Date, "now").mockReturnValue(1_000_000);
    const { options, a, next } = await confirmedWriter();
    const b = new IdbStore(options);
    await b.createFiber({ ...record, id: "f2", idempotencyKey: undefined }, []);
    await b.deleteFibers(["f1"]);
    const { indexedDB: factory, name } = options;
    expect(await journalKeys(factory, name)).toEqual([[1, 3]]);
    // Past the window the writer reads its record: fenced without the tombstone too.
    clock.mockReturnValue(1_000_000 + FENCELESS_WINDOW_MS);
    const spy = vi.spyOn(IDBDatabase.prototype, "transaction");
    // The next deletion after FENCE_KEEP_MS removes the tombstone.
    clock.mockReturnValue(1_000_001 + FENCE_KEEP_MS);
    await b.deleteFibers(["f2"]);
    expect(await journalKeys(factory, name)).toEqual([]);
    expect(await next(1)).toEqual({ fenced: ["f1"] });
    expect(spy.mock.calls.some(([scope]) => [...scope].includes("fibers"))).toBe(true);
    expect(await journalKeys(factory, name)).toEqual([]);
    await a.close();
    await b.close();
  });

  it("reads the fence when its last commit is newer than the clock (set back)", async () => {
    const clock = vi.spyOn(Date, "now").mockReturnValue(1_000_000);
    const { a, next } = await confirmedWriter();
    clock.mockReturnValue(999_999);
    const spy = vi.spyOn(IDBDatabase.prototype, "transaction");
    expect(await next(1)).toEqual({ fenced: [] });
    expect(spy.mock.calls.map(([scope]) => [...scope].includes("fibers"))).toEqual([true]);
    await a.close();
  });

  it("is not fenced when another writer of its generation cleared the journal (a mirror's copy)", async () => {
    const { options, a, generation, next } = await confirmedWriter();
    const mirror = new IdbStore(options);
    await mirror.commit([{ fiberId: "f1", generation, clearJournal: true, journal: [step(0, "completed")] }]);
    expect(await next(1)).toEqual({ fenced: [] });
    expect(await a.readJournal("f1")).toEqual([step(0, "completed"), step(1, "completed")]);
    await a.close();
    await mirror.close();
  });
}
