/**
 * `Mirror` on a `MemoryStore` with a scripted replica: a copy that only lags gets the new chunks
 * appended with the store's ordinary `commit`; a copy holding chunks the replica never got (a
 * browser killed before shipping them) is rebuilt to the replica; a replica answer that would
 * leave a hole is refused by the store's `stream_gap` rule and changes nothing; a fiber only the
 * edge has is created; `follow` stops at the fiber's end.
 */

import { describe, expect, it } from "vitest";
import type { FiberRecord, InboxEvent, StreamChunk } from "../core/records";
import type { ReplicaSnapshot } from "../edge/replica-routes";
import { MemoryStore } from "../store/memory-store";
import { Mirror, type ReplicaSource } from "./mirror";

const ID = "f";

function record(patch: Partial<FiberRecord> = {}): FiberRecord {
  return {
    id: ID,
    name: "job",
    version: "1",
    input: null,
    status: "running",
    createdAt: 1,
    updatedAt: 1,
    generation: 1,
    streamHead: 0,
    emitOrdinal: 0,
    epoch: 0,
    stalledRecoveries: 0,
    progressMark: "",
    ...patch,
  };
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
});
