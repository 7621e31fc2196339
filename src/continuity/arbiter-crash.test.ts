/**
 * The arbiter when a shipment is cut short after some of its writes committed (the Durable Object
 * killed, or a store error): what its sender and the alarm see afterwards.
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

function shipment(entries: ShippedEntry[], over: Partial<Shipment> = {}): Shipment {
  return { home: HOME, epoch: 1, from: entries[0]?.pos ?? 1, entries, ...over };
}

/** A `MemoryStore` whose next commit can be made to fail before it applies (a crash). */
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

function rig(store: MemoryStore = new FailingStore()) {
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
