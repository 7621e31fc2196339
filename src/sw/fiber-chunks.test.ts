/**
 * `fiberChunks`, the leader tab's source of a fiber's stream, as the resumable reader's
 * transport (Node, MemoryStore): it names the fiber first, so a reader whose fiber was collected
 * and started again under the same id between two attempts stops with `fiber_not_found`
 * instead of reading the new fiber on from its old cursor.
 */

import { afterEach, describe, expect, it } from "vitest";
import { readFiberEvents, type StreamItem } from "../client/event-reader";
import { defineFiber } from "../core/define";
import { FiberNotFoundError } from "../core/errors";
import { createRuntime, type Runtime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { fiberChunks } from "./fiber-chunks";

const ticker = defineFiber("ticker", {
  async run(ctx, input: { ticks: number }) {
    for (let i = 1; i <= input.ticks; i++) ctx.emit("tick", { i });
    return input.ticks;
  },
});

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

describe("fiberChunks", () => {
  it("names the fiber before its chunks, and before 'ended'", async () => {
    const runtime = createRuntime({ store: new MemoryStore(), fibers: [ticker] });
    runtimes.push(runtime);
    const fiber = await runtime.start(ticker, { ticks: 2 }, { id: "named" });
    await runtime.result(fiber);
    const createdAt = (await runtime.get("named"))?.createdAt;
    const items: StreamItem[] = [];
    for await (const item of fiberChunks(runtime, "named", 2, new AbortController().signal)) items.push(item);
    expect(items[0]).toEqual({ created: createdAt });
    expect(
      items.slice(1).map((item) => (typeof item === "object" && "seq" in item ? item.seq : item)),
    ).toEqual([3, 4]);
    const atEnd: StreamItem[] = [];
    for await (const item of fiberChunks(runtime, "named", 4, new AbortController().signal)) atEnd.push(item);
    expect(atEnd).toEqual([{ created: createdAt }, "ended"]);
  });

  it("lets the reader refuse a fiber that took the id of the one it read", async () => {
    let now = 1_000_000;
    const runtime = createRuntime({
      store: new MemoryStore(),
      fibers: [ticker],
      retentionMs: 1_000,
      clock: () => now,
    });
    runtimes.push(runtime);
    await runtime.result(await runtime.start(ticker, { ticks: 3 }, { id: "reused" }));
    let attempts = 0;
    const seen: number[] = [];
    const outcome = await (async () => {
      for await (const event of readFiberEvents("reused", {
        prefix: "/unused",
        initialDelayMs: 1,
        async *transport(id, after, signal) {
          if (++attempts === 2) {
            // Between the two attempts: collected, and a new fiber under the id.
            now += 5_000;
            await runtime.collect();
            await runtime.result(await runtime.start(ticker, { ticks: 9 }, { id: "reused" }));
          }
          let yielded = 0;
          for await (const item of fiberChunks(runtime, id, after, signal)) {
            yield item;
            // The first attempt breaks after two chunks, as a leader tab closing would.
            if (attempts === 1 && typeof item === "object" && "seq" in item && ++yielded === 2) return;
          }
        },
      })) {
        seen.push(event.seq);
      }
      return "read on";
    })().catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(FiberNotFoundError);
    expect(seen).toEqual([1, 2]);
    expect(attempts).toBe(2);
  });
});
