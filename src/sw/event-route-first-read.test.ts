/**
 * The event route's first read: a GET of a fiber not streamed from memory subscribes, then reads
 * the record and the first chunks in one read of storage, answers 404 or 204 from that read, and
 * streams from it. One read before the first chunk instead of two (the record, then the chunks),
 * which is on the path of every reconnect after a worker restart; and still each chunk once, in
 * order, whatever commits while that read is in flight.
 */

import { afterEach, describe, expect, it } from "vitest";
import { defineFiber } from "../core/define";
import type { StreamChunk } from "../core/records";
import { createRuntime, type Runtime } from "../core/runtime";
import { readSse } from "../core/sse";
import type { Store, StreamAndRecord } from "../core/store";
import { MemoryStore } from "../store/memory-store";
import { handleEventsRequest } from "./event-route";

const prefix = "/__fiberline";

/** Emits `ticks` ticks; before tick `waitAt` it waits until `release` is called. */
function pausedTicker() {
  let release!: () => void;
  const paused = new Promise<void>((resolve) => {
    release = resolve;
  });
  const def = defineFiber("paused-ticker", {
    async run(ctx, input: { ticks: number; waitAt: number }) {
      for (let i = 1; i <= input.ticks; i++) {
        if (i === input.waitAt) await paused;
        ctx.emit("tick", i);
      }
      return "done";
    },
  });
  return { def, release };
}

/**
 * A MemoryStore with `readStreamAndRecord` (as `IdbStore` has: one transaction), whose calls are
 * counted with the other reads and can be held until `hold.release()`.
 */
function observedStore() {
  const reads: string[] = [];
  const hold = { active: false, started: () => {}, release: () => {} };
  class Observed extends MemoryStore {
    override async getFiber(id: string) {
      reads.push("getFiber");
      return super.getFiber(id);
    }
    override async readStream(id: string, after: number, limit?: number): Promise<StreamChunk[]> {
      reads.push("readStream");
      return super.readStream(id, after, limit);
    }
    override async readStreamAndRecord(id: string, after: number, limit?: number): Promise<StreamAndRecord> {
      reads.push("readStreamAndRecord");
      if (hold.active) {
        hold.active = false;
        hold.started();
        await new Promise<void>((resolve) => {
          hold.release = resolve;
        });
      }
      // One state, as a transaction would read it.
      const [chunks, record] = await Promise.all([super.readStream(id, after, limit), super.getFiber(id)]);
      return { chunks, record };
    }
  }
  const store: Store = new Observed();
  return { store, reads, hold };
}

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

async function sseOf(response: Response, seen: string[] = []): Promise<string[]> {
  for await (const m of readSse(response.body as ReadableStream<Uint8Array>)) seen.push(`${m.id}:${m.event}`);
  return seen;
}

/** A runtime over `store` that runs nothing: it reads what another runtime (the writer) wrote. */
function reader(store: Store, def: ReturnType<typeof pausedTicker>["def"]): Runtime {
  const rt = createRuntime({ store, fibers: [def], pollIntervalMs: 10_000 });
  runtimes.push(rt);
  return rt;
}

describe("the event route's first read", () => {
  it("reads storage once before the first chunk of a stored fiber's stream", async () => {
    const { def } = pausedTicker();
    const { store, reads } = observedStore();
    const rt = reader(store, def);
    const writer = createRuntime({ store, fibers: [def] });
    runtimes.push(writer);
    await writer.result(await writer.start(def, { ticks: 3, waitAt: 0 }, { id: "done" }));

    reads.length = 0;
    const res = (await handleEventsRequest(
      new Request(`https://app.test${prefix}/fibers/done/events?after=1`),
      {
        runtime: rt,
        prefix,
      },
    )) as Response;
    expect(res.status).toBe(200);
    expect(await sseOf(res)).toEqual(["2:tick", "3:tick", "4:tick", "5:fiber.end"]);
    // The record came with the chunks: no getFiber of its own before them.
    expect(reads).toEqual(["readStreamAndRecord"]);

    // 404 and 204 come from that same read.
    reads.length = 0;
    const missing = await handleEventsRequest(new Request(`https://app.test${prefix}/fibers/nope/events`), {
      runtime: rt,
      prefix,
    });
    expect(missing?.status).toBe(404);
    const ended = await handleEventsRequest(
      new Request(`https://app.test${prefix}/fibers/done/events?after=5`),
      {
        runtime: rt,
        prefix,
      },
    );
    expect(ended?.status).toBe(204);
    expect(reads).toEqual(["readStreamAndRecord", "readStreamAndRecord"]);
  });

  for (const when of ["before", "after"] as const) {
    it(`sends each chunk once, in order, when the fiber commits while that read is in flight (read lands ${when} the commits)`, async () => {
      const { def, release } = pausedTicker();
      const { store, hold } = observedStore();
      // The writer is the reader's own runtime, so its commits reach the route's subscription live.
      const rt = reader(store, def);
      const fiber = await rt.start(def, { ticks: 6, waitAt: 3 }, { id: "live" });
      await expect.poll(async () => (await rt.get(fiber.id))?.streamHead).toBe(3);
      // A cursor at the end of what this runtime keeps in memory: the route reads storage.
      const after = 3;
      expect(rt.streamsFromMemory(fiber.id, after)).toBe(false);

      const started = new Promise<void>((resolve) => {
        hold.started = resolve;
      });
      hold.active = true;
      const responding = handleEventsRequest(
        new Request(`https://app.test${prefix}/fibers/live/events?after=${after}`),
        { runtime: rt, prefix },
      );
      await started; // subscribed, its read held
      if (when === "before") {
        // The read sees the state before the fiber goes on; everything after reaches it live.
        hold.release();
        const res = (await responding) as Response;
        const seen: string[] = [];
        const reading = sseOf(res, seen);
        release();
        expect(await reading).toEqual(["4:tick", "5:tick", "6:tick", "7:tick", "8:fiber.end"]);
      } else {
        // The fiber ends while the read is held: the read sees every chunk, and the subscription
        // has them all too; the stream has each once.
        release();
        await rt.result(fiber);
        hold.release();
        expect(await sseOf((await responding) as Response)).toEqual([
          "4:tick",
          "5:tick",
          "6:tick",
          "7:tick",
          "8:fiber.end",
        ]);
      }
    });
  }
});
