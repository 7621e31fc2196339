/**
 * A worker whose view of a fiber is replaced by the store's (`Outbox.#replace`: the fiber came
 * home, under a newer epoch, to the other Service Worker version of the origin) drops the live
 * chunks Rule B held back for what it committed and never shipped (`ShippedChunks`), as a fence
 * does, before the store's view raises `visibleHead`: else they reach live readers at seqs where
 * the replica holds the edge's chunks.
 */

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { StreamChunk } from "../core/records";
import { ShippedChunks } from "../core/replication";
import { Outbox } from "./outbox";
import type { OutboxLog, SavedOutbox } from "./outbox-log";
import type { ShipmentAnswer } from "./protocol";
import { Shipper } from "./shipper";

const HOME = "browser:d1";

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});
afterEach(() => {
  vi.useRealTimers();
});

function chunk(seq: number, data: string): StreamChunk {
  return { fiberId: "f", seq, type: "token", data, at: seq };
}

describe("an outbox view replaced by another worker's come-home", () => {
  it("drops the live chunks it held for its unshipped commits, as a fence does", async () => {
    // The store's outbox: epoch 1, position 1 (the create, seq 1) acknowledged.
    let head: SavedOutbox = {
      fiberId: "f",
      epoch: 1,
      next: 2,
      acked: 1,
      shippedSeq: 1,
      ended: false,
      createdAt: 5,
      entries: [],
    };
    const log: OutboxLog = {
      loadOutbox: async (id) => (id === undefined || id === "f" ? [structuredClone(head)] : []),
      saveOutbox: async () => {},
      adoptOutbox: async () => {},
    };
    const outbox = await Outbox.open(log);
    const published: StreamChunk[] = [];
    const live = new ShippedChunks(outbox, (_id, chunks) => published.push(...chunks));

    // This worker's run commits seq 2 ("mine") at position 2; Rule B holds it back.
    outbox.appended("f", 1, {
      pos: 2,
      type: "commit",
      group: { fiberId: "f", generation: 1, chunks: [chunk(2, "mine")] },
    });
    live.add("f", [chunk(2, "mine")]);
    expect(published).toEqual([]);

    // Meanwhile the edge took the fiber over (epoch 2) and wrote its own seqs 2..4, and the fiber
    // came home to the other worker under epoch 3, which adopted it in the store.
    head = {
      fiberId: "f",
      epoch: 3,
      next: 4,
      acked: 3,
      shippedSeq: 4,
      ended: false,
      createdAt: 5,
      entries: [],
    };

    // This worker's next shipment (epoch 1) is answered: fenced, by this very home under epoch 3.
    const shipper = new Shipper({
      outbox,
      home: HOME,
      send: async (): Promise<ShipmentAnswer> => ({ status: "fenced", epoch: 3, home: HOME, appliedPos: 0 }),
    });
    shipper.kick("f");
    await vi.advanceTimersByTimeAsync(0);
    shipper.stop();

    expect(outbox.epoch("f")).toBe(3); // the store's view replaced this one
    // The edge's seq 2 is what the replica holds; "mine" must never reach a reader.
    expect(published.map((c) => c.data)).toEqual([]);
  });
});
