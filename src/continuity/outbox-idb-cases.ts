/**
 * The durable-outbox tests, shared by the Node suite (fake-indexeddb) and the Chromium suite
 * (real IndexedDB): a browser's `ReplicatingStore` over `IdbStore`, with the `Outbox` the store
 * keeps (`Outbox.open`), "crashes" (its store is closed with commits not shipped, or not even
 * reported to the in-memory outbox) and comes back on the same database. What it finds must be
 * exactly what was durable: the committed positions in order, without the acknowledged ones,
 * nothing of a failed commit, and a fiber that moved away still away. An `Arbiter` on a
 * `MemoryStore` takes the shipments, so "the replica is the browser's history" is checked too.
 * They import Vitest, so they are not exported from the package.
 */

import { expect, it } from "vitest";
import { FencedError, StoreError } from "../core/errors";
import type { FiberRecord, JournalEntry, StreamChunk } from "../core/records";
import type { WriteGroup } from "../core/store";
import { IdbStore } from "../store/idb-store";
import { MemoryStore } from "../store/memory-store";
import { Arbiter } from "./arbiter";
import { Outbox } from "./outbox";
import type { OutboxStore, OutboxWrite } from "./outbox-log";
import { browserHome, EDGE_HOME, homeEventId, type ShippedEntry } from "./protocol";
import { ReplicatingStore } from "./replicating-store";

/** Where the test database lives. */
export interface OutboxTarget {
  factory: IDBFactory;
  name: string;
}

const HOME = browserHome("d1");

/** One launch of the browser: its store, the outbox it loaded, and the replicating store over both. */
async function launch(target: OutboxTarget) {
  const store = new IdbStore({ name: target.name, indexedDB: target.factory });
  // The port is structural (src/store imports nothing of continuity): this line checks it fits.
  const keeper: OutboxStore = store;
  const outbox = await Outbox.open(keeper);
  const replicating = new ReplicatingStore(store, {
    outbox,
    home: HOME,
    replicates: (name) => name === "replicated",
  });
  return { store, outbox, replicating };
}

function fiber(id: string, name: string): FiberRecord {
  return {
    id,
    name,
    version: "1",
    input: { topic: id },
    status: "running",
    createdAt: 1,
    updatedAt: 1,
    generation: 0,
    streamHead: 1,
    emitOrdinal: 0,
    epoch: 0,
    stalledRecoveries: 0,
    progressMark: "",
  };
}

function start(fiberId: string): StreamChunk {
  return { fiberId, seq: 1, type: "fiber.start", data: null, at: 1 };
}

function token(fiberId: string, seq: number): StreamChunk {
  return { fiberId, seq, type: "token", data: `t${seq}`, at: seq, step: 0 };
}

export function stepEntry(fiberId: string, pos: number, status: "started" | "completed"): JournalEntry {
  return {
    fiberId,
    pos,
    kind: "step",
    key: `s#${pos + 1}`,
    status,
    attempt: 1,
    startedAt: 10,
    ...(status === "completed" ? { endedAt: 11, result: pos } : {}),
  };
}

/** The positions and types of what `outbox` would ship next for `fiberId`. */
function pending(outbox: Outbox, fiberId: string): Array<[number, ShippedEntry["type"]]> {
  return (outbox.batch(fiberId)?.entries ?? []).map((entry) => [entry.pos, entry.type]);
}

/** Every key of the database's `outbox` object store, read without `IdbStore`. */
async function outboxKeys(target: OutboxTarget): Promise<IDBValidKey[]> {
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const request = target.factory.open(target.name);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  try {
    return await new Promise<IDBValidKey[]>((resolve, reject) => {
      const request = db.transaction("outbox").objectStore("outbox").getAllKeys();
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

/** Ships everything `outbox` holds for `fiberId` to `arbiter` and acknowledges the answer. */
async function ship(outbox: Outbox, arbiter: Arbiter, fiberId: string): Promise<number> {
  const batch = outbox.batch(fiberId);
  if (batch === undefined) throw new Error(`${fiberId} is not replicated`);
  const answer = await arbiter.receive(fiberId, { home: HOME, ...batch });
  if (answer.status !== "ok") throw new Error(`shipment refused: ${JSON.stringify(answer)}`);
  outbox.acknowledge(fiberId, answer.appliedPos, Date.now() + 60_000);
  return answer.appliedPos;
}

/** Registers the tests; `target()` gives a fresh, unused database. */
export function runOutboxCrashTests(target: () => OutboxTarget): void {
  it("finds after a crash exactly the commits that were durable and not acknowledged, in order", async () => {
    const where = target();
    const edge = new MemoryStore();
    const arbiter = new Arbiter({ store: edge, leaseMs: 60_000 });

    const first = await launch(where);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    await first.replicating.createFiber(fiber("u1", "local"), [start("u1")]);
    const claim = await first.replicating.claimFiber("r1", { owner: "w", now: 1, leaseMs: 60_000 });
    if (claim.status !== "claimed") throw new Error("claim");
    const generation = claim.record.generation;
    await first.replicating.commit([
      { fiberId: "r1", generation, journal: [stepEntry("r1", 0, "started")] },
      { fiberId: "u1", generation: 0, journal: [stepEntry("u1", 0, "started")] },
    ]);
    expect(pending(first.outbox, "r1")).toEqual([
      [1, "create"],
      [2, "commit"],
    ]);
    // Positions 1 and 2 reach the arbiter and are acknowledged (their rows are deleted).
    expect(await ship(first.outbox, arbiter, "r1")).toBe(2);
    await first.replicating.enqueueEvent({ fiberId: "r1", name: "go", payload: 1, at: 5 });
    await first.replicating.commit([
      {
        fiberId: "r1",
        generation,
        journal: [stepEntry("r1", 0, "completed")],
        chunks: [token("r1", 2), token("r1", 3)],
        consumeEvents: [{ seq: 1, consumedBy: 1 }],
      },
    ]);
    await first.outbox.saved();
    // The browser dies here: positions 3 and 4 are durable and were never shipped.
    await first.store.close();

    const second = await launch(where);
    expect(second.outbox.replicated("r1")).toBe(true);
    expect(second.outbox.replicated("u1")).toBe(false);
    expect(second.outbox.acked("r1")).toBe(2);
    expect(pending(second.outbox, "r1")).toEqual([
      [3, "event"],
      [4, "commit"],
    ]);
    const [event, commit] = second.outbox.batch("r1")?.entries ?? [];
    expect(event).toMatchObject({
      type: "event",
      eventId: homeEventId(HOME, 1, 1),
      event: { seq: 1, name: "go" },
    });
    expect(commit).toMatchObject({ type: "commit", group: { fiberId: "r1", generation } });
    // Only the rows of positions 3 and 4 are left, none of the unreplicated fiber.
    expect(await outboxKeys(where)).toEqual([
      ["r1", 1, 3],
      ["r1", 1, 4],
    ]);
    // Rule B: chunks are visible up to the last acknowledged one (the create's fiber.start).
    expect(second.outbox.visibleHead("r1")).toBe(1);

    // The next commit continues at position 5, and shipping what was found makes the replica the
    // browser's history.
    await second.replicating.commit([
      { fiberId: "r1", generation, fiber: { status: "completed" }, chunks: [token("r1", 4)] },
    ]);
    expect(pending(second.outbox, "r1").map(([pos]) => pos)).toEqual([3, 4, 5]);
    expect(await ship(second.outbox, arbiter, "r1")).toBe(5);
    await second.outbox.saved();
    expect(second.outbox.settled("r1")).toBe(true);
    expect(second.outbox.visibleHead("r1")).toBe(4);
    expect(await outboxKeys(where)).toEqual([]);
    expect(await edge.readJournal("r1")).toEqual(await second.store.readJournal("r1"));
    expect(await edge.readStream("r1", 0)).toEqual(await second.store.readStream("r1", 0));
    // The replica keeps each event under the id it was shipped with (a send-on finds it by it).
    expect(await edge.readInbox("r1")).toEqual(
      (await second.store.readInbox("r1")).map((e) => ({ ...e, eventId: homeEventId(HOME, 1, e.seq) })),
    );
    await second.store.close();

    // Ended and acknowledged stays settled across a restart: nothing more to ship or heartbeat.
    const third = await launch(where);
    expect(third.outbox.settled("r1")).toBe(true);
    expect(third.outbox.visibleHead("r1")).toBe(4);
    await third.store.close();
  });

  it("keeps a commit whose transaction committed even when the browser died before anyone heard of it", async () => {
    const where = target();
    const first = await launch(where);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    // The store's report arrives in the transaction's `complete` event; a crash right after the
    // commit is the same as a report that never reached the in-memory outbox.
    const unheard: ShippedEntry[] = [];
    const write: OutboxWrite = {
      home: HOME,
      replicated: new Set(["r1"]),
      appended: (_, __, entry) => unheard.push(entry),
    };
    await first.store.commit(
      [{ fiberId: "r1", generation: 0, journal: [stepEntry("r1", 0, "started")] }],
      write,
    );
    expect(unheard.map((entry) => entry.pos)).toEqual([2]);
    expect(pending(first.outbox, "r1")).toEqual([[1, "create"]]);
    await first.store.close();

    const second = await launch(where);
    expect(pending(second.outbox, "r1")).toEqual([
      [1, "create"],
      [2, "commit"],
    ]);
    await second.store.close();
  });

  it("holds, after the store closed under a commit in flight, the same commits in the journal and in the outbox", async () => {
    const where = target();
    const first = await launch(where);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    const claim = await first.replicating.claimFiber("r1", { owner: "w", now: 1, leaseMs: 60_000 });
    if (claim.status !== "claimed") throw new Error("claim");
    const generation = claim.record.generation;
    // Commits one after another; the store closes after the fifth, while the sixth is under way:
    // the sixth lands or not, and no later one does.
    let landed = 0;
    let closing: Promise<void> | undefined;
    for (let pos = 0; pos < 10; pos++) {
      const commit = first.replicating.commit([
        { fiberId: "r1", generation, journal: [stepEntry("r1", pos, "started")] },
      ]);
      if (pos === 5) closing = first.store.close();
      if (
        !(await commit.then(
          () => true,
          () => false,
        ))
      )
        break;
      landed++;
    }
    await closing;
    expect(landed).toBeGreaterThanOrEqual(5);
    expect(landed).toBeLessThan(10);

    const second = await launch(where);
    const journal = (await second.store.readJournal("r1")).map((entry) => entry.pos);
    const shipped = (second.outbox.batch("r1")?.entries ?? []).flatMap((entry) =>
      entry.type === "commit" ? (entry.group.journal ?? []).map((e) => e.pos) : [],
    );
    expect(journal).toHaveLength(landed);
    expect(shipped).toEqual(journal);
    expect(pending(second.outbox, "r1").map(([pos]) => pos)).toEqual(
      Array.from({ length: landed + 1 }, (_, i) => i + 1),
    );
    await second.store.close();
  });

  it("leaves no outbox row for a commit that failed, and gives the next one the next position", async () => {
    const where = target();
    const first = await launch(where);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    const claim = await first.replicating.claimFiber("r1", { owner: "w", now: 1, leaseMs: 60_000 });
    if (claim.status !== "claimed") throw new Error("claim");
    const generation = claim.record.generation;

    // Fenced: a writer of the generation before the claim.
    expect(
      await first.replicating.commit([
        { fiberId: "r1", generation: 0, journal: [stepEntry("r1", 0, "started")] },
      ]),
    ).toEqual({ fenced: ["r1"] });
    // stream_gap: seq 3 does not continue a stream whose head is 1.
    const gap: WriteGroup = { fiberId: "r1", generation, chunks: [token("r1", 3)] };
    await expect(first.replicating.commit([gap])).rejects.toMatchObject({ code: "stream_gap" });
    // A value IndexedDB cannot clone fails the transaction after some of its writes were issued.
    const uncloneable = { ...stepEntry("r1", 0, "completed"), result: () => 1 } as JournalEntry;
    await expect(
      first.replicating.commit([{ fiberId: "r1", generation, journal: [uncloneable] }]),
    ).rejects.toBeInstanceOf(StoreError);
    expect(pending(first.outbox, "r1")).toEqual([[1, "create"]]);

    await first.replicating.commit([{ fiberId: "r1", generation, journal: [stepEntry("r1", 0, "started")] }]);
    expect(pending(first.outbox, "r1")).toEqual([
      [1, "create"],
      [2, "commit"],
    ]);
    await first.store.close();

    const second = await launch(where);
    expect(await outboxKeys(where)).toEqual([
      ["r1", 1, 1],
      ["r1", 1, 2],
    ]);
    expect(second.outbox.batch("r1")?.entries[1]).toMatchObject({
      group: { journal: [{ status: "started" }] },
    });
    await second.store.close();
  });

  it("keeps a fiber that moved to another home away across a restart, and writes it no more", async () => {
    const where = target();
    const first = await launch(where);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    const claim = await first.replicating.claimFiber("r1", { owner: "w", now: 1, leaseMs: 60_000 });
    if (claim.status !== "claimed") throw new Error("claim");
    const generation = claim.record.generation;
    await first.replicating.commit([{ fiberId: "r1", generation, journal: [stepEntry("r1", 0, "started")] }]);
    await first.replicating.commit([{ fiberId: "r1", generation, chunks: [token("r1", 2)] }]);
    // The arbiter held position 2 when the edge took over: 3 is dropped.
    first.outbox.fence("r1", 2, EDGE_HOME, 2);
    await first.outbox.saved();
    await first.store.close();

    const second = await launch(where);
    expect(second.outbox.where("r1")).toEqual({ status: "away", epoch: 2, home: EDGE_HOME });
    expect(second.outbox.mayWrite("r1", Date.now())).toBe(false);
    expect(pending(second.outbox, "r1")).toEqual([]);
    expect(await outboxKeys(where)).toEqual([]);
    // Nothing of it runs here: no claim, no commit, no event.
    expect(await second.replicating.claimFiber("r1", { owner: "w2", now: 2, leaseMs: 60_000 })).toMatchObject(
      {
        status: "held",
      },
    );
    expect(
      await second.replicating.commit([{ fiberId: "r1", generation, chunks: [token("r1", 3)] }]),
    ).toEqual({ fenced: ["r1"] });
    await expect(
      second.replicating.enqueueEvent({ fiberId: "r1", name: "go", payload: 1, at: 5 }),
    ).rejects.toBeInstanceOf(FencedError);
    // The store refuses it by itself too (a write that passed the in-memory check before the fence).
    const write: OutboxWrite = { home: HOME, replicated: new Set(["r1"]), appended: () => undefined };
    expect(
      await second.store.commit([{ fiberId: "r1", generation, chunks: [token("r1", 3)] }], write),
    ).toEqual({
      fenced: ["r1"],
    });
    await expect(
      second.store.enqueueEvent({ fiberId: "r1", name: "go", payload: 1, at: 5 }, write),
    ).rejects.toMatchObject({ code: "fenced", data: { epoch: 2, home: EDGE_HOME } });
    expect((await second.store.readStream("r1", 0)).map((chunk) => chunk.seq)).toEqual([1, 2]);
    expect(await second.store.readInbox("r1")).toEqual([]);
    expect(await outboxKeys(where)).toEqual([]);
    await second.store.close();
  });

  it("lets a step skip Rule A's wait only under a lease answered since the outbox opened, or for a fiber the arbiter never saw", async () => {
    const where = target();
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const first = await launch(where);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    // Nothing shipped yet: no other home can hold it.
    expect(first.outbox.leased("r1", Date.now())).toBe(true);
    await ship(first.outbox, arbiter, "r1");
    expect(first.outbox.leased("r1", Date.now())).toBe(true);
    expect(first.outbox.leased("r1", Date.now() + 120_000)).toBe(false);
    await first.outbox.saved();
    await first.store.close();

    // A restart (offline, say): the lease's end is not kept, and the edge may have taken over.
    const second = await launch(where);
    expect(second.outbox.mayWrite("r1", Date.now())).toBe(true);
    expect(second.outbox.leased("r1", Date.now())).toBe(false);
    second.outbox.acknowledge("r1", second.outbox.acked("r1"), Date.now() + 60_000);
    expect(second.outbox.leased("r1", Date.now())).toBe(true);
    await second.store.close();
  });

  it("refuses the claim of a copy whose record names another home, though its outbox forgot it", async () => {
    const where = target();
    const first = await launch(where);
    // A mirror's copy: rebuilt from the replica, its outbox entry gone with the copy it replaced.
    const home = { home: EDGE_HOME, epoch: 2, until: Date.now() + 60_000, appliedPos: 4, eventMarks: {} };
    await first.store.createFiber({ ...fiber("m1", "replicated"), home }, [start("m1")]);
    expect(first.outbox.where("m1")).toBeUndefined();
    expect(await first.replicating.claimFiber("m1", { owner: "w", now: 1, leaseMs: 60_000 })).toMatchObject({
      status: "held",
    });
    // A fiber of this home's, or one that never moved, is claimed as before.
    await first.store.createFiber({ ...fiber("m2", "replicated"), home: { ...home, home: HOME } }, [
      start("m2"),
    ]);
    expect(await first.replicating.claimFiber("m2", { owner: "w", now: 1, leaseMs: 60_000 })).toMatchObject({
      status: "claimed",
    });
    await first.store.close();
  });

  it("keeps a fiber handed back from the edge home across a restart, its next positions under the new epoch", async () => {
    const where = target();
    const first = await launch(where);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    const claim = await first.replicating.claimFiber("r1", { owner: "w", now: 1, leaseMs: 60_000 });
    if (claim.status !== "claimed") throw new Error("claim");
    await first.replicating.commit([
      { fiberId: "r1", generation: claim.record.generation, chunks: [token("r1", 2)] },
    ]);
    // The edge took it over (holding position 2) and ran it to seq 5; then it came home, epoch 3.
    first.outbox.fence("r1", 2, EDGE_HOME, 2);
    await first.outbox.saved();
    await first.outbox.adopt({
      fiberId: "r1",
      epoch: 3,
      acked: 2,
      shippedSeq: 5,
      deadline: Date.now() + 60_000,
    });
    expect(first.outbox.where("r1")).toMatchObject({ status: "home" });
    expect(first.outbox.visibleHead("r1")).toBe(5);
    await first.store.close();

    // A restart before anything was written under the new epoch finds it home, not away.
    const second = await launch(where);
    expect(second.outbox.where("r1")).toEqual({ status: "home" });
    expect(second.outbox.visibleHead("r1")).toBe(5);
    const again = await second.store.getFiber("r1");
    const next = await second.replicating.commit([
      { fiberId: "r1", generation: again?.generation ?? 0, chunks: [token("r1", 3)] },
    ]);
    expect(next).toEqual({ fenced: [] });
    // Its next entry is position 3 of epoch 3, which the arbiter's grant said comes next.
    expect(second.outbox.batch("r1")).toMatchObject({ epoch: 3, from: 3 });
    expect(pending(second.outbox, "r1")).toEqual([[3, "commit"]]);
    expect(await outboxKeys(where)).toEqual([["r1", 3, 3]]);
    // The same grant adopted again (its answer asked for twice) changes nothing: position 3 is
    // not numbered again, in memory or in the store.
    await second.outbox.adopt({
      fiberId: "r1",
      epoch: 3,
      acked: 2,
      shippedSeq: 5,
      deadline: Date.now() + 60_000,
    });
    await second.store.adoptOutbox({ fiberId: "r1", epoch: 3, acked: 2, shippedSeq: 5 });
    expect(pending(second.outbox, "r1")).toEqual([[3, "commit"]]);
    expect(await outboxKeys(where)).toEqual([["r1", 3, 3]]);
    expect((await second.store.loadOutbox()).find((o) => o.fiberId === "r1")).toMatchObject({
      epoch: 3,
      next: 4,
    });
    await second.store.close();
  });

  it("deletes a fiber's outbox with the fiber, and a fiber created again under its id starts at position 1", async () => {
    const where = target();
    const first = await launch(where);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    await first.replicating.commit([{ fiberId: "r1", generation: 0, fiber: { status: "completed" } }]);
    // Not acknowledged: the replicating store keeps it until it is.
    expect(await first.replicating.deleteFibers(["r1"])).toEqual([]);
    await first.store.deleteFibers(["r1"]);
    first.outbox.forget("r1");
    expect(await outboxKeys(where)).toEqual([]);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    expect(pending(first.outbox, "r1")).toEqual([[1, "create"]]);
    await first.store.close();

    const second = await launch(where);
    expect(pending(second.outbox, "r1")).toEqual([[1, "create"]]);
    expect(second.outbox.settled("r1")).toBe(false);
    await second.store.close();
  });

  it("keeps the id of an event the edge pushed, in the inbox and in the outbox across a restart", async () => {
    const where = target();
    const first = await launch(where);
    await first.replicating.createFiber(fiber("r1", "replicated"), [start("r1")]);
    await first.replicating.enqueueEvent({
      fiberId: "r1",
      name: "go",
      payload: 1,
      at: 5,
      eventId: `${EDGE_HOME}:1`,
    });
    await first.replicating.enqueueEvent({ fiberId: "r1", name: "go", payload: 2, at: 6 });
    await first.store.close();

    const second = await launch(where);
    // enqueuePushedEvents knows a pushed event by this id in the inbox: it must not enqueue it twice.
    expect((await second.store.readInbox("r1")).map((event) => event.eventId)).toEqual([
      `${EDGE_HOME}:1`,
      undefined,
    ]);
    // The arbiter knows it back by the shipped event's own id.
    const shipped = (second.outbox.batch("r1")?.entries ?? []).filter((entry) => entry.type === "event");
    expect(shipped.map((entry) => (entry.type === "event" ? entry.event.eventId : null))).toEqual([
      `${EDGE_HOME}:1`,
      undefined,
    ]);
    await second.store.close();
  });

  it("refuses an outbox in memory over a store that keeps it, and the other way round", async () => {
    const where = target();
    const store = new IdbStore({ name: where.name, indexedDB: where.factory });
    const options = { home: HOME, replicates: () => true };
    expect(() => new ReplicatingStore(store, { ...options, outbox: new Outbox() })).toThrow(/Outbox\.open/);
    const kept = await Outbox.open(store);
    expect(() => new ReplicatingStore(new MemoryStore(), { ...options, outbox: kept })).toThrow(
      /cannot keep an outbox/,
    );
    expect(() =>
      kept.append("r1", { type: "create", record: fiber("r1", "replicated"), chunks: [] }),
    ).toThrow(/kept by its store/);
    await store.close();
  });
}
