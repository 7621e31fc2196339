/**
 * How `IdbStore` appends a step's journal entries without reading the fiber's record for its
 * fence (`FiberKeys.fenceless`), and what still fences such a writer: another store's claim, a
 * forced claim in its own store, a deletion, a restart from scratch. Run on fake-indexeddb
 * (`idb-store.test.ts`) and on Chromium's IndexedDB (`idb-store.browser.test.ts`).
 */

import { afterEach, expect, it, vi } from "vitest";
import type { FiberRecord } from "../core/records";
import { IdbStore } from "./idb-store";
import { step } from "./idb-upgrade-cases";

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
    "is fenced when another store deleted the fiber (created again: %s), and leaves no row behind",
    async (recreate) => {
      const { options, a, next } = await confirmedWriter();
      const b = new IdbStore(options);
      await b.deleteFibers(["f1"]);
      if (recreate) await b.createFiber(record, []);
      expect(await next(1)).toEqual({ fenced: ["f1"] });
      const { indexedDB: factory, name } = options;
      expect(await journalKeys(factory, name)).toEqual([]);
      if (recreate) expect(await b.readJournal("f1")).toEqual([]);
      await a.close();
      await b.close();
    },
  );

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
