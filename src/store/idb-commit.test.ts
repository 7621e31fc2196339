/**
 * `FiberKeys`, IdbStore's memory of where each fiber's rows go: per-generation segment numbers,
 * and a bound on how many fibers it remembers; and the commit scope it lets a commit narrow.
 */

import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { describe, expect, it } from "vitest";
import { testRecord } from "../core/test-records";
import { commitGroups, commitScope, FiberKeys, StaleKeys } from "./idb-commit";
import { IdbStore } from "./idb-store";

const step = (fiberId: string, generation: number) => ({
  fiberId,
  generation,
  journal: [
    {
      fiberId,
      pos: 0,
      kind: "step" as const,
      key: "s#1",
      status: "started" as const,
      attempt: 1,
      startedAt: 0,
    },
  ],
});

describe("FiberKeys", () => {
  it("knows the next segment for the generation it learned, and asks again for another one", () => {
    const keys = new FiberKeys();
    keys.rememberWriter("f", 7, 2, 5);
    expect(keys.ready(step("f", 2))).toBe(true);
    expect(keys.nextSegment(step("f", 2))).toBe(5);
    expect(keys.ready(step("f", 3))).toBe(false);
    expect(keys.nextSegment(step("f", 3))).toBeUndefined();
    // A patch-only group needs no keys at all; chunks need the handle only.
    expect(keys.ready({ fiberId: "g", generation: 0, fiber: { updatedAt: 1 } })).toBe(true);
    const chunks = [{ fiberId: "g", seq: 1, type: "t", data: null, at: 0 }];
    expect(keys.ready({ fiberId: "g", generation: 0, chunks })).toBe(false);
    keys.remember("g", 9);
    expect(keys.ready({ fiberId: "g", generation: 0, chunks })).toBe(true);
  });

  it("keeps only the fibers used last, so suspended fibers do not pile up", () => {
    const keys = new FiberKeys(3);
    for (const [i, id] of ["a", "b", "c"].entries()) keys.rememberWriter(id, i + 1, 1, 1);
    keys.nextSegment(step("a", 1)); // "a" is now the most recent
    keys.remember("d", 4);
    expect(keys.size).toBe(3);
    expect(keys.handle("b")).toBeUndefined();
    expect([keys.handle("a"), keys.handle("c"), keys.handle("d")]).toEqual([1, 3, 4]);
    expect(keys.ready(step("b", 1))).toBe(false);
  });
});

describe("commitScope", () => {
  const chunks = [{ fiberId: "f", seq: 1, type: "t", data: null, at: 0 }];

  it("leaves out the key stores for groups whose keys are known", () => {
    const keys = new FiberKeys();
    expect(commitScope([step("f", 2)], false, undefined, keys)).toEqual([
      "fibers",
      "handles",
      "journalSegments",
    ]);
    keys.rememberWriter("f", 7, 2, 5);
    expect(commitScope([step("f", 2)], false, undefined, keys)).toEqual(["fibers", "journalSegments"]);
    expect(commitScope([{ fiberId: "f", generation: 2, chunks }], false, undefined, keys)).toEqual([
      "fibers",
      "streamChunks",
    ]);
    // Without keys (or for another generation), every store a commit may need.
    expect(commitScope([step("f", 2)])).toEqual(["fibers", "handles", "journalSegments"]);
    expect(commitScope([step("f", 3)], false, undefined, keys)).toEqual([
      "fibers",
      "handles",
      "journalSegments",
    ]);
  });

  it("refuses a group it cannot place in a scope without the key stores, writing nothing", async () => {
    const indexedDB = new IDBFactory();
    const store = new IdbStore({ name: "scope", indexedDB });
    await store.createFiber(testRecord({ id: "f", generation: 2 }), []);
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const request = indexedDB.open("scope");
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    // The scope was chosen while the keys were known; they were forgotten before the commit ran.
    const tx = db.transaction(["fibers", "journalSegments"], "readwrite");
    await expect(commitGroups(tx, [step("f", 2)], new FiberKeys())).rejects.toBeInstanceOf(StaleKeys);
    db.close();
    expect(await store.readJournal("f")).toEqual([]);
    await store.close();
  });
});
