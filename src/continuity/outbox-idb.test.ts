/**
 * The `IdbStore` outbox in Node on fake-indexeddb: the crash-and-reopen cases shared with the
 * Chromium suite (`outbox-idb-cases.ts`), and what only Node can watch: the transactions of an
 * unreplicated fiber do not touch the outbox at all.
 */

// idb needs IDBDatabase, IDBKeyRange & co. as globals; each test still injects a fresh factory.
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { FiberRecord } from "../core/records";
import { IdbStore } from "../store/idb-store";
import { Outbox } from "./outbox";
import { runOutboxCrashTests } from "./outbox-idb-cases";
import { browserHome } from "./protocol";
import { ReplicatingStore } from "./replicating-store";

let dbCount = 0;
const uniqueName = () => `fiberline-outbox-${++dbCount}`;

describe("IdbStore outbox (fake-indexeddb)", () => {
  runOutboxCrashTests(() => ({ factory: new IDBFactory(), name: uniqueName() }));
});

describe("IdbStore outbox: what an unreplicated fiber pays", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("opens no transaction on the outbox for a fiber that is not replicated, beside one that is", async () => {
    const store = new IdbStore({ name: uniqueName(), indexedDB: new IDBFactory() });
    const outbox = await Outbox.open(store);
    const replicating = new ReplicatingStore(store, {
      outbox,
      home: browserHome("d1"),
      replicates: (name) => name === "replicated",
    });
    const record = (id: string, name: string): FiberRecord => ({
      id,
      name,
      version: "1",
      input: null,
      status: "running",
      createdAt: 1,
      updatedAt: 1,
      generation: 0,
      streamHead: 0,
      emitOrdinal: 0,
      epoch: 0,
      stalledRecoveries: 0,
      progressMark: "",
    });
    const scopes: string[][] = [];
    const transaction = IDBDatabase.prototype.transaction;
    vi.spyOn(IDBDatabase.prototype, "transaction").mockImplementation(function (
      this: IDBDatabase,
      stores: string | Iterable<string>,
      ...rest: [IDBTransactionMode?, IDBTransactionOptions?]
    ) {
      scopes.push(typeof stores === "string" ? [stores] : [...stores]);
      return transaction.call(this, stores, ...rest);
    });
    const touchesOutbox = () =>
      scopes.splice(0).some((scope) => scope.some((name) => name.startsWith("outbox")));

    await replicating.createFiber(record("u1", "local"), []);
    await replicating.commit([
      { fiberId: "u1", generation: 0, snapshot: { fiberId: "u1", value: 1, at: 1 } },
    ]);
    await replicating.commit([
      { fiberId: "u1", generation: 0, chunks: [{ fiberId: "u1", seq: 1, type: "token", data: "a", at: 1 }] },
    ]);
    await replicating.enqueueEvent({ fiberId: "u1", name: "go", payload: 1, at: 1 });
    expect(touchesOutbox()).toBe(false);

    await replicating.createFiber(record("r1", "replicated"), []);
    expect(touchesOutbox()).toBe(true);
    await replicating.commit([
      { fiberId: "r1", generation: 0, snapshot: { fiberId: "r1", value: 1, at: 1 } },
    ]);
    expect(touchesOutbox()).toBe(true);
    expect(outbox.batch("r1")?.entries.map((entry) => entry.type)).toEqual(["create", "commit"]);
    await store.close();
  });
});
