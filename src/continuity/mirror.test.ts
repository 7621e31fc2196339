/**
 * `Mirror` on a `MemoryStore` with a scripted replica: a copy that only lags gets the new chunks
 * appended with the store's ordinary `commit`; a copy holding chunks the replica never got (a
 * browser killed before shipping them) is rebuilt to the replica; a replica answer that would
 * leave a hole is refused by the store's `stream_gap` rule and changes nothing; a fiber only the
 * edge has is created; `follow` stops at the fiber's end.
 */

import { describe, expect, it } from "vitest";
import type { FiberRecord, StreamChunk } from "../core/records";
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
  current: { record: FiberRecord; chunks: StreamChunk[] } | undefined;
  reads: number[] = [];
  async readReplica(_id: string, after: number): Promise<ReplicaSnapshot | undefined> {
    this.reads.push(after);
    if (this.current === undefined) return undefined;
    return {
      record: this.current.record,
      journal: [],
      snapshot: undefined,
      inbox: [],
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
});
