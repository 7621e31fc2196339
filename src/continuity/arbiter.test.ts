/**
 * The arbiter on its own, fed hand-made shipments over a `MemoryStore` replica: order, gaps,
 * duplicates, fencing, the takeover once the lease lapses, that a crash between two of its
 * transactions never applies a position twice, and what a sender and the alarm see after a
 * shipment cut short (the Durable Object killed, or a store error).
 */

import { describe, expect, it } from "vitest";
import type { FiberRecord, InboxEvent, StreamChunk } from "../core/records";
import type { CommitResult, WriteGroup } from "../core/store";
import { MemoryStore } from "../store/memory-store";
import { Arbiter } from "./arbiter";
import { EDGE_HOME, homeEventId, type Shipment, type ShippedEntry } from "./protocol";

const HOME = "browser:d1";
const T0 = Date.UTC(2030, 0, 1);

function record(id: string): FiberRecord {
  return {
    id,
    name: "ticker",
    version: "1",
    input: null,
    status: "running",
    createdAt: T0,
    updatedAt: T0,
    generation: 1,
    owner: "runner-b",
    leaseUntil: T0 + 15_000,
    streamHead: 1,
    emitOrdinal: 0,
    epoch: 0,
    stalledRecoveries: 0,
    progressMark: "",
  };
}

function chunk(id: string, seq: number, type = "tick"): StreamChunk {
  return { fiberId: id, seq, type, data: { seq }, at: T0 + seq };
}

const create = (id: string): ShippedEntry => ({
  pos: 1,
  type: "create",
  record: record(id),
  chunks: [chunk(id, 1, "fiber.start")],
});
const emit = (id: string, pos: number, seq: number): ShippedEntry => ({
  pos,
  type: "commit",
  group: { fiberId: id, generation: 1, chunks: [chunk(id, seq)], fiber: { emitOrdinal: seq - 1 } },
});
const event = (id: string, pos: number, seq: number): ShippedEntry => {
  const stored: InboxEvent = { fiberId: id, seq, name: "go", payload: { n: seq }, at: T0 + pos };
  return { pos, type: "event", event: stored, eventId: homeEventId(HOME, 1, seq) };
};

const end = (id: string, pos: number): ShippedEntry => ({
  pos,
  type: "commit",
  group: { fiberId: id, generation: 1, fiber: { status: "completed", result: "done", endedAt: T0 } },
});

function shipment(entries: ShippedEntry[], over: Partial<Shipment> = {}): Shipment {
  return { home: HOME, epoch: 1, from: entries[0]?.pos ?? 1, entries, ...over };
}

function rig(store = new MemoryStore()) {
  let now = T0;
  const arbiter = new Arbiter({ store, clock: () => now, leaseMs: 30_000 });
  return {
    store,
    arbiter,
    advance(ms: number) {
      now += ms;
    },
  };
}

describe("Arbiter", () => {
  it("creates the replica at position 1 and applies positions in order, renewing the lease", async () => {
    const { store, arbiter, advance } = rig();
    const first = await arbiter.receive("f1", shipment([create("f1"), emit("f1", 2, 2)]));
    expect(first).toEqual({ status: "ok", appliedPos: 2, leaseMs: 30_000 });
    advance(10_000);
    const second = await arbiter.receive("f1", shipment([emit("f1", 3, 3), event("f1", 4, 1)]));
    expect(second).toEqual({ status: "ok", appliedPos: 4, leaseMs: 30_000 });
    const replica = await store.getFiber("f1");
    expect(replica?.home).toEqual({
      home: HOME,
      epoch: 1,
      until: T0 + 40_000,
      appliedPos: 4,
      eventMarks: { [`${HOME}@1`]: 1 },
    });
    // The edge runtime's own recovery stays off the fiber until the browser's lease lapses.
    expect(replica?.owner).toBe(HOME);
    expect(replica?.leaseUntil).toBe(T0 + 40_000);
    expect((await store.readStream("f1", 0)).map((c) => c.seq)).toEqual([1, 2, 3]);
    expect(replica?.streamHead).toBe(3);
    expect(replica?.emitOrdinal).toBe(2);
    expect((await store.readInbox("f1")).map((e) => e.payload)).toEqual([{ n: 1 }]);
  });

  it("ignores positions it holds and refuses a gap with the position to resend from", async () => {
    const { store, arbiter } = rig();
    const ship = shipment([create("f1"), emit("f1", 2, 2)]);
    await arbiter.receive("f1", ship);
    expect(await arbiter.receive("f1", ship)).toMatchObject({ status: "ok", appliedPos: 2 });
    expect((await store.readStream("f1", 0)).length).toBe(2);
    const gap = await arbiter.receive("f1", shipment([emit("f1", 4, 3)]));
    expect(gap).toEqual({ status: "out_of_order", appliedPos: 2 });
    // A shipment that overlaps what it holds applies only the rest.
    const overlap = await arbiter.receive("f1", shipment([emit("f1", 2, 2), emit("f1", 3, 3)]));
    expect(overlap).toMatchObject({ status: "ok", appliedPos: 3 });
    expect((await store.readStream("f1", 0)).map((c) => c.seq)).toEqual([1, 2, 3]);
  });

  it("asks for position 1 before anything else of an unknown fiber", async () => {
    const { store, arbiter } = rig();
    expect(await arbiter.receive("f1", shipment([emit("f1", 2, 2)]))).toEqual({
      status: "out_of_order",
      appliedPos: 0,
    });
    expect(await store.getFiber("f1")).toBeUndefined();
  });

  it("refuses a shipment with a row of another fiber, or a create under another id, and writes nothing of it", async () => {
    const { store, arbiter } = rig();
    await arbiter.receive("v", shipment([create("v"), emit("v", 2, 2)]));
    await arbiter.receive("m", shipment([create("m")], { home: "browser:m" }));
    const before = JSON.stringify([
      await store.readStream("v", 0),
      await store.readJournal("v"),
      await store.readSnapshot("v"),
    ]);
    const step = {
      fiberId: "v",
      pos: 0,
      kind: "step",
      key: "pay#1",
      status: "completed",
      attempt: 1,
      startedAt: T0,
      result: 1e6,
    } as const;
    const forged: WriteGroup[] = [
      { fiberId: "m", generation: 1, chunks: [chunk("v", 3)] },
      { fiberId: "m", generation: 1, journal: [step] },
      { fiberId: "m", generation: 1, snapshot: { fiberId: "v", value: "forged", at: T0 } },
      { fiberId: "m", generation: 1, fiber: { id: "v" } },
    ];
    for (const group of forged) {
      const sent = shipment([{ pos: 2, type: "commit", group }], { home: "browser:m" });
      await expect(arbiter.receive("m", sent)).rejects.toMatchObject({ code: "protocol_error" });
    }
    // A create whose record names a fiber other than the one it is sent for (a ghost nobody owns).
    await expect(arbiter.receive("decoy", shipment([create("ghost")]))).rejects.toMatchObject({
      code: "protocol_error",
    });
    const event: ShippedEntry = {
      pos: 2,
      type: "event",
      event: { fiberId: "v", seq: 1, name: "go", payload: 1, at: T0 },
      eventId: "x:1",
    };
    await expect(arbiter.receive("m", shipment([event], { home: "browser:m" }))).rejects.toMatchObject({
      code: "protocol_error",
    });
    expect(await store.getFiber("ghost")).toBeUndefined();
    expect(await store.getFiber("decoy")).toBeUndefined();
    expect(
      JSON.stringify([
        await store.readStream("v", 0),
        await store.readJournal("v"),
        await store.readSnapshot("v"),
      ]),
    ).toBe(before);
    expect((await store.readStream("m", 0)).length).toBe(1);
  });

  it("refuses entries missing what their type needs with protocol_error, not a TypeError", async () => {
    const { store, arbiter } = rig();
    await arbiter.receive("s", shipment([create("s")]));
    const broken = [
      { pos: 1, type: "create" },
      { pos: 2, type: "commit" },
      { pos: 2, type: "commit", group: { fiberId: "s", generation: 1, journal: "rows" } },
      { pos: 2, type: "event", event: { fiberId: "s", seq: 1, name: "go", payload: 1, at: T0 } },
      { pos: 2, type: "delete" },
    ] as unknown as ShippedEntry[];
    for (const entry of broken) {
      const fiber = entry.pos === 1 ? "t" : "s";
      await expect(arbiter.receive(fiber, shipment([entry]))).rejects.toMatchObject({
        code: "protocol_error",
        message: expect.stringContaining(`position ${entry.pos}`),
      });
    }
    expect(await store.getFiber("t")).toBeUndefined();
    expect((await store.readStream("s", 0)).length).toBe(1);
    // A group that clears the snapshot (a restart from scratch) is well-formed.
    const cleared = emit("s", 2, 2);
    if (cleared.type === "commit") cleared.group.snapshot = null;
    expect(await arbiter.receive("s", shipment([cleared]))).toMatchObject({ status: "ok", appliedPos: 2 });
  });

  it("takes a create of another fiber under an ended replica's id for a new replica, never for a resend of the old one", async () => {
    const { store, arbiter } = rig();
    await arbiter.receive("c1", shipment([create("c1"), emit("c1", 2, 2), end("c1", 3)]));
    // A resend of the same create (its answer was lost) is held, as any position is.
    expect(await arbiter.receive("c1", shipment([create("c1")]))).toMatchObject({
      status: "ok",
      appliedPos: 3,
    });
    // The browser collected c1 and started the id again: a new fiber, whose positions start at 1.
    const again: ShippedEntry = {
      pos: 1,
      type: "create",
      record: { ...record("c1"), createdAt: T0 + 60_000 },
      chunks: [chunk("c1", 1, "fiber.start")],
    };
    expect(await arbiter.receive("c1", shipment([again]))).toMatchObject({ status: "ok", appliedPos: 1 });
    expect(await store.getFiber("c1")).toMatchObject({ createdAt: T0 + 60_000, status: "running" });
    expect((await store.readStream("c1", 0)).map((c) => c.type)).toEqual(["fiber.start"]);
    expect(await arbiter.receive("c1", shipment([emit("c1", 2, 2)]))).toMatchObject({
      status: "ok",
      appliedPos: 2,
    });
    // While that one runs, a third fiber under the id is refused: its replica has not ended.
    const third: ShippedEntry = { ...again, record: { ...record("c1"), createdAt: T0 + 120_000 } };
    await expect(arbiter.receive("c1", shipment([third]))).rejects.toMatchObject({
      code: "replica_conflict",
    });
    expect(await store.getFiber("c1")).toMatchObject({ createdAt: T0 + 60_000 });
  });

  it("fences a stale epoch or another home and writes nothing of it", async () => {
    const { store, arbiter } = rig();
    await arbiter.receive("f1", shipment([create("f1")]));
    expect(await arbiter.receive("f1", shipment([emit("f1", 2, 2)], { home: "browser:d2" }))).toEqual({
      status: "fenced",
      epoch: 1,
      home: HOME,
      // Nothing of another device's positions is in the replica.
      appliedPos: 0,
    });
    expect(await arbiter.receive("f1", shipment([emit("f1", 2, 2)], { epoch: 0 }))).toMatchObject({
      status: "fenced",
    });
    expect((await store.readStream("f1", 0)).length).toBe(1);
  });

  it("hands the fiber to the edge once the lease lapses and fences the browser from then on", async () => {
    const { store, arbiter, advance } = rig();
    await arbiter.receive("f1", shipment([create("f1")]));
    advance(29_999);
    expect(await arbiter.takeOverLapsed()).toEqual([]);
    expect(await arbiter.nextLapse()).toBe(T0 + 30_000);
    advance(1);
    expect(await arbiter.takeOverLapsed()).toEqual(["f1"]);
    const replica = await store.getFiber("f1");
    expect(replica?.home).toMatchObject({ home: EDGE_HOME, epoch: 2, appliedPos: 1 });
    expect(replica?.owner).toBeUndefined();
    // The former home learns how far the replica holds its epoch: the rest of its outbox goes.
    expect(await arbiter.receive("f1", shipment([emit("f1", 2, 2)]))).toEqual({
      status: "fenced",
      epoch: 2,
      home: EDGE_HOME,
      appliedPos: 1,
    });
    expect(await arbiter.receive("f1", shipment([emit("f1", 2, 2)], { home: "browser:d2" }))).toMatchObject({
      appliedPos: 0,
    });
    expect(await arbiter.nextLapse()).toBeUndefined();
  });

  it("takes over at a shipment that arrives after the lease lapsed, instead of applying it", async () => {
    const { store, arbiter, advance } = rig();
    await arbiter.receive("f1", shipment([create("f1")]));
    advance(30_000);
    expect(await arbiter.receive("f1", shipment([emit("f1", 2, 2)]))).toEqual({
      status: "fenced",
      epoch: 2,
      home: EDGE_HOME,
      appliedPos: 1,
    });
    expect((await store.readStream("f1", 0)).length).toBe(1);
  });

  it("applies every position once when its store fails between two of its transactions", async () => {
    const store = new FailingStore();
    const { arbiter } = rig(store);
    await arbiter.receive("f1", shipment([create("f1")]));
    // Position 2 (an event) is enqueued, then the commit recording it fails.
    store.failNextCommit = true;
    const ship = shipment([event("f1", 2, 1), emit("f1", 3, 2)]);
    await expect(arbiter.receive("f1", ship)).rejects.toThrow(/simulated/);
    expect((await store.getFiber("f1"))?.home?.appliedPos).toBe(1);
    expect(await arbiter.receive("f1", ship)).toMatchObject({ status: "ok", appliedPos: 3 });
    expect((await store.readInbox("f1")).map((e) => e.seq)).toEqual([1]);
    expect((await store.readStream("f1", 0)).map((c) => c.seq)).toEqual([1, 2]);
    // The same event shipped again later (a retry after an answer was lost) is held once.
    const again = await arbiter.receive("f1", shipment([event("f1", 4, 1)]));
    expect(again).toMatchObject({ status: "ok", appliedPos: 4 });
    expect((await store.readInbox("f1")).length).toBe(1);
  });

  it("tells a fenced sender its event arrived when only the write recording it was lost", async () => {
    const store = new FailingStore();
    const { arbiter, advance } = rig(store);
    await arbiter.receive("f1", shipment([create("f1")]));
    store.failNextCommit = true;
    const ship = shipment([event("f1", 2, 1)]);
    await expect(arbiter.receive("f1", ship)).rejects.toThrow(/simulated/);
    // The lease lapses before the sender retries: the edge takes over, and the event is in its inbox.
    advance(30_000);
    expect(await arbiter.receive("f1", ship)).toEqual({
      status: "fenced",
      epoch: 2,
      home: EDGE_HOME,
      appliedPos: 2,
    });
    // An event of the edge's own at that seq is not taken for the sender's.
    const other = new FailingStore();
    const second = rig(other);
    await second.arbiter.receive("f2", shipment([create("f2")]));
    second.advance(30_000);
    await second.arbiter.takeOverLapsed();
    await other.enqueueEvent({ fiberId: "f2", name: "go", payload: { n: "webhook" }, at: T0 });
    expect(await second.arbiter.receive("f2", shipment([event("f2", 2, 1)]))).toMatchObject({
      appliedPos: 1,
    });
  });

  it("refuses to replicate onto a fiber that was started at the edge", async () => {
    const { store, arbiter } = rig();
    await store.createFiber(record("f1"), [chunk("f1", 1, "fiber.start")]);
    await expect(arbiter.receive("f1", shipment([create("f1")]))).rejects.toMatchObject({
      code: "replica_conflict",
    });
  });
});

describe("Arbiter.cancel", () => {
  it("keeps a cancel for the browser that holds the fiber and sends it in every answer until a shipment ends it", async () => {
    const { store, arbiter } = rig();
    await arbiter.receive("f1", shipment([create("f1")]));
    expect(await arbiter.cancel("f1", "stop")).toEqual({
      status: "forwarded",
      fiberStatus: "running",
      home: HOME,
    });
    // A second cancel keeps the first reason.
    expect(await arbiter.cancel("f1", "again")).toMatchObject({ status: "forwarded" });
    expect((await store.getFiber("f1"))?.home?.cancel).toEqual({ reason: "stop", at: T0 });
    // A heartbeat and a shipment that does not end the fiber both carry it.
    expect(await arbiter.receive("f1", shipment([], { from: 2 }))).toMatchObject({
      cancel: { reason: "stop" },
    });
    expect(await arbiter.receive("f1", shipment([emit("f1", 2, 2)]))).toMatchObject({
      status: "ok",
      appliedPos: 2,
      cancel: { reason: "stop" },
    });
    const cancelled: ShippedEntry = {
      pos: 3,
      type: "commit",
      group: { fiberId: "f1", generation: 1, fiber: { status: "cancelled", endedAt: T0 } },
    };
    const answer = await arbiter.receive("f1", shipment([cancelled]));
    expect(answer).toEqual({ status: "ok", appliedPos: 3, leaseMs: 30_000 });
    expect((await store.getFiber("f1"))?.home?.cancel).toBeUndefined();
    expect(await arbiter.cancel("f1", "late")).toEqual({ status: "ended", fiberStatus: "cancelled" });
  });

  it("drops the cancel when the fiber ends otherwise first, and answers that end to a later cancel", async () => {
    const { store, arbiter } = rig();
    await arbiter.receive("f1", shipment([create("f1")]));
    await arbiter.cancel("f1", "stop");
    expect(await arbiter.receive("f1", shipment([end("f1", 2)]))).not.toHaveProperty("cancel");
    expect((await store.getFiber("f1"))?.home?.cancel).toBeUndefined();
    expect(await arbiter.cancel("f1", "stop")).toEqual({ status: "ended", fiberStatus: "completed" });
  });

  it("ends the fiber as cancelled in the takeover's own write when the browser's lease lapses first", async () => {
    const { store, arbiter, advance } = rig();
    await arbiter.receive("f1", shipment([create("f1"), emit("f1", 2, 2)]));
    await arbiter.cancel("f1", "stop");
    advance(30_000);
    expect(await arbiter.takeOverLapsed()).toEqual(["f1"]);
    const replica = await store.getFiber("f1");
    expect(replica).toMatchObject({
      status: "cancelled",
      streamHead: 3,
      error: { code: "cancelled", message: "stop" },
    });
    expect(replica?.home).toMatchObject({ home: EDGE_HOME, epoch: 2, formerHome: HOME });
    expect(replica?.home?.cancel).toBeUndefined();
    expect(replica?.owner).toBeUndefined();
    const stream = await store.readStream("f1", 0);
    expect(stream.map((c) => c.type)).toEqual(["fiber.start", "tick", "fiber.end"]);
    expect(stream.at(-1)?.data).toMatchObject({ status: "cancelled", error: { code: "cancelled" } });
    // The browser, back, is fenced and keeps what the replica held of its epoch.
    expect(await arbiter.receive("f1", shipment([emit("f1", 3, 3)]))).toMatchObject({
      status: "fenced",
      appliedPos: 2,
    });
  });

  it("stops renewing the lease a lease after the cancel, so a browser that never carries it out is taken over", async () => {
    const { store, arbiter, advance } = rig();
    await arbiter.receive("f1", shipment([create("f1")])); // lease until T0 + 30 s
    advance(5_000);
    await arbiter.cancel("f1", "stop"); // at T0 + 5 s: the lease ends by T0 + 35 s at the latest
    advance(10_000);
    expect(await arbiter.receive("f1", shipment([], { from: 2 }))).toMatchObject({
      status: "ok",
      leaseMs: 20_000,
      cancel: { reason: "stop" },
    });
    advance(19_000); // T0 + 34 s: a heartbeat renews nothing past T0 + 35 s
    expect(await arbiter.receive("f1", shipment([], { from: 2 }))).toMatchObject({ leaseMs: 1_000 });
    advance(1_000);
    expect(await arbiter.takeOverLapsed()).toEqual(["f1"]);
    expect(await store.getFiber("f1")).toMatchObject({ status: "cancelled" });
  });

  it("takes over a lapsed lease first, then says to cancel here; a fiber at the edge or no replica is cancelled here", async () => {
    const { store, arbiter, advance } = rig();
    await arbiter.receive("f1", shipment([create("f1")]));
    advance(30_000);
    expect(await arbiter.cancel("f1", "stop")).toEqual({ status: "here" });
    expect((await store.getFiber("f1"))?.home).toMatchObject({ home: EDGE_HOME, epoch: 2 });
    expect((await store.getFiber("f1"))?.home?.cancel).toBeUndefined();
    expect(await arbiter.cancel("f1", "stop")).toEqual({ status: "here" });
    expect(await arbiter.cancel("nope", "stop")).toEqual({ status: "here" });
  });
});

describe("Arbiter.nextLapse", () => {
  it("answers from the leases it keeps: the store's fibers are listed once, on the first question", async () => {
    const store = new ListCountingStore();
    const { arbiter, advance } = rig(store);
    expect(await arbiter.nextLapse()).toBeUndefined();
    expect(store.lists).toBe(1);

    await arbiter.receive("f1", shipment([create("f1")]));
    advance(5_000);
    await arbiter.receive("f2", shipment([create("f2")]));
    expect(await arbiter.nextLapse()).toBe(T0 + 30_000);
    // A renewal moves f1's end past f2's: f2 is first now.
    advance(5_000);
    await arbiter.receive("f1", shipment([], { from: 2 }));
    expect(await arbiter.nextLapse()).toBe(T0 + 35_000);
    // A fiber that ends in the browser no longer has a lease to watch.
    await arbiter.receive("f2", shipment([end("f2", 2)]));
    expect(await arbiter.nextLapse()).toBe(T0 + 40_000);
    // A takeover hands f1 to the edge: nothing left for the alarm to take over.
    advance(30_000);
    expect(await arbiter.takeOverLapsed()).toEqual(["f1"]);
    expect(await arbiter.nextLapse()).toBeUndefined();
    expect(await arbiter.takeOverLapsed()).toEqual([]);
    expect(store.lists).toBe(1);
  });

  it("finds the leases again after a restart, and keeps those written while it reads them", async () => {
    const store = new ListCountingStore();
    const before = rig(store);
    await before.arbiter.receive("f1", shipment([create("f1")]));
    await before.arbiter.receive("f2", shipment([create("f2")]));
    await before.arbiter.receive("f2", shipment([end("f2", 2)]));

    // A new arbiter on the same replicas (the object restarted): f1's lease, not f2's.
    const after = rig(store);
    after.advance(1_000);
    // A shipment renews f1 while the first listing is still being read.
    store.slowLists = true;
    const first = after.arbiter.nextLapse();
    await after.arbiter.receive("f1", shipment([], { from: 2 }));
    store.release();
    expect(await first).toBe(T0 + 31_000);
    expect(store.lists).toBe(1);
  });
});

describe("Arbiter.comeHome", () => {
  const BACK = "browser:d2";

  /** A replica the edge took over and suspended (as its runtime leaves a waiting fiber). */
  async function atEdge(status: "waiting" | "sleeping" | "running" = "waiting") {
    const r = rig();
    await r.arbiter.receive("f1", shipment([create("f1")]));
    r.advance(30_000);
    expect(await r.arbiter.takeOverLapsed()).toEqual(["f1"]);
    const record = (await r.store.getFiber("f1")) as FiberRecord;
    await r.store.commit([
      {
        fiberId: "f1",
        generation: record.generation,
        fiber: {
          status,
          owner: status === "running" ? "edge-runner" : undefined,
          leaseUntil: status === "running" ? T0 + 90_000 : undefined,
        },
      },
    ]);
    return r;
  }

  it("hands a fiber suspended at the edge to the asking browser, under a new epoch, once", async () => {
    const { store, arbiter } = await atEdge();
    const answer = await arbiter.comeHome("f1", BACK);
    expect(answer).toEqual({ status: "granted", epoch: 3, appliedPos: 1, leaseMs: 30_000 });
    const replica = await store.getFiber("f1");
    expect(replica?.home).toMatchObject({ home: BACK, epoch: 3, formerHome: EDGE_HOME, appliedPos: 1 });
    // Its lease is the arbiter's to watch again, and the edge runtime's claims are refused.
    expect(await arbiter.nextLapse()).toBe(T0 + 60_000);
    let claimed = false;
    const claim = await arbiter.claimAtEdge("f1", T0 + 30_000, async () => {
      claimed = true;
      return { status: "missing" };
    });
    expect(claimed).toBe(false);
    expect(claim).toMatchObject({ status: "held", record: { leaseUntil: T0 + 60_000 } });
    // Asked again by the same browser (its answer was lost): the same grant.
    expect(await arbiter.comeHome("f1", BACK)).toMatchObject({ status: "granted", epoch: 3, appliedPos: 1 });
    // Another browser is refused while this one holds it; the edge's old epoch is fenced.
    expect(await arbiter.comeHome("f1", "browser:d3")).toEqual({ status: "refused", reason: "held" });
    // The new home ships from appliedPos + 1 under its epoch.
    expect(await arbiter.receive("f1", shipment([emit("f1", 2, 2)], { home: BACK, epoch: 3 }))).toMatchObject(
      {
        status: "ok",
        appliedPos: 2,
      },
    );
    expect((await store.readStream("f1", 0)).map((c) => c.seq)).toEqual([1, 2]);
  });

  it("tells an event a home buffered before it left from one it buffered at the same seq after it came back", async () => {
    const { store, arbiter } = await atEdge();
    // The fiber was created at HOME (epoch 1) and comes home there again (epoch 3). Its copy's
    // inbox was rebuilt from the replica's (empty), so the first event buffered since is seq 1.
    expect(await arbiter.comeHome("f1", HOME)).toMatchObject({ status: "granted", epoch: 3 });
    const since = { ...event("f1", 2, 1), eventId: homeEventId(HOME, 3, 1) };
    expect(await arbiter.receive("f1", shipment([since], { epoch: 3, from: 2 }))).toMatchObject({
      status: "ok",
      appliedPos: 2,
    });
    // The event buffered at seq 1 in epoch 1, dropped there by the fence, is sent on under its id:
    // it is a new event (pushed to the home), not the one the replica holds at seq 1.
    const before = await arbiter.accept({
      fiberId: "f1",
      name: "go",
      payload: "dropped",
      at: T0,
      eventId: homeEventId(HOME, 1, 1),
    });
    expect(before).toMatchObject({ seq: 0, eventId: "edge:1", payload: "dropped" });
    // Sent on again under the id it had in epoch 3, the one the replica holds is that event.
    const again = await arbiter.accept({
      fiberId: "f1",
      name: "go",
      payload: { n: 1 },
      at: T0,
      eventId: homeEventId(HOME, 3, 1),
    });
    expect(again).toMatchObject({ seq: 1, payload: { n: 1 } });
    expect((await store.readInbox("f1")).map((e) => e.payload)).toEqual([{ n: 1 }]);
  });

  it("refuses while the edge runs the fiber, an event waits for it there, or it ended", async () => {
    const running = await atEdge("running");
    expect(await running.arbiter.comeHome("f1", BACK)).toEqual({ status: "refused", reason: "running" });
    expect((await running.store.getFiber("f1"))?.home?.home).toBe(EDGE_HOME);

    const waiting = await atEdge("waiting");
    await waiting.arbiter.accept({ fiberId: "f1", name: "go", payload: 1, at: T0 });
    expect(await waiting.arbiter.comeHome("f1", BACK)).toEqual({ status: "refused", reason: "running" });

    const ended = await atEdge("waiting");
    const record = (await ended.store.getFiber("f1")) as FiberRecord;
    await ended.store.commit([
      { fiberId: "f1", generation: record.generation, fiber: { status: "completed" } },
    ]);
    expect(await ended.arbiter.comeHome("f1", BACK)).toEqual({ status: "refused", reason: "ended" });
    await expect(ended.arbiter.comeHome("nowhere", BACK)).rejects.toMatchObject({ code: "fiber_not_found" });
    await expect(ended.arbiter.comeHome("f1", EDGE_HOME)).rejects.toMatchObject({ code: "invalid_argument" });
  });

  it("a claim of the edge runtime and a come-home never interleave: whichever comes first wins", async () => {
    const { store, arbiter } = await atEdge("sleeping");
    // The edge's timer fires: its claim is under way (held in the turn) when the browser asks.
    let finishClaim: () => void = () => {};
    const claiming = arbiter.claimAtEdge("f1", T0 + 30_000, async () => {
      await new Promise<void>((go) => {
        finishClaim = go;
      });
      return store.claimFiber("f1", { owner: "edge-runner", now: T0 + 30_000, leaseMs: 60_000 });
    });
    const asking = arbiter.comeHome("f1", BACK);
    await new Promise((resolve) => setTimeout(resolve, 10));
    finishClaim();
    expect((await claiming).status).toBe("claimed");
    // The claim made the edge the runner: the browser is refused, and asks again later.
    expect(await asking).toEqual({ status: "refused", reason: "running" });
  });

  it("takes the fiber back to the edge if the browser it went home to lets its lease lapse", async () => {
    const { store, arbiter, advance } = await atEdge();
    await arbiter.comeHome("f1", BACK);
    advance(30_000);
    expect(await arbiter.takeOverLapsed()).toEqual(["f1"]);
    expect((await store.getFiber("f1"))?.home).toMatchObject({ home: EDGE_HOME, epoch: 4, formerHome: BACK });
    expect(await arbiter.receive("f1", shipment([emit("f1", 2, 2)], { home: BACK, epoch: 3 }))).toMatchObject(
      {
        status: "fenced",
        epoch: 4,
        appliedPos: 1,
      },
    );
  });
});

describe("arbiter: a shipment cut short by a crash or a store error", () => {
  it("an event whose enqueue committed before a crash, second of two in a shipment, is not duplicated by its sender's send-on after a takeover", async () => {
    const store = new FailingStore();
    const { arbiter, advance } = rig(store);
    await arbiter.receive("f1", shipment([create("f1")]));
    // Two page events at positions 2 and 3: both enqueueEvent transactions commit, then the object
    // dies before the write recording positions 2..3 (and the event marks) lands.
    store.failNextCommit = true;
    const ship = shipment([event("f1", 2, 1), event("f1", 3, 2)]);
    await expect(arbiter.receive("f1", ship)).rejects.toThrow(/simulated/);
    expect((await store.readInbox("f1")).map((e) => e.seq)).toEqual([1, 2]);
    // The browser is gone past its lease; its shipper's retry reaches the arbiter after it lapsed.
    advance(30_000);
    const answer = await arbiter.receive("f1", ship);
    // Both events are counted as held: their senders hear they arrived.
    expect(answer).toMatchObject({ status: "fenced", epoch: 2, home: EDGE_HOME, appliedPos: 3 });
    // Had that answer been lost, the browser sends every unanswered event on to the edge under
    // its id (BrowserContinuity.sendEvent, bufferedEventId): the replica finds each by its id.
    for (const entry of ship.entries) {
      if (entry.type !== "event") continue;
      const { name, payload, at } = entry.event;
      const held = await arbiter.accept({ fiberId: "f1", name, payload, at, eventId: entry.eventId });
      expect(held.seq).toBe(entry.event.seq);
    }
    // Each of the two events must be in the replica's inbox once.
    expect((await store.readInbox("f1")).map((e) => e.payload)).toEqual([{ n: 1 }, { n: 2 }]);
  });

  it("takes over a replica whose creating shipment failed after its create committed, once the lease lapses", async () => {
    const store = new FailingStore();
    const { arbiter, advance } = rig(store);
    // The host arms its alarm at start (recover's finally): the lease index is loaded then.
    expect(await arbiter.nextLapse()).toBeUndefined();
    // The create commits; the write recording the rest of the shipment fails (a store error the
    // shipper's sender sees as a 5xx). The browser's tab closes: nothing is sent again.
    store.failNextCommit = true;
    await expect(arbiter.receive("f1", shipment([create("f1"), emit("f1", 2, 2)]))).rejects.toThrow(
      /simulated/,
    );
    expect((await store.getFiber("f1"))?.home).toMatchObject({ home: HOME, epoch: 1, until: T0 + 30_000 });
    // The host sets its alarm at nextLapse() and the alarm calls takeOverLapsed().
    expect(await arbiter.nextLapse()).toBe(T0 + 30_000);
    advance(30_001);
    expect(await arbiter.takeOverLapsed()).toEqual(["f1"]);
  });

  it("counts a sender's event as applied only if the row at its seq is that event, not an equal one pushed meanwhile", async () => {
    const store = new FailingStore();
    const { arbiter, advance } = rig(store);
    await arbiter.receive("f1", shipment([create("f1")]));
    // The browser's first event: its enqueue commits, the write recording its position fails.
    store.failNextCommit = true;
    await expect(arbiter.receive("f1", shipment([event("f1", 2, 1)]))).rejects.toThrow(/simulated/);
    // A webhook reaches the edge while the browser holds the fiber (pushed to it, edge:1), equal in
    // name, payload and time to the browser's second event.
    const second = event("f1", 3, 2) as Extract<ShippedEntry, { type: "event" }>;
    const { name, payload, at } = second.event;
    await arbiter.accept({ fiberId: "f1", name, payload, at });
    // The browser's lease lapses before its retry: the takeover moves the webhook in, at seq 2.
    advance(30_000);
    const answer = await arbiter.receive("f1", shipment([event("f1", 2, 1), second]));
    expect((await store.readInbox("f1")).map((e) => e.eventId)).toEqual([
      homeEventId(HOME, 1, 1),
      `${EDGE_HOME}:1`,
    ]);
    // Its first event is the replica's; its second is not (it is sent on to the edge).
    expect(answer).toMatchObject({ status: "fenced", home: EDGE_HOME, appliedPos: 2 });
  });

  it("counts nothing for a webhook the edge took after a takeover, equal to a browser event it never got", async () => {
    const store = new FailingStore();
    const { arbiter, advance } = rig(store);
    await arbiter.receive("f1", shipment([create("f1")]));
    // The browser buffers a page's event (position 2, seq 1); the shipment carrying it is lost.
    const mine = event("f1", 2, 1) as Extract<ShippedEntry, { type: "event" }>;
    // Its lease lapses; the edge takes over and accepts a webhook (no id of its own) equal to it.
    advance(30_001);
    expect(await arbiter.takeOverLapsed()).toEqual(["f1"]);
    const { name, payload, at } = mine.event;
    await arbiter.accept({ fiberId: "f1", name, payload, at });
    // The webhook is stored under an id of the edge's, so it is not taken for the browser's event.
    expect((await store.readInbox("f1")).map((e) => e.eventId)).toEqual([expect.stringMatching(/^edge:in:/)]);
    // The browser's retry: its event is not the replica's, so it is sent on to the edge.
    const answer = await arbiter.receive("f1", shipment([mine]));
    expect(answer).toMatchObject({ status: "fenced", home: EDGE_HOME, appliedPos: 1 });
  });
});

/** A `MemoryStore` that counts (and can hold back) its listings. */
class ListCountingStore extends MemoryStore {
  lists = 0;
  slowLists = false;
  #held: Array<() => void> = [];
  override async listFibers(...args: Parameters<MemoryStore["listFibers"]>) {
    this.lists++;
    const listed = await super.listFibers(...args);
    if (this.slowLists) await new Promise<void>((go) => this.#held.push(go));
    return listed;
  }
  release(): void {
    for (const go of this.#held.splice(0)) go();
  }
}

/** A `MemoryStore` whose next commit can be made to fail before it applies. */
class FailingStore extends MemoryStore {
  failNextCommit = false;
  override async commit(groups: WriteGroup[]): Promise<CommitResult> {
    if (this.failNextCommit) {
      this.failNextCommit = false;
      throw new Error("simulated crash before the commit applied");
    }
    return super.commit(groups);
  }
}
