/**
 * Two Service Workers of one origin on one IndexedDB outbox: a new version installs (and opens
 * the outbox) while the old one still runs the fibers. Each loads the outbox once; what the other
 * writes and ships after that must not leave it shipping in a loop, waiting on a position it
 * never held, or releasing a fiber started again under a collected one's id (fake-indexeddb).
 * Also the Rule C timer of a fiber handed back by the edge (`adopt`).
 */

import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { describe, expect, it } from "vitest";
import type { FiberRecord, StreamChunk } from "../core/records";
import { readStreamAndRecord } from "../core/store";
import { testRecord } from "../core/test-records";
import { type ReplicaReadOptions, readReplica } from "../edge/replica-read";
import { IdbStore } from "../store/idb-store";
import { MemoryStore } from "../store/memory-store";
import { Arbiter } from "./arbiter";
import { BrowserContinuity } from "./browser-home";
import { Outbox } from "./outbox";
import { stepEntry } from "./outbox-idb-cases";
import { browserHome, type Shipment, type ShipmentAnswer } from "./protocol";
import { ReplicatingStore } from "./replicating-store";
import { Shipper } from "./shipper";

const HOME = browserHome("d1");
const record = (id: string, createdAt = 1): FiberRecord =>
  testRecord({ id, name: "replicated", createdAt, updatedAt: createdAt, generation: 0 });
const start = (id: string): StreamChunk => ({ fiberId: id, seq: 1, type: "fiber.start", data: null, at: 1 });
const token = (id: string, seq: number): StreamChunk => ({
  fiberId: id,
  seq,
  type: "token",
  data: `t${seq}`,
  at: seq,
  step: 0,
});
const step = stepEntry;

async function worker(indexedDB: IDBFactory, name: string) {
  const store = new IdbStore({ name, indexedDB });
  const outbox = await Outbox.open(store, { onError: () => {} });
  const replicating = new ReplicatingStore(store, { outbox, home: HOME, replicates: () => true });
  return { store, outbox, replicating };
}

async function claim(w: { replicating: ReplicatingStore }, owner: string, now: number): Promise<number> {
  const claimed = await w.replicating.claimFiber("f", { owner, now, leaseMs: 60_000 });
  if (claimed.status !== "claimed") throw new Error(`claim: ${claimed.status}`);
  return claimed.record.generation;
}

const within = <T>(work: Promise<T>, ms: number, late: T) =>
  Promise.race([work, new Promise<T>((r) => setTimeout(() => r(late), ms))]);

/** Whether Rule A lets f's next step start within 200 ms ("released") or holds it ("waits"). */
const ruleA = (outbox: Outbox) =>
  within(
    outbox.shipped("f").then(() => "released"),
    200,
    "waits",
  );

type Worker = Awaited<ReturnType<typeof worker>>;

/** Ships what `w` holds of f to `arbiter` and records the acknowledgement in the store. */
async function shipAll(w: Worker, arbiter: Arbiter): Promise<void> {
  const batch = w.outbox.batch("f");
  const answer = await arbiter.receive("f", { home: HOME, ...(batch as NonNullable<typeof batch>) });
  w.outbox.acknowledge("f", (answer as { appliedPos: number }).appliedPos, Date.now() + 60_000);
  await w.outbox.saved();
}

/** Worker A with f created, its first step started and both shipped (positions 1-2, epoch 1). */
async function startedAndShipped(indexedDB: IDBFactory, arbiter: Arbiter): Promise<Worker> {
  const a = await worker(indexedDB, "db");
  await a.replicating.createFiber(record("f"), [start("f")]);
  const g = await claim(a, "a", 1);
  await a.replicating.commit([{ fiberId: "f", generation: g, journal: [step("f", 0, "started")] }]);
  await shipAll(a, arbiter);
  return a;
}

/** f, fenced from `w`, comes home to it under epoch 3 (the store's head says so). */
async function comeHomeTo(w: Worker): Promise<void> {
  w.outbox.fence("f", 2, "edge", 2);
  await w.outbox.saved();
  await w.outbox.adopt({ fiberId: "f", epoch: 3, acked: 2, shippedSeq: 1, deadline: Date.now() + 60_000 });
}

/**
 * The old worker with f at positions 1-3 (created, a step started, then completed), and a new
 * worker that opened the outbox when it held only 1-2 (the new version installed in between).
 */
async function freshBehindOld(): Promise<{ old: Worker; fresh: Worker }> {
  const indexedDB = new IDBFactory();
  const old = await worker(indexedDB, "db");
  await old.replicating.createFiber(record("f"), [start("f")]);
  const g = await claim(old, "old", 1);
  await old.replicating.commit([{ fiberId: "f", generation: g, journal: [step("f", 0, "started")] }]);
  const fresh = await worker(indexedDB, "db");
  await old.replicating.commit([
    { fiberId: "f", generation: g, journal: [step("f", 0, "completed")], chunks: [token("f", 2)] },
  ]);
  return { old, fresh };
}

describe("two workers on one outbox", () => {
  it("the new worker ships what the old one wrote after it loaded the outbox, and Rule A releases", async () => {
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const { old, fresh } = await freshBehindOld();
    // The old worker ships 1-2 and is terminated with 3 unshipped.
    const batch = old.outbox.batch("f", { entries: 2 });
    expect(await arbiter.receive("f", { home: HOME, ...(batch as NonNullable<typeof batch>) })).toMatchObject(
      {
        status: "ok",
        appliedPos: 2,
      },
    );
    // The new worker takes the fiber over and starts the next step: position 4.
    const g2 = await claim(fresh, "new", 70_000);
    await fresh.replicating.commit([{ fiberId: "f", generation: g2, journal: [step("f", 1, "started")] }]);
    let sends = 0;
    const shipper = new Shipper({
      outbox: fresh.outbox,
      home: HOME,
      send: async (id, shipment) => {
        sends++;
        return arbiter.receive(id, shipment);
      },
    });
    shipper.start();
    const started = await within(
      fresh.outbox.shipped("f").then(() => "released"),
      2_000,
      "still waiting",
    );
    shipper.stop();
    expect(started).toBe("released");
    expect((await arbiter.state("f"))?.appliedPos).toBe(4);
    expect(sends).toBeLessThan(10);
  });

  it("the new worker does not ship in a loop what the old one has shipped past", async () => {
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const { old, fresh } = await freshBehindOld();
    const batch = old.outbox.batch("f");
    expect(await arbiter.receive("f", { home: HOME, ...(batch as NonNullable<typeof batch>) })).toMatchObject(
      {
        appliedPos: 3,
      },
    );
    let sends = 0;
    const shipper = new Shipper({
      outbox: fresh.outbox,
      home: HOME,
      send: async (id, shipment) => {
        sends++;
        await new Promise((r) => setTimeout(r, 5));
        return arbiter.receive(id, shipment);
      },
    });
    shipper.start();
    await new Promise((r) => setTimeout(r, 1_000));
    shipper.stop();
    // Before: one shipment per round trip for as long as the old worker lived (184 in 1 s here).
    expect(sends).toBeLessThan(5);
    expect(fresh.outbox.hasPending("f")).toBe(false);
    expect(fresh.outbox.acked("f")).toBe(3);
  });

  it("a fiber collected by one worker and started again by the other waits for the arbiter there", async () => {
    const indexedDB = new IDBFactory();
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const first = await worker(indexedDB, "db");
    await first.replicating.createFiber(record("f"), [start("f")]);
    const g = await claim(first, "first", 1);
    await first.replicating.commit([
      { fiberId: "f", generation: g, fiber: { status: "completed" }, chunks: [token("f", 2), token("f", 3)] },
    ]);
    await shipAll(first, arbiter);
    const second = await worker(indexedDB, "db"); // f ended, acknowledged up to 2, chunks to 3
    expect(await first.replicating.deleteFibers(["f"])).toEqual(["f"]); // collected there
    await second.replicating.createFiber(record("f", 99), [start("f")]); // the app starts f again
    const g2 = await claim(second, "second", 2);
    await second.replicating.commit([
      { fiberId: "f", generation: g2, journal: [step("f", 0, "started")], chunks: [token("f", 2)] },
    ]);
    // Rule A and B hold for the new fiber: nothing of it is shipped yet.
    expect(await ruleA(second.outbox)).toBe("waits");
    expect(second.outbox.visibleHead("f")).toBe(0);
    expect(second.outbox.batch("f")).toMatchObject({
      from: 1,
      entries: [{ pos: 1, type: "create" }, { pos: 2 }],
    });
  });
});

describe("two workers on one outbox, across a come-home", () => {
  it("a worker that still holds the old epoch takes the store's view when the other adopted the fiber", async () => {
    const indexedDB = new IDBFactory();
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const a = await startedAndShipped(indexedDB, arbiter);
    const b = await worker(indexedDB, "db"); // holds f at epoch 1, acknowledged up to 2
    await comeHomeTo(a);
    // B runs the fiber's next step: its start is epoch 3's position 3, which nobody shipped.
    const g2 = await claim(b, "b", 70_000);
    await b.replicating.commit([{ fiberId: "f", generation: g2, journal: [step("f", 1, "started")] }]);
    expect(await ruleA(b.outbox)).toBe("waits");
    expect(b.outbox.batch("f")).toMatchObject({ epoch: 3, from: 3, entries: [{ pos: 3 }] });
  });

  it("a fenced answer to a shipment sent under the old epoch does not mark the fiber away from its own home", async () => {
    const indexedDB = new IDBFactory();
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const a = await startedAndShipped(indexedDB, arbiter);
    const b = await worker(indexedDB, "db"); // holds f at epoch 1
    // B's heartbeat goes out under epoch 1, and its answer is held.
    const sent: Array<{ epoch: number; answer: (answer: ShipmentAnswer) => void }> = [];
    const shipper = new Shipper({
      outbox: b.outbox,
      home: HOME,
      heartbeatMs: 1_000_000,
      send: (_id, shipment) =>
        new Promise<ShipmentAnswer>((resolve) => sent.push({ epoch: shipment.epoch, answer: resolve })),
    });
    shipper.start();
    // (A heartbeat reads the fiber's outbox from the store first: it leaves a moment later.)
    for (let i = 0; i < 50 && sent.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
    expect(sent.map((s) => s.epoch)).toEqual([1]);
    // The fiber comes home to A under epoch 3, A runs its next step (epoch 3, position 3), and B
    // learns the new epoch from the store.
    await comeHomeTo(a);
    const g2 = await claim(a, "a2", 70_000);
    await a.replicating.commit([{ fiberId: "f", generation: g2, journal: [step("f", 1, "started")] }]);
    await b.outbox.resync("f");
    // The arbiter answers the epoch-1 heartbeat as it answers any stale epoch.
    sent[0]?.answer({ status: "fenced", epoch: 3, home: HOME, appliedPos: 0 });
    await new Promise((r) => setTimeout(r, 20));
    await b.outbox.saved();
    shipper.stop();
    expect(b.outbox.where("f")).toMatchObject({ status: "home" });
    const c = await worker(indexedDB, "db"); // what a restart finds
    expect(c.outbox.where("f")).toMatchObject({ status: "home" });
    expect(c.outbox.batch("f")).toMatchObject({ epoch: 3, entries: [{ pos: 3 }] });
    expect(
      await a.replicating.commit([{ fiberId: "f", generation: g2, journal: [step("f", 1, "completed")] }]),
    ).toEqual({ fenced: [] });
  });

  it("readers of the worker that learns another's acknowledgement are told (Rule B)", async () => {
    const indexedDB = new IDBFactory();
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const a = await worker(indexedDB, "db");
    await a.replicating.createFiber(record("f"), [start("f")]);
    const g = await claim(a, "a", 1);
    const b = await worker(indexedDB, "db"); // holds position 1
    await a.replicating.commit([{ fiberId: "f", generation: g, chunks: [token("f", 2), token("f", 3)] }]);
    await shipAll(a, arbiter);
    const told: string[] = [];
    b.outbox.onShipped((id) => told.push(id));
    await b.outbox.resync("f");
    expect(b.outbox.visibleHead("f")).toBe(3);
    expect(told).toContain("f");
  });
});

/**
 * The new worker opened the outbox before the old one created f (the new version installed
 * first); the old one then created f and started its first step (positions 1-2, unshipped) and
 * stopped.
 */
async function createdAfterFreshOpened(): Promise<{ old: Worker; fresh: Worker }> {
  const indexedDB = new IDBFactory();
  const old = await worker(indexedDB, "db");
  const fresh = await worker(indexedDB, "db");
  await old.replicating.createFiber(record("f"), [start("f")]);
  const g = await claim(old, "old", 1);
  await old.replicating.commit([{ fiberId: "f", generation: g, journal: [step("f", 0, "started")] }]);
  return { old, fresh };
}

describe("a fiber the old worker created after the new one opened the outbox", () => {
  it("is replicated by the new worker that runs it: its commits go into the outbox and Rule A waits", async () => {
    const { fresh } = await createdAfterFreshOpened();
    const g = await claim(fresh, "fresh", 70_000);
    expect(fresh.outbox.replicated("f")).toBe(true);
    await fresh.replicating.commit([{ fiberId: "f", generation: g, journal: [step("f", 1, "started")] }]);
    // Before: the new worker ran f as unreplicated: nothing in its outbox, and a step started at once.
    expect(fresh.outbox.batch("f")?.entries.map((e) => e.pos)).toEqual([1, 2, 3]);
    expect(await ruleA(fresh.outbox)).toBe("waits");
    await shipAll(fresh, new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 }));
    expect(await ruleA(fresh.outbox)).toBe("released");
  });

  it("puts an event sent through the new worker into f's outbox", async () => {
    const { fresh } = await createdAfterFreshOpened();
    await fresh.replicating.enqueueEvent({ fiberId: "f", name: "go", payload: 1, at: 3 });
    // Before: stored as an unreplicated fiber's event, so the edge never received it.
    expect(fresh.outbox.batch("f")?.entries.map((e) => e.type)).toEqual(["create", "commit", "event"]);
  });

  it("shows a reader on the new worker none of f's chunks the replica does not hold (Rule B)", async () => {
    // The reader asked Rule B's visible head before the outbox knew f (unbounded then): the read
    // that makes the outbox learn f leaves out what the arbiter does not hold. Before: every chunk
    // in the store was shown. Once the outbox knows f, the reader's own bound applies.
    const { fresh } = await createdAfterFreshOpened();
    expect((await fresh.replicating.readStreamAndRecord("f", 0)).chunks).toEqual([]);
    expect(fresh.outbox.visibleHead("f")).toBe(0);
    await shipAll(fresh, new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 }));
    expect(fresh.outbox.visibleHead("f")).toBe(1);
    // The same through a store read in parts.
    const other = await createdAfterFreshOpened();
    expect(await other.fresh.replicating.readStream("f", 0)).toEqual([]);
    expect(other.fresh.outbox.visibleHead("f")).toBe(0);
  });

  it("is shipped by the new worker once it activates, though no runner there claims it", async () => {
    const { fresh } = await createdAfterFreshOpened();
    expect(fresh.outbox.fiberIds).toEqual([]);
    await fresh.outbox.learnAll();
    // Before: nobody shipped f's backlog; once the lease lapsed the edge took f over without it.
    expect(fresh.outbox.hasPending("f")).toBe(true);
    expect(fresh.outbox.batch("f")?.entries.map((e) => e.pos)).toEqual([1, 2]);
  });
});

/** Records the fiber id of every later `loadOutbox` of `store` (`undefined`: every fiber's). */
function countLoads(store: IdbStore): Array<string | undefined> {
  const loads: Array<string | undefined> = [];
  const load = store.loadOutbox.bind(store);
  store.loadOutbox = (id?: string) => {
    loads.push(id);
    return load(id);
  };
  return loads;
}

/** Another worker writes f's local record as the edge's copy under epoch 2, as its mirror does. */
async function edgeCopyWritten(indexedDB: IDBFactory): Promise<void> {
  const other = await worker(indexedDB, "db");
  const g = await claim(other, "other", 70_000);
  const home = { home: "edge", epoch: 2, until: 0, appliedPos: 2, formerHome: HOME, eventMarks: {} };
  await other.store.commit([{ fiberId: "f", generation: g, fiber: { home } }]);
}

describe("a worker whose view of f is behind the store's", () => {
  it("ships, at its next heartbeat, what another worker wrote past it and never shipped", async () => {
    const indexedDB = new IDBFactory();
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const active = await startedAndShipped(indexedDB, arbiter);
    // A new version loads the outbox (f at 1-2, acknowledged), takes f over, ends it at position
    // 3 and dies installing before it ships.
    const installing = await worker(indexedDB, "db");
    const g = await claim(installing, "installing", 70_000);
    await installing.replicating.commit([{ fiberId: "f", generation: g, fiber: { status: "completed" } }]);
    expect(active.outbox.hasPending("f")).toBe(false);
    const loads = countLoads(active.store);
    const shipper = new Shipper({
      outbox: active.outbox,
      home: HOME,
      heartbeatMs: 20,
      send: (id, shipment) => arbiter.receive(id, shipment),
    });
    shipper.start();
    await new Promise((r) => setTimeout(r, 300));
    shipper.stop();
    // Before: the active worker's heartbeats shipped nothing, so f's end never reached the edge.
    expect(active.outbox.acked("f")).toBe(3);
    expect(active.outbox.settled("f")).toBe(true);
    // Each heartbeat reads that fiber's outbox only, not every fiber's.
    expect(loads.length).toBeGreaterThan(0);
    expect(new Set(loads)).toEqual(new Set(["f"]));
  });

  it("claims f that came home here even when a stale copy names the edge's older epoch", async () => {
    const indexedDB = new IDBFactory();
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const a = await startedAndShipped(indexedDB, arbiter);
    await comeHomeTo(a); // epoch 3, this browser's
    // Another worker's mirror writes a replica answer it read before the grant (epoch 2, the edge).
    await edgeCopyWritten(indexedDB);
    const claimed = await a.replicating.claimFiber("f", { owner: "a", now: 140_000, leaseMs: 60_000 });
    // Before the epoch check: held, and the fiber fenced away from its own home under epoch 2.
    expect(claimed.status).toBe("claimed");
    expect(a.outbox.where("f")).toMatchObject({ status: "home" });
    expect(a.outbox.epoch("f")).toBe(3);
  });

  it("does not claim f over the copy a mirror rebuilt after another worker was fenced", async () => {
    const indexedDB = new IDBFactory();
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const stale = await startedAndShipped(indexedDB, arbiter);
    // The other worker was fenced and its mirror made the local record the edge's copy.
    await edgeCopyWritten(indexedDB);
    const claimed = await stale.replicating.claimFiber("f", {
      owner: "stale",
      now: 140_000,
      leaseMs: 60_000,
    });
    // Before: claimed, and the run wrote its chunks into the mirror's copy of the edge's fiber.
    expect(claimed.status).toBe("held");
    expect(stale.outbox.where("f")).toMatchObject({ status: "away", home: "edge", epoch: 2 });
  });
});

/**
 * Worker A ran f to its end (positions 1-4, acknowledged) and worker B loaded that; then A
 * collected f and started a new f under the id (created at 1, createdAt 99, never shipped), and B
 * runs the new one: its step start lands at position 2, under what B took as acknowledged.
 */
async function reusedInOther(): Promise<{ a: Worker; b: Worker }> {
  const indexedDB = new IDBFactory();
  const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
  const a = await startedAndShipped(indexedDB, arbiter);
  const g = await claim(a, "a", 2);
  await a.replicating.commit([{ fiberId: "f", generation: g, journal: [step("f", 0, "completed")] }]);
  await a.replicating.commit([{ fiberId: "f", generation: g, fiber: { status: "completed" } }]);
  await shipAll(a, arbiter);
  const b = await worker(indexedDB, "db");
  expect(b.outbox.acked("f")).toBe(4);
  expect(await a.replicating.deleteFibers(["f"])).toEqual(["f"]);
  await a.replicating.createFiber(record("f", 99), [start("f")]);
  const g2 = await claim(b, "b", 200_000);
  await b.replicating.commit([{ fiberId: "f", generation: g2, journal: [step("f", 0, "started")] }]);
  return { a, b };
}

describe("an id the other worker reused after collecting its fiber", () => {
  it("holds the new fiber's steps for Rule A in the worker that still held the old one", async () => {
    const { b } = await reusedInOther();
    // Before: B's outbox kept the old fiber's numbering, and the step was released at once.
    expect(await ruleA(b.outbox)).toBe("waits");
    expect(b.outbox.batch("f")?.entries.map((e) => e.pos)).toEqual([1, 2]);
  });
});

describe("a fiber handed back to the browser (adopt)", () => {
  it("lapses at the granted deadline even when its timer fires before the clock reaches it", async () => {
    let behind = 0;
    const clock = () => Date.now() - behind;
    const outbox = new Outbox({ clock });
    const lapsed: string[] = [];
    outbox.onLapsed((id) => lapsed.push(id));
    await outbox.adopt({ fiberId: "f", epoch: 3, acked: 7, shippedSeq: 5, deadline: clock() + 30 });
    // The timer fires by the timers' time; the clock the deadline is read on now runs 20 ms behind.
    behind = 20;
    await new Promise((r) => setTimeout(r, 200));
    // Before: the timer found the deadline not reached yet and never looked again.
    expect(lapsed).toEqual(["f"]);
  });

  it("lapses at an answered deadline even when the shipper's timer fires before the clock reaches it", async () => {
    let behind = 0;
    const clock = () => Date.now() - behind;
    const outbox = new Outbox({ clock });
    const shipper = new Shipper({
      outbox,
      home: HOME,
      clock,
      heartbeatMs: 1_000_000,
      // A lease whose deadline here is 100 ms after the shipment (less the safety margin).
      send: async () => ({ status: "ok", appliedPos: 1, leaseMs: 1_100 }),
    });
    const lapsed: string[] = [];
    outbox.onLapsed((id) => lapsed.push(id));
    outbox.append("f", { type: "create", record: record("f"), chunks: [start("f")] });
    shipper.kick("f");
    for (let i = 0; i < 50 && outbox.acked("f") === 0; i++) await new Promise((r) => setTimeout(r, 2));
    expect(lapsed).toEqual([]);
    // The shipper's timer fires by the timers' time; the clock now runs 40 ms behind.
    behind = 40;
    await new Promise((r) => setTimeout(r, 300));
    shipper.stop();
    // Before: the timer found the deadline not reached yet and never looked again.
    expect(lapsed).toEqual(["f"]);
  });

  it("never tells an event's sender its position of the old epoch was acknowledged", async () => {
    const outbox = new Outbox();
    const deadline = Date.now() + 60_000;
    outbox.append("f", { type: "create", record: record("f"), chunks: [start("f")] });
    const event = { fiberId: "f", seq: 1, name: "go", payload: 1, at: 2 };
    const pos = outbox.append("f", { type: "event", event, eventId: `${HOME}:1` }); // epoch 1, position 2
    // The edge took f over before position 2 reached it; f comes home under epoch 3 at position 1,
    // and the copy brought up to the replica has no such event.
    outbox.fence("f", 2, "edge", 1);
    await outbox.adopt({ fiberId: "f", epoch: 3, acked: 1, shippedSeq: 1, deadline });
    // The sender asks only now (its sendEvent took that long); position 2 of epoch 3 is another entry.
    const waited = outbox.acknowledged("f", pos, 1).then(
      () => "acknowledged",
      (error: { code?: string }) => error.code,
    );
    outbox.append("f", {
      type: "commit",
      group: { fiberId: "f", generation: 2, fiber: { status: "running" } },
    });
    outbox.acknowledge("f", 2, deadline);
    // Before: "acknowledged", and the page was told its event was accepted.
    expect(await waited).toBe("fenced");
  });

  it("lapses at the granted deadline when no shipment is answered, stopping a step in progress", async () => {
    const outbox = new Outbox();
    const shipper = new Shipper({
      outbox,
      home: HOME,
      heartbeatMs: 50,
      send: () => Promise.reject(new Error("offline")),
    });
    shipper.start();
    const lapsed: string[] = [];
    outbox.onLapsed((id) => lapsed.push(id));
    await outbox.adopt({ fiberId: "f", epoch: 3, acked: 7, shippedSeq: 5, deadline: Date.now() + 100 });
    shipper.kick("f");
    expect(outbox.leased("f", Date.now())).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    shipper.stop();
    expect(lapsed).toEqual(["f"]);
  });
});

/**
 * The same through the host's wiring (`BrowserContinuity`: its guard store, `settle`), with the
 * edge link answered by an arbiter in memory: the new version opened the outbox before the old
 * one created f.
 */
describe("a fiber the old worker created, seen by the new one's BrowserContinuity", () => {
  async function setup(ship: boolean) {
    const indexedDB = new IDBFactory();
    const edge = new MemoryStore();
    const arbiter = new Arbiter({ store: edge, leaseMs: 60_000 });
    const fresh = new BrowserContinuity({
      local: new IdbStore({ name: "db", indexedDB }),
      edge: { baseUrl: "http://edge.test", fibers: ["replicated"], deviceId: "d1", leaseMs: 60_000 },
      onError: () => {},
    });
    const link = fresh.link as unknown as Record<string, unknown>;
    link.ship = (id: string, shipment: Shipment) => arbiter.receive(id, shipment);
    link.readReplica = (id: string, after: number, options?: ReplicaReadOptions) =>
      readReplica(edge, id, after, options?.cursor);
    await fresh.opened;
    const old = await worker(indexedDB, "db");
    await old.replicating.createFiber(record("f"), [start("f")]);
    const g = await claim(old, "old", 1);
    await old.replicating.commit([{ fiberId: "f", generation: g, journal: [step("f", 0, "started")] }]);
    if (ship) await shipAll(old, arbiter);
    // The step completes there (position 3, not shipped), and the old worker stops.
    await old.replicating.commit([{ fiberId: "f", generation: g, journal: [step("f", 0, "completed")] }]);
    return { fresh, old };
  }

  it("settles f as home (not away from its own home) and claims it with its journal kept", async () => {
    const { fresh, old } = await setup(true);
    // Before: the outbox did not hold f, so the edge was asked; its replica names this browser's
    // home, which was taken for another one: f was away for good and its journal overwritten.
    expect(await fresh.settle("f")).toBe("home");
    const claimed = await fresh.store.claimFiber("f", { owner: "fresh", now: 70_000, leaseMs: 60_000 });
    expect(claimed.status).toBe("claimed");
    expect((await old.store.readJournal("f")).map((e) => e.status)).toEqual(["completed"]);
    fresh.stop();
  });

  it("shows a reader through its store none of f's chunks the edge does not hold (Rule B)", async () => {
    const { fresh } = await setup(false);
    // Before: the guard store read the local store directly, and every chunk was shown.
    expect((await readStreamAndRecord(fresh.store, "f", 0)).chunks).toEqual([]);
    fresh.stop();
  });
});

describe("a fiber that came home, and an id reused", () => {
  it("holds the new fiber for Rule A in a worker whose view of the old one came from a come-home", async () => {
    const indexedDB = new IDBFactory();
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 60_000 });
    const a = await startedAndShipped(indexedDB, arbiter); // 1-2 acked, epoch 1
    await comeHomeTo(a); // epoch 3 in memory via adopt (no createdAt), acked 2
    const g = await claim(a, "a", 2);
    await a.replicating.commit([{ fiberId: "f", generation: g, fiber: { status: "completed" } }]); // pos 3
    a.outbox.acknowledge("f", 3, Date.now() + 60_000);
    await a.outbox.saved();
    const b = await worker(indexedDB, "db");
    expect(await b.replicating.deleteFibers(["f"])).toEqual(["f"]); // collected in B
    await b.replicating.createFiber(record("f", 99), [start("f")]); // new f, epoch 1, position 1
    const g2 = await claim(a, "a2", 200_000);
    await a.replicating.commit([{ fiberId: "f", generation: g2, journal: [step("f", 0, "started")] }]);
    await a.outbox.resync("f");
    // Before: the come-home view had no createdAt, and its old numbering released the step.
    expect(await ruleA(a.outbox)).toBe("waits");
  });

  it("tells an event's sender it was acknowledged when the arbiter held it before the fiber left", async () => {
    const outbox = new Outbox();
    const deadline = Date.now() + 60_000;
    outbox.append("f", { type: "create", record: record("f"), chunks: [start("f")] });
    const event = { fiberId: "f", seq: 1, name: "go", payload: 1, at: 2 };
    const pos = outbox.append("f", { type: "event", event, eventId: `${HOME}:1` }); // epoch 1, pos 2
    outbox.acknowledge("f", 2, deadline); // the arbiter holds the event
    outbox.fence("f", 2, "edge", 2); // the edge takes over holding it (and consumes it)
    await outbox.adopt({ fiberId: "f", epoch: 3, acked: 2, shippedSeq: 1, deadline });
    const answer = await outbox.acknowledged("f", pos, 1).then(
      () => "acknowledged",
      (error: { code?: string }) => error.code,
    );
    // Before: refused (fenced) for the epoch alone, and a page that sent it again doubled it.
    expect(answer).toBe("acknowledged");
  });

  it("reads the store's outbox once for a fiber of a replicated kind it does not hold, not at every read", async () => {
    const indexedDB = new IDBFactory();
    const local = new IdbStore({ name: "db", indexedDB });
    const fresh = new BrowserContinuity({
      local,
      edge: { baseUrl: "http://edge.test", fibers: ["replicated"], deviceId: "d1", leaseMs: 60_000 },
      onError: () => {},
    });
    await fresh.opened;
    // A fiber of the kind made before the kind was replicated (no outbox head).
    await local.createFiber(record("f"), [start("f")]);
    const loads = countLoads(local);
    for (let i = 0; i < 10; i++) await readStreamAndRecord(fresh.store, "f", 0);
    fresh.stop();
    // Before: one read of its outbox at every read of its stream.
    expect(loads).toEqual(["f"]);
  });
  it("does not answer a new fiber's sender from what the old fiber under the id left behind", async () => {
    const { b } = await reusedInOther();
    await b.outbox.resync("f");
    expect(b.outbox.acked("f")).toBe(0);
    // New f: the arbiter held only position 1 of epoch 1 when the edge took it; it comes home at 3.
    b.outbox.fence("f", 2, "edge", 1);
    await b.outbox.saved();
    await b.outbox.adopt({
      fiberId: "f",
      epoch: 3,
      acked: 1,
      shippedSeq: 1,
      createdAt: 99,
      deadline: Date.now() + 60_000,
    });
    const answer = await b.outbox.acknowledged("f", 2, 1).then(
      () => "acknowledged",
      (error: { code?: string }) => error.code,
    );
    // Before: the old fiber's acknowledged position 4 of epoch 1 answered for the new one's 2.
    expect(answer).toBe("fenced");
  });

  it("reads a fiber's outbox again after a failed read, rather than taking it for unreplicated", async () => {
    const { fresh } = await createdAfterFreshOpened();
    const load = fresh.store.loadOutbox.bind(fresh.store);
    let fail = true;
    fresh.store.loadOutbox = (id?: string) => (fail ? Promise.reject(new Error("disk busy")) : load(id));
    // While the store cannot say, nothing is shown, no claim is made, and no event is stored.
    expect((await readStreamAndRecord(fresh.replicating, "f", 0)).chunks).toEqual([]);
    const claimed = await fresh.replicating.claimFiber("f", { owner: "fresh", now: 70_000, leaseMs: 60_000 });
    expect(claimed.status).toBe("held");
    const sent = await fresh.replicating
      .enqueueEvent({ fiberId: "f", name: "go", payload: 1, at: 3 })
      .catch((error: { code?: string }) => error.code);
    expect(sent).toBe("store_error");
    fail = false;
    // Before: the failed read was remembered as "unreplicated", and every later read showed f whole.
    expect((await readStreamAndRecord(fresh.replicating, "f", 0)).chunks).toEqual([]);
    expect(fresh.outbox.replicated("f")).toBe(true);
  });
});
