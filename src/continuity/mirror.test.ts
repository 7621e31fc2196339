/**
 * `Mirror` on a `MemoryStore` with a scripted replica: a copy that only lags gets the new chunks
 * appended with the store's ordinary `commit`; a copy holding chunks the replica never got (a
 * browser killed before shipping them) is rebuilt to the replica; a replica answer that would
 * leave a hole is refused by the store's `stream_gap` rule and changes nothing; a fiber only the
 * edge has is created; `follow` stops at the fiber's end. Against a replica read as the edge
 * reads it (`readReplicaWhenChanged` on a watched `MemoryStore`): after the first whole read only
 * deltas come, with the new journal entries and chunks, a consumed event and a stash change, and
 * the copy equals the replica after each; `follow` holds its reads and catches a change at once.
 */

import { describe, expect, it } from "vitest";
import type { FiberRecord, InboxEvent, JournalEntry, StreamChunk } from "../core/records";
import type { Store } from "../core/store";
import { testRecord } from "../core/test-records";
import {
  type ReplicaAnswer,
  type ReplicaReadOptions,
  type ReplicaSnapshot,
  readReplicaWhenChanged,
} from "../edge/replica-read";
import { WatchedStore } from "../edge/watched-store";
import { MemoryStore } from "../store/memory-store";
import { Mirror, type ReplicaSource } from "./mirror";

const ID = "f";

function record(patch: Partial<FiberRecord> = {}): FiberRecord {
  return testRecord({ id: ID, streamHead: 0, ...patch });
}

function chunk(seq: number, type = "tick", data: unknown = { seq }): StreamChunk {
  return { fiberId: ID, seq, type, data, at: 1000 + seq };
}

/** A replica the test sets; `readReplica` answers from it as the edge route does. */
class ScriptedReplica implements ReplicaSource {
  current: { record: FiberRecord; chunks: StreamChunk[]; inbox?: InboxEvent[] } | undefined;
  reads: number[] = [];
  async readReplica(_id: string, after: number): Promise<ReplicaSnapshot | undefined> {
    this.reads.push(after);
    if (this.current === undefined) return undefined;
    return {
      record: this.current.record,
      journal: [],
      snapshot: undefined,
      inbox: this.current.inbox ?? [],
      chunks: this.current.chunks.filter((c) => c.seq > after),
    };
  }
}

const edgeHome = { home: "edge", epoch: 2, until: 0, appliedPos: 3, eventMarks: {} };

describe("Mirror", () => {
  it("appends what a lagging copy lacks and takes the replica's record fields", async () => {
    const store = new MemoryStore();
    await store.createFiber(record({ streamHead: 2 }), [chunk(1, "fiber.start"), chunk(2)]);
    const replica = new ScriptedReplica();
    replica.current = {
      record: record({ streamHead: 4, status: "sleeping", wakeAt: 99, updatedAt: 5, home: edgeHome }),
      chunks: [chunk(1, "fiber.start"), chunk(2), chunk(3, "fiber.recovered"), chunk(4)],
    };
    const mirror = new Mirror({ store, source: replica });
    expect(await mirror.sync(ID)).toMatchObject({ status: "mirrored", rebuilt: false, appended: 2 });
    expect((await store.readStream(ID, 0)).map((c) => c.type)).toEqual([
      "fiber.start",
      "tick",
      "fiber.recovered",
      "tick",
    ]);
    expect(await store.getFiber(ID)).toMatchObject({
      streamHead: 4,
      status: "sleeping",
      wakeAt: 99,
      home: edgeHome,
    });

    // Later reads ask only for what is past the copy's head.
    replica.current.chunks.push(chunk(5, "fiber.end"));
    replica.current.record = record({
      streamHead: 5,
      status: "completed",
      result: 1,
      updatedAt: 6,
      home: edgeHome,
    });
    expect(await mirror.sync(ID)).toMatchObject({ appended: 1 });
    expect(replica.reads).toEqual([0, 4]);
    const ended = await store.getFiber(ID);
    expect(ended).toMatchObject({ status: "completed", result: 1, streamHead: 5 });
    expect(ended?.wakeAt).toBeUndefined();
  });

  it("rebuilds a copy that holds chunks the replica never got", async () => {
    const store = new MemoryStore();
    await store.createFiber(record({ streamHead: 3 }), [
      chunk(1, "fiber.start"),
      chunk(2),
      chunk(3, "tick", { unshipped: true }),
    ]);
    const replica = new ScriptedReplica();
    replica.current = {
      record: record({ streamHead: 4, home: edgeHome, updatedAt: 9 }),
      chunks: [chunk(1, "fiber.start"), chunk(2), chunk(3, "fiber.recovered"), chunk(4)],
    };
    const mirror = new Mirror({ store, source: replica });
    expect(await mirror.sync(ID)).toMatchObject({ status: "mirrored", rebuilt: true });
    const local = await store.readStream(ID, 0);
    expect(local.map((c) => [c.seq, c.type, c.data])).toEqual(
      replica.current.chunks.map((c) => [c.seq, c.type, c.data]),
    );
    expect(await store.getFiber(ID)).toMatchObject({ streamHead: 4, home: edgeHome });
  });

  it("does not say a copy is synced while it is being rebuilt (pages would see its unshipped chunks)", async () => {
    // The host shows an away fiber's local copy whole once `synced` (Rule B): said while the
    // old copy, with chunks the replica never got, is still there, a reader polling then shows
    // them (the continuity torture run saw a page show a browser's unshipped model reply).
    let openDelete: () => void = () => {};
    const deleting = new Promise<void>((resolve) => {
      openDelete = resolve;
    });
    let deleteAsked: () => void = () => {};
    const asked = new Promise<void>((resolve) => {
      deleteAsked = resolve;
    });
    class SlowDelete extends MemoryStore {
      override async deleteFibers(ids: readonly string[]): Promise<string[]> {
        deleteAsked();
        await deleting;
        return super.deleteFibers(ids);
      }
    }
    const store = new SlowDelete();
    await store.createFiber(record({ streamHead: 3 }), [
      chunk(1, "fiber.start"),
      chunk(2),
      chunk(3, "tick", { unshipped: true }),
    ]);
    const replica = new ScriptedReplica();
    replica.current = {
      record: record({ streamHead: 4, home: edgeHome, updatedAt: 9 }),
      chunks: [chunk(1, "fiber.start"), chunk(2), chunk(3, "fiber.recovered"), chunk(4)],
    };
    const mirror = new Mirror({ store, source: replica });
    const synced = mirror.sync(ID);
    await asked;
    expect(mirror.synced(ID)).toBe(false);
    openDelete();
    expect(await synced).toMatchObject({ status: "mirrored", rebuilt: true });
    expect(mirror.synced(ID)).toBe(true);
  });

  it("writes nothing when the replica's answer would leave a hole (stream_gap)", async () => {
    const store = new MemoryStore();
    await store.createFiber(record({ streamHead: 1 }), [chunk(1, "fiber.start")]);
    const replica = new ScriptedReplica();
    replica.current = {
      record: record({ streamHead: 1, home: edgeHome }),
      chunks: [chunk(1, "fiber.start")],
    };
    const mirror = new Mirror({ store, source: replica });
    await mirror.sync(ID);
    // An answer that skips seq 2 (never what the edge sends; the store's rule holds anyway).
    replica.current = { record: record({ streamHead: 3, updatedAt: 3, home: edgeHome }), chunks: [chunk(3)] };
    await expect(mirror.sync(ID)).rejects.toMatchObject({ code: "stream_gap" });
    expect((await store.readStream(ID, 0)).map((c) => c.seq)).toEqual([1]);
    expect((await store.getFiber(ID))?.streamHead).toBe(1);
  });

  it("creates a fiber only the edge has, reports one nobody has, and stops following at the end", async () => {
    const store = new MemoryStore();
    const replica = new ScriptedReplica();
    const mirror = new Mirror({ store, source: replica, pollMs: 10 });
    expect(await mirror.sync(ID)).toEqual({ status: "missing" });
    replica.current = {
      record: record({ streamHead: 2, home: edgeHome }),
      chunks: [chunk(1, "fiber.start"), chunk(2)],
    };
    expect(await mirror.sync(ID)).toMatchObject({ status: "mirrored", rebuilt: true, appended: 2 });
    mirror.follow(ID);
    expect(mirror.following).toEqual([ID]);
    replica.current = {
      record: record({ streamHead: 3, status: "completed", updatedAt: 2, home: edgeHome }),
      chunks: [chunk(1, "fiber.start"), chunk(2), chunk(3, "fiber.end")],
    };
    await expect.poll(() => mirror.following, { timeout: 2_000 }).toEqual([]);
    expect((await store.readStream(ID, 0)).map((c) => c.type)).toEqual(["fiber.start", "tick", "fiber.end"]);
    mirror.stop();
  });

  describe("handBack", () => {
    const event = (seq: number, consumedBy?: number): InboxEvent => ({
      fiberId: ID,
      seq,
      name: "go",
      payload: { seq },
      at: 2000 + seq,
      ...(consumedBy === undefined ? {} : { consumedBy }),
      ...(seq > 1 ? { eventId: `edge:${seq}` } : {}),
    });
    const home = { home: "browser:b", epoch: 3, until: 0, appliedPos: 3, eventMarks: {} };

    it("brings the copy and its inbox up to the replica, then stops mirroring the fiber", async () => {
      const store = new MemoryStore();
      await store.createFiber(record({ streamHead: 2 }), [chunk(1, "fiber.start"), chunk(2)]);
      // The browser had event 1 (shipped); the edge took events 2 and 3 and consumed them.
      await store.enqueueEvent({ fiberId: ID, name: "go", payload: { seq: 1 }, at: 2001 });
      const replica = new ScriptedReplica();
      replica.current = {
        record: record({ streamHead: 3, status: "waiting", waitingFor: ["go"], updatedAt: 5, home }),
        chunks: [chunk(1, "fiber.start"), chunk(2), chunk(3)],
        inbox: [event(1, 0), event(2, 1), event(3, 2)],
      };
      const mirror = new Mirror({ store, source: replica });
      const adopted: FiberRecord[] = [];
      await mirror.handBack(ID, async (r) => {
        adopted.push(r);
      });
      expect(adopted[0]).toMatchObject({ status: "waiting", streamHead: 3, home });
      expect(await store.readInbox(ID)).toEqual([event(1, 0), event(2, 1), event(3, 2)]);
      // The next event this home takes gets the seq the replica expects next.
      expect((await store.enqueueEvent({ fiberId: ID, name: "go", payload: 4, at: 3000 })).seq).toBe(4);
      // Mirrored no more: a later read writes nothing, even if the replica changed.
      replica.current.chunks.push(chunk(4));
      replica.current.record = { ...replica.current.record, streamHead: 4 };
      expect(await mirror.sync(ID)).toEqual({ status: "home" });
      expect((await store.readStream(ID, 0)).map((c) => c.seq)).toEqual([1, 2, 3]);
      // Until it moves away again.
      mirror.track(ID);
      expect(await mirror.sync(ID)).toMatchObject({ status: "mirrored", appended: 1 });
    });

    it("rebuilds a copy whose inbox holds an event the replica never got", async () => {
      const store = new MemoryStore();
      await store.createFiber(record({ streamHead: 1 }), [chunk(1, "fiber.start")]);
      // Buffered here and never shipped (the fence dropped it): the replica's seq 1 is another.
      await store.enqueueEvent({ fiberId: ID, name: "go", payload: "lost", at: 1 });
      const replica = new ScriptedReplica();
      replica.current = {
        record: record({ streamHead: 2, status: "waiting", updatedAt: 5, home }),
        chunks: [chunk(1, "fiber.start"), chunk(2)],
        inbox: [event(1, 0)],
      };
      const mirror = new Mirror({ store, source: replica });
      await mirror.handBack(ID, async () => {});
      expect(await store.readInbox(ID)).toEqual([event(1, 0)]);
      expect((await store.readStream(ID, 0)).map((c) => c.seq)).toEqual([1, 2]);
    });

    it("does not stop mirroring when the adoption fails: the fiber is asked for again", async () => {
      const store = new MemoryStore();
      const replica = new ScriptedReplica();
      replica.current = {
        record: record({ streamHead: 1, status: "sleeping", wakeAt: 9, updatedAt: 5, home }),
        chunks: [chunk(1, "fiber.start")],
      };
      const mirror = new Mirror({ store, source: replica });
      await expect(
        mirror.handBack(ID, async () => {
          throw new Error("the outbox could not record it");
        }),
      ).rejects.toThrow("could not record");
      replica.current.chunks.push(chunk(2));
      replica.current.record = { ...replica.current.record, streamHead: 2, updatedAt: 6 };
      expect(await mirror.sync(ID)).toMatchObject({ status: "mirrored", appended: 1 });
    });
  });

  describe("following a replica incrementally", () => {
    function entry(pos: number, status: JournalEntry["status"] = "completed"): JournalEntry {
      return {
        fiberId: ID,
        pos,
        kind: "step",
        key: `s#${pos}`,
        status,
        attempt: 1,
        startedAt: 100 + pos,
        ...(status === "started" ? {} : { endedAt: 101 + pos, result: { pos } }),
      };
    }

    /** The edge's replica store, read as the edge route reads it; every request and answer kept. */
    class EdgeReplica implements ReplicaSource {
      readonly store = new WatchedStore(new MemoryStore());
      readonly requests: Array<{ after: number; cursor?: string; waitMs?: number }> = [];
      readonly answers: ReplicaAnswer[] = [];
      generation = 0;

      async create(): Promise<void> {
        const created = await this.store.createFiber(record({ streamHead: 1, home: edgeHome }), [
          chunk(1, "fiber.start"),
        ]);
        this.generation = created.record.generation;
      }

      async commit(group: Omit<Parameters<Store["commit"]>[0][number], "fiberId" | "generation">) {
        expect(await this.store.commit([{ fiberId: ID, generation: this.generation, ...group }])).toEqual({
          fenced: [],
        });
      }

      async readReplica(_id: string, after: number, options: ReplicaReadOptions = {}) {
        const { signal: _signal, ...asked } = options;
        this.requests.push({ after, ...asked });
        const answer = await readReplicaWhenChanged(this.store, this.store, ID, after, options);
        if (answer) this.answers.push(answer);
        return answer;
      }

      get last(): ReplicaAnswer {
        return this.answers.at(-1) as ReplicaAnswer;
      }
    }

    /** The local copy and the replica hold the same journal, snapshot, inbox and stream. */
    async function expectSameCopy(local: Store, edge: Store): Promise<void> {
      const read = (s: Store) =>
        Promise.all([s.readJournal(ID), s.readSnapshot(ID), s.readInbox(ID), s.readStream(ID, 0)]);
      expect(await read(local)).toEqual(await read(edge));
    }

    it("gets only the new journal entries and chunks after the first read", async () => {
      const edge = new EdgeReplica();
      await edge.create();
      await edge.commit({ journal: [entry(0), entry(1, "started")], chunks: [chunk(2)] });
      const store = new MemoryStore();
      const mirror = new Mirror({ store, source: edge });
      expect(await mirror.sync(ID)).toMatchObject({ status: "mirrored", rebuilt: true, appended: 2 });
      expect(edge.last.type).toBe("full");
      expect(edge.requests[0]).toEqual({ after: 0 });

      // Step 1 completes, step 2 starts, two chunks: the answer carries the journal from the
      // first entry that was not settled, and only the chunks past the copy's head.
      await edge.commit({ journal: [entry(1), entry(2, "started")], chunks: [chunk(3), chunk(4)] });
      await mirror.sync(ID);
      const delta = edge.last;
      expect(edge.requests[1]).toEqual({ after: 2, cursor: edge.answers[0]?.cursor });
      expect(delta).toMatchObject({
        type: "delta",
        journal: { from: 1, entries: [entry(1), entry(2, "started")] },
      });
      expect(delta.chunks.map((c) => c.seq)).toEqual([3, 4]);
      expect(delta).not.toHaveProperty("snapshot");
      expect(delta).not.toHaveProperty("inbox");
      expect(delta).not.toHaveProperty("record");
      await expectSameCopy(store, edge.store);

      // Nothing changed: nothing comes.
      await mirror.sync(ID);
      expect(edge.last).toEqual({ type: "delta", chunks: [], cursor: delta.cursor });

      // The record changes (the fiber sleeps): the record comes, not the journal.
      await edge.commit({ fiber: { status: "sleeping", wakeAt: 50, updatedAt: 9 } });
      await mirror.sync(ID);
      expect(edge.last).toMatchObject({ type: "delta", record: { status: "sleeping", wakeAt: 50 } });
      expect(edge.last).not.toHaveProperty("journal");
      expect(await store.getFiber(ID)).toMatchObject({ status: "sleeping", wakeAt: 50, updatedAt: 9 });
    });

    it("gets an event the edge took, and then its consumption", async () => {
      const edge = new EdgeReplica();
      await edge.create();
      const store = new MemoryStore();
      const mirror = new Mirror({ store, source: edge });
      await edge.commit({ fiber: { status: "waiting", waitingFor: ["go"], wakeAt: 9_000, updatedAt: 2 } });
      await mirror.sync(ID);

      // The event moves the replica's wake-up to its time (the store's rule), and the edge's
      // runtime, resumed, suspends it again before the mirror reads.
      await edge.store.enqueueEvent({ fiberId: ID, name: "go", payload: { n: 1 }, at: 7, eventId: "edge:1" });
      expect((await edge.store.getFiber(ID))?.wakeAt).toBe(7);
      await edge.commit({ fiber: { wakeAt: 9_000 } });
      await mirror.sync(ID);
      expect(edge.last).toMatchObject({ type: "delta", inbox: [{ seq: 1, name: "go" }] });
      expect(edge.last).not.toHaveProperty("record");
      expect(await store.readInbox(ID)).toMatchObject([{ seq: 1, name: "go", eventId: "edge:1" }]);
      expect((await store.readInbox(ID))[0]?.consumedBy).toBeUndefined();
      // Enqueued here, the event moved the copy's wake-up too: the replica's is written over it.
      expect((await store.getFiber(ID))?.wakeAt).toBe(9_000);

      // A row that changes after insertion: the wait at pos 0 consumes it.
      await edge.commit({ journal: [entry(0)], consumeEvents: [{ seq: 1, consumedBy: 0 }] });
      await mirror.sync(ID);
      expect(edge.last).toMatchObject({ type: "delta", inbox: [{ seq: 1, consumedBy: 0 }] });
      expect(await store.readInbox(ID)).toMatchObject([{ seq: 1, consumedBy: 0 }]);
      await expectSameCopy(store, edge.store);
    });

    it("gets a stash, a newer one, and its removal", async () => {
      const edge = new EdgeReplica();
      await edge.create();
      const store = new MemoryStore();
      const mirror = new Mirror({ store, source: edge });
      await mirror.sync(ID);

      for (const [ordinal, value] of [
        [1, { draft: "a" }],
        [2, { draft: "ab" }],
      ] as const) {
        await edge.commit({ snapshot: { fiberId: ID, value, at: 10 + ordinal, ordinal } });
        await mirror.sync(ID);
        expect(edge.last).toMatchObject({ type: "delta", snapshot: { value, ordinal } });
        expect(await store.readSnapshot(ID)).toMatchObject({ value, ordinal });
      }
      await edge.commit({ snapshot: null });
      await mirror.sync(ID);
      expect(edge.last).toMatchObject({ type: "delta", snapshot: null });
      expect(await store.readSnapshot(ID)).toBeUndefined();
    });

    it("gets the whole replica again once the fiber restarted from scratch", async () => {
      const edge = new EdgeReplica();
      await edge.create();
      await edge.commit({ journal: [entry(0), entry(1), entry(2)] });
      const store = new MemoryStore();
      const mirror = new Mirror({ store, source: edge });
      await mirror.sync(ID);

      await edge.commit({ fiber: { epoch: 1 }, clearJournal: true, journal: [entry(0, "started")] });
      await mirror.sync(ID);
      expect(edge.last.type).toBe("full");
      expect(await store.readJournal(ID)).toEqual([entry(0, "started")]);
      expect((await store.getFiber(ID))?.epoch).toBe(1);
      // And deltas again from there.
      await edge.commit({ journal: [entry(0)] });
      await mirror.sync(ID);
      expect(edge.last).toMatchObject({ type: "delta", journal: { from: 0, entries: [entry(0)] } });
      await expectSameCopy(store, edge.store);
    });

    it("leaves an inbox that diverged to the hand-back, and still follows the rest", async () => {
      const edge = new EdgeReplica();
      await edge.create();
      const store = new MemoryStore();
      await store.createFiber(record({ streamHead: 1 }), [chunk(1, "fiber.start")]);
      // Buffered here and never shipped (the fence dropped it): the replica's seq 1 is another.
      await store.enqueueEvent({ fiberId: ID, name: "go", payload: "lost", at: 1 });
      await edge.store.enqueueEvent({ fiberId: ID, name: "go", payload: "kept", at: 2 });
      const mirror = new Mirror({ store, source: edge });
      expect(await mirror.sync(ID)).toMatchObject({ status: "mirrored", rebuilt: false });
      expect((await store.readInbox(ID)).map((e) => e.payload)).toEqual(["lost"]);
      await edge.commit({ chunks: [chunk(2)] });
      expect(await mirror.sync(ID)).toMatchObject({ appended: 1 });
    });

    it("follows with held reads: a change reaches the copy at once, and a sync cuts the held read short", async () => {
      const edge = new EdgeReplica();
      await edge.create();
      const store = new MemoryStore();
      // Polling would take 60 s: only a held read answered by the change is fast enough.
      const mirror = new Mirror({ store, source: edge, waitMs: 5_000, pollMs: 60_000 });
      mirror.follow(ID);
      await expect.poll(() => edge.requests.length).toBe(2);
      expect(edge.requests[1]).toMatchObject({ after: 1, waitMs: 5_000 });

      const started = Date.now();
      await edge.commit({ chunks: [chunk(2)], journal: [entry(0)] });
      await expect.poll(async () => (await store.getFiber(ID))?.streamHead, { timeout: 2_000 }).toBe(2);
      expect(Date.now() - started).toBeLessThan(2_000);
      // One answer for the change, and the next read is held again.
      await expect.poll(() => edge.requests.length).toBe(3);
      expect(edge.requests[2]).toMatchObject({ after: 2, waitMs: 5_000 });

      const cut = Date.now();
      expect(await mirror.sync(ID)).toMatchObject({ status: "mirrored", appended: 0 });
      expect(Date.now() - cut).toBeLessThan(2_000);
      // The held read was cut, not failed: the copy still holds its cursor, and is read with it.
      expect(edge.requests[3]).toEqual({ after: 2, cursor: edge.requests[2]?.cursor });
      await expectSameCopy(store, edge.store);

      await edge.commit({ chunks: [chunk(3, "fiber.end")], fiber: { status: "completed", updatedAt: 3 } });
      await expect.poll(() => mirror.following, { timeout: 2_000 }).toEqual([]);
      expect((await store.getFiber(ID))?.status).toBe("completed");
      mirror.stop();
    });

    it("reads a fiber the edge streams fast at most once per minGapMs, each answer carrying what came meanwhile", async () => {
      const edge = new EdgeReplica();
      await edge.create();
      const store = new MemoryStore();
      const mirror = new Mirror({ store, source: edge, waitMs: 5_000, minGapMs: 200 });
      mirror.follow(ID);
      await expect.poll(() => edge.requests.length).toBe(2);
      // 40 commits, one every 10 ms or so: a read per commit without the gap.
      const started = Date.now();
      for (let seq = 2; seq <= 41; seq++) {
        await edge.commit({ chunks: [chunk(seq)] });
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await expect.poll(async () => (await store.getFiber(ID))?.streamHead, { timeout: 5_000 }).toBe(41);
      // One read per 200 ms that passed (however slow the machine was), and the last answer's.
      const gaps = Math.ceil((Date.now() - started) / 200);
      expect(edge.requests.length - 2).toBeLessThanOrEqual(gaps + 2);
      await expectSameCopy(store, edge.store);
      mirror.stop();
    });

    it("holds at most maxHeldReads reads at once", async () => {
      const edge = new WatchedStore(new MemoryStore());
      for (const id of ["f", "g"])
        await edge.createFiber(record({ id, streamHead: 1, home: edgeHome }), [{ ...chunk(1), fiberId: id }]);
      const requests: Array<{ id: string; waitMs?: number }> = [];
      const source: ReplicaSource = {
        readReplica: (id, after, options = {}) => {
          requests.push({ id, ...(options.waitMs ? { waitMs: options.waitMs } : {}) });
          return readReplicaWhenChanged(edge, edge, id, after, options);
        },
      };
      const store = new MemoryStore();
      const mirror = new Mirror({ store, source, waitMs: 5_000, pollMs: 50, maxHeldReads: 1 });
      mirror.follow("f");
      await expect.poll(() => requests.filter((r) => r.waitMs !== undefined).length).toBe(1);
      mirror.follow("g");
      // "g" is read again and again, never held while "f" holds the one read allowed.
      await expect.poll(() => requests.filter((r) => r.id === "g").length).toBeGreaterThan(3);
      expect(requests.filter((r) => r.id === "g" && r.waitMs !== undefined)).toEqual([]);
      mirror.stop();
    });
  });
});
