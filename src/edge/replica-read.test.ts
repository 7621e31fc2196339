/**
 * `readReplica` and `readReplicaWhenChanged` on a watched `MemoryStore` (the reader the edge route
 * and the simulator share): a read without a cursor is the whole replica, a cursor it cannot use
 * gets the whole again, a held read answers as soon as the replica changed and at its timeout
 * otherwise (a claim alone does not end it), and a delta of a long journal is a small fraction of
 * the whole answer.
 */

import { describe, expect, it } from "vitest";
import type { FiberRecord, JournalEntry, StreamChunk } from "../core/records";
import { testRecord } from "../core/test-records";
import { MemoryStore } from "../store/memory-store";
import { type ReplicaAnswer, readReplica, readReplicaWhenChanged } from "./replica-read";
import { encodeValue } from "./value-codec";
import { WatchedStore } from "./watched-store";

const ID = "f";
const home = { home: "edge", epoch: 2, until: 0, appliedPos: 3, eventMarks: {} };

function record(patch: Partial<FiberRecord> = {}): FiberRecord {
  return testRecord({ id: ID, home, ...patch });
}

function chunk(seq: number, data: unknown = { seq }): StreamChunk {
  return { fiberId: ID, seq, type: seq === 1 ? "fiber.start" : "tick", data, at: 1000 + seq };
}

/** A settled step with a result about the size of a short model reply. */
function entry(pos: number): JournalEntry {
  return {
    fiberId: ID,
    pos,
    kind: "step",
    key: `step#${pos}`,
    status: "completed",
    attempt: 1,
    startedAt: 100 + pos,
    endedAt: 101 + pos,
    result: { text: `reply ${pos} `.padEnd(200, "."), tokens: 40 },
  };
}

async function replicaStore(entries = 0) {
  const store = new WatchedStore(new MemoryStore());
  const { record: created } = await store.createFiber(record(), [chunk(1)]);
  const generation = created.generation;
  if (entries > 0)
    await store.commit([
      { fiberId: ID, generation, journal: Array.from({ length: entries }, (_, i) => entry(i)) },
    ]);
  return { store, generation };
}

function bytes(answer: ReplicaAnswer | undefined): number {
  return new TextEncoder().encode(encodeValue(answer)).length;
}

describe("readReplica", () => {
  it("answers the whole replica without a cursor, and to a cursor it cannot use", async () => {
    const { store } = await replicaStore(2);
    const whole = await readReplica(store, ID, 0);
    expect(whole).toMatchObject({
      type: "full",
      journal: [entry(0), entry(1)],
      inbox: [],
      chunks: [chunk(1)],
    });
    expect(whole?.cursor).toMatch(/^1\./);
    for (const cursor of ["", "nonsense", "9.0.0.0.a.b.c.d.e", "1.0.5.2.a.b.c.d.e"])
      expect((await readReplica(store, ID, 0, cursor))?.type).toBe("full");
    expect(await readReplica(store, "none", 0)).toBeUndefined();
  });

  it("carries a fraction of the whole answer for one more step of a 200-entry journal", async () => {
    const { store, generation } = await replicaStore(200);
    const whole = await readReplica(store, ID, 0);
    await store.commit([
      { fiberId: ID, generation, journal: [entry(200)], chunks: [chunk(2)], fiber: { updatedAt: 2 } },
    ]);
    const wholeAgain = await readReplica(store, ID, 1);
    const delta = await readReplica(store, ID, 1, whole?.cursor);
    expect(delta).toMatchObject({ type: "delta", journal: { from: 200, entries: [entry(200)] } });
    // What a poll of the old reader carried, against what the delta carries.
    console.info(
      `replica answer for one more step of a 200-entry journal: whole ${bytes(wholeAgain)} B, delta ${bytes(delta)} B`,
    );
    expect(bytes(delta) * 20).toBeLessThan(bytes(wholeAgain));
  });
});

describe("readReplicaWhenChanged", () => {
  it("answers at once without a cursor, or when the cursor's state is not the replica's", async () => {
    const { store, generation } = await replicaStore(1);
    const whole = await readReplica(store, ID, 0);
    await store.commit([{ fiberId: ID, generation, chunks: [chunk(2)] }]);
    const started = Date.now();
    expect((await readReplicaWhenChanged(store, store, ID, 0, { waitMs: 5_000 }))?.type).toBe("full");
    const changed = await readReplicaWhenChanged(store, store, ID, 1, {
      cursor: whole?.cursor,
      waitMs: 5_000,
    });
    expect(changed?.chunks.map((c) => c.seq)).toEqual([2]);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it("answers as soon as a commit changes the replica, past writes that change nothing it copies", async () => {
    const { store, generation } = await replicaStore(1);
    const whole = await readReplica(store, ID, 0);
    const started = Date.now();
    const held = readReplicaWhenChanged(store, store, ID, 1, { cursor: whole?.cursor, waitMs: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    // A claim moves generation, owner and lease only: still held.
    const claim = await store.claimFiber(ID, { owner: "edge-runner", now: 1, leaseMs: 60_000 });
    expect(claim.status).toBe("claimed");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const claimed = claim.status === "claimed" ? claim.record.generation : generation;
    await store.commit([{ fiberId: ID, generation: claimed, chunks: [chunk(2)], journal: [entry(1)] }]);
    const answer = await held;
    const took = Date.now() - started;
    expect(answer).toMatchObject({ type: "delta", journal: { from: 1, entries: [entry(1)] } });
    expect(answer?.chunks.map((c) => c.seq)).toEqual([2]);
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(2_000);
  });

  it("answers with nothing new at the timeout, or when its signal aborts", async () => {
    const { store } = await replicaStore(1);
    const whole = await readReplica(store, ID, 0);
    let started = Date.now();
    const timedOut = await readReplicaWhenChanged(store, store, ID, 1, {
      cursor: whole?.cursor,
      waitMs: 300,
    });
    expect(timedOut).toEqual({ type: "delta", chunks: [], cursor: whole?.cursor });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);

    const abort = new AbortController();
    started = Date.now();
    const cut = readReplicaWhenChanged(store, store, ID, 1, {
      cursor: whole?.cursor,
      waitMs: 5_000,
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(), 50);
    expect(await cut).toEqual({ type: "delta", chunks: [], cursor: whole?.cursor });
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
