/**
 * The `IdbStore` outbox in Node on fake-indexeddb: the crash-and-reopen cases shared with the
 * Chromium suite (`outbox-idb-cases.ts`), what only Node can watch (the transactions of an
 * unreplicated fiber do not touch the outbox at all), and the `Outbox` side of the port: entries
 * reported out of order, acknowledgements written back, state restored.
 */

// idb needs IDBDatabase, IDBKeyRange & co. as globals; each test still injects a fresh factory.
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { FiberRecord } from "../core/records";
import { IdbStore } from "../store/idb-store";
import { Outbox } from "./outbox";
import { runOutboxCrashTests } from "./outbox-idb-cases";
import type { OutboxLog, OutboxProgress, SavedOutbox } from "./outbox-log";
import { browserHome, type ShippedEntry } from "./protocol";
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

describe("Outbox kept by a store", () => {
  /** A port that records what the outbox writes back, and answers loads from `saved`. */
  function recordingLog(saved: SavedOutbox[] = []) {
    const calls: OutboxProgress[][] = [];
    let release: (() => void) | undefined;
    const log: OutboxLog = {
      loadOutbox: async () => saved,
      adoptOutbox: async () => {},
      saveOutbox: (progress) => {
        calls.push([...progress]);
        return new Promise<void>((resolve) => {
          release = resolve;
        });
      },
    };
    return { log, calls, release: () => release?.() };
  }
  const create = (pos: number): ShippedEntry => ({
    pos,
    type: "create",
    record: { id: "r1" } as FiberRecord,
    chunks: [{ fiberId: "r1", seq: 1, type: "fiber.start", data: null, at: 1 }],
  });
  const commit = (pos: number, seq: number): ShippedEntry => ({
    pos,
    type: "commit",
    group: {
      fiberId: "r1",
      generation: 1,
      chunks: [{ fiberId: "r1", seq, type: "token", data: seq, at: 1 }],
    },
  });

  it("ships only a run without gaps when entries are reported out of order", async () => {
    const { log } = recordingLog();
    const outbox = await Outbox.open(log);
    outbox.appended("r1", 1, create(1));
    outbox.appended("r1", 1, commit(3, 3));
    expect(outbox.batch("r1")?.entries.map((e) => e.pos)).toEqual([1]);
    let started = false;
    const start = outbox.shipped("r1").then(() => {
      started = true;
    });
    outbox.appended("r1", 1, commit(2, 2));
    outbox.appended("r1", 1, commit(2, 2));
    expect(outbox.batch("r1")?.entries.map((e) => e.pos)).toEqual([1, 2, 3]);
    outbox.acknowledge("r1", 2, Date.now() + 60_000);
    await Promise.resolve();
    // Rule A waited for everything reported when it asked, position 3 included.
    expect(started).toBe(false);
    outbox.acknowledge("r1", 3, Date.now() + 60_000);
    await start;
    expect(outbox.visibleHead("r1")).toBe(3);
  });

  it("records acknowledgements after saveDelayMs, folded into one transaction; a fence at once", async () => {
    vi.useFakeTimers();
    try {
      const { log, calls, release } = recordingLog();
      const outbox = await Outbox.open(log, { saveDelayMs: 100 });
      for (let pos = 1; pos <= 4; pos++) outbox.appended("r1", 1, pos === 1 ? create(1) : commit(pos, pos));
      outbox.acknowledge("r1", 1, Date.now() + 60_000);
      outbox.acknowledge("r1", 2, Date.now() + 60_000);
      expect(calls).toEqual([]);
      await vi.advanceTimersByTimeAsync(100);
      expect(calls).toEqual([[{ fiberId: "r1", epoch: 1, acked: 2, shippedSeq: 2 }]]);
      // Acknowledged while that transaction runs: it waits for the next timer, not for the end.
      outbox.acknowledge("r1", 3, Date.now() + 60_000);
      release();
      await vi.advanceTimersByTimeAsync(99);
      expect(calls).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(calls[1]).toEqual([{ fiberId: "r1", epoch: 1, acked: 3, shippedSeq: 3 }]);
      // A fence while that one runs goes right after it, without a timer.
      outbox.fence("r1", 2, "edge", 3);
      release();
      await vi.waitFor(() => expect(calls).toHaveLength(3));
      expect(calls[2]).toEqual([
        { fiberId: "r1", epoch: 1, acked: 3, shippedSeq: 3, away: { epoch: 2, home: "edge" } },
      ]);
      release();
      await outbox.saved();
      // Reported after the fence (a commit that was under way): ignored, the fiber is away.
      outbox.appended("r1", 1, commit(5, 5));
      expect(outbox.hasPending("r1")).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it("saved() records waiting acknowledgements at once and resolves when they are", async () => {
    const { log, calls, release } = recordingLog();
    const outbox = await Outbox.open(log, { saveDelayMs: 60_000 });
    for (let pos = 1; pos <= 3; pos++) outbox.appended("r1", 1, pos === 1 ? create(1) : commit(pos, pos));
    outbox.acknowledge("r1", 2, Date.now() + 60_000);
    let recorded = false;
    const saved = outbox.saved().then(() => {
      recorded = true;
    });
    expect(calls).toEqual([[{ fiberId: "r1", epoch: 1, acked: 2, shippedSeq: 2 }]]);
    // Acknowledged while that runs and asked for again: written right after, before it resolves.
    outbox.acknowledge("r1", 3, Date.now() + 60_000);
    const again = outbox.saved();
    await Promise.resolve();
    expect(recorded).toBe(false);
    release();
    await vi.waitFor(() => expect(calls).toHaveLength(2));
    expect(calls[1]).toEqual([{ fiberId: "r1", epoch: 1, acked: 3, shippedSeq: 3 }]);
    release();
    await Promise.all([saved, again]);
    expect(recorded).toBe(true);
  });

  it("restores what it loads: positions, acknowledged position, visible head, and away", async () => {
    const { log } = recordingLog([
      { fiberId: "r1", epoch: 1, next: 4, acked: 2, shippedSeq: 2, ended: false, entries: [commit(3, 3)] },
      {
        fiberId: "r2",
        epoch: 1,
        next: 3,
        acked: 1,
        shippedSeq: 1,
        ended: false,
        away: { epoch: 2, home: "edge" },
        entries: [],
      },
    ]);
    const outbox = await Outbox.open(log);
    expect(outbox.batch("r1")).toMatchObject({ epoch: 1, from: 3, entries: [{ pos: 3 }] });
    expect(outbox.visibleHead("r1")).toBe(2);
    expect(outbox.where("r1")).toEqual({ status: "home" });
    expect(outbox.where("r2")).toEqual({ status: "away", epoch: 2, home: "edge" });
    await expect(outbox.shipped("r2")).rejects.toMatchObject({ code: "fenced" });
  });
});
