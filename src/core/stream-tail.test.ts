/**
 * The tail a runtime keeps of the fibers it started (`StreamHub.track`): a reader opened right after
 * `start` goes live from memory, reads storage for everything the tail does not cover, and never
 * sees a chunk twice or misses one either way.
 */

import { afterEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { handleEventsRequest } from "../sw/event-route";
import { defineFiber } from "./define";
import type { FiberEvent, StreamChunk } from "./records";
import { createRuntime, type Runtime } from "./runtime";
import type { Store } from "./store";
import { StreamHub, TAIL_CHUNKS, TAILS } from "./stream-hub";

const runtimes: Runtime[] = [];

afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
});

/** `store`, counting the calls that read a fiber's record or stream. */
function countingReads(store: Store): { store: Store; reads: string[] } {
  const reads: string[] = [];
  const readers = new Set(["getFiber", "readStream", "readStreamAndRecord"]);
  const counted = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (typeof property === "string" && readers.has(property)) reads.push(property);
        return value.apply(target, args);
      };
    },
  });
  return { store: counted, reads };
}

/** A fiber that emits `n` chunks, one per step, each after `gate` lets it. */
function gatedEmitter() {
  const waiting: (() => void)[] = [];
  const open = () => {
    for (const go of waiting.splice(0)) go();
  };
  const fiber = defineFiber("emitter", {
    async run(ctx, input: { n: number }) {
      for (let i = 1; i <= input.n; i++) {
        await ctx.step("part", async ({ emit }) => {
          await new Promise<void>((resolve) => waiting.push(resolve));
          emit("part", i);
        });
      }
      return input.n;
    },
  });
  return { fiber, open };
}

async function collect(events: AsyncIterable<FiberEvent>): Promise<FiberEvent[]> {
  const out: FiberEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

/** Opens the gate every few ms until `done` settles. */
async function drive(open: () => void, done: Promise<unknown>): Promise<void> {
  let finished = false;
  void done.finally(() => {
    finished = true;
  });
  while (!finished) {
    open();
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function expectWholeStream(events: FiberEvent[], parts: number, after = 0): void {
  expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => after + i + 1));
  expect(events.filter((e) => e.type === "part").map((e) => e.data)).toEqual(
    Array.from({ length: parts }, (_, i) => i + 1).slice(Math.max(0, after - 1)),
  );
  expect(events.at(-1)?.type).toBe("fiber.end");
}

describe("a reader of a fiber this runtime started and runs", () => {
  it("goes live from memory: no read of storage, every chunk once", async () => {
    const { fiber, open } = gatedEmitter();
    const { store, reads } = countingReads(new MemoryStore());
    const runtime = createRuntime({ store, fibers: [fiber] });
    runtimes.push(runtime);
    const { id } = await runtime.start(fiber, { n: 5 });
    expect(runtime.streamsFromMemory(id, 0)).toBe(true);
    // At the tail's end there is nothing to send from memory: storage answers (an end written
    // by another runtime included).
    expect(runtime.streamsFromMemory(id, 1)).toBe(false);
    const events = collect(runtime.events(id, { after: 0 }));
    await drive(open, events);
    expectWholeStream(await events, 5);
    expect(reads).toEqual([]);
    // The end is not kept: a reader from now on is answered from storage.
    expect(runtime.streamsFromMemory(id, 0)).toBe(false);
  });

  it("starts from its cursor inside the tail", async () => {
    const { fiber, open } = gatedEmitter();
    const inner = new MemoryStore();
    const { store, reads } = countingReads(inner);
    const runtime = createRuntime({ store, fibers: [fiber] });
    runtimes.push(runtime);
    const { id } = await runtime.start(fiber, { n: 4 });
    const first = collect(runtime.events(id, { after: 0 }));
    // Let two parts out (seqs 2 and 3), then open a second reader after the first of them.
    while (((await inner.getFiber(id))?.streamHead ?? 0) < 3) {
      open();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const second = collect(runtime.events(id, { after: 2 }));
    await drive(open, first);
    expectWholeStream(await first, 4);
    expectWholeStream(await second, 4, 2);
    expect(reads).toEqual([]);
  });

  it("reads storage for what the tail no longer holds, and sees each chunk once", async () => {
    const n = TAIL_CHUNKS + 20;
    const { fiber, open } = gatedEmitter();
    const { store, reads } = countingReads(new MemoryStore());
    const runtime = createRuntime({ store, fibers: [fiber] });
    runtimes.push(runtime);
    const { id } = await runtime.start(fiber, { n });
    // Let most parts out before anyone reads: the tail is dropped past TAIL_CHUNKS.
    while (((await store.getFiber(id))?.streamHead ?? 0) < n - 5) {
      open();
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    reads.length = 0;
    const events = collect(runtime.events(id, { after: 0 }));
    await drive(open, events);
    expectWholeStream(await events, n);
    expect(reads.some((read) => read.startsWith("readStream"))).toBe(true);
  });

  it("reads storage once the run has left this runtime", async () => {
    const waiter = defineFiber("waiter", {
      async run(ctx) {
        ctx.emit("asked", null);
        return ctx.waitForEvent<string>("answer");
      },
    });
    const { store, reads } = countingReads(new MemoryStore());
    const runtime = createRuntime({ store, fibers: [waiter], unloadAfterMs: 0 });
    runtimes.push(runtime);
    const { id } = await runtime.start(waiter, {});
    while ((await store.getFiber(id))?.status !== "waiting") {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(runtime.streamsFromMemory(id, 0)).toBe(false);
    reads.length = 0;
    const events = collect(runtime.events(id, { after: 0 }));
    await runtime.sendEvent(id, "answer", "yes");
    const seen = await events;
    expect(seen.map((e) => e.type)).toEqual(["fiber.start", "asked", "fiber.end"]);
    expect(seen.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(reads.length).toBeGreaterThan(0);
  });

  it("is served by the event route without reading the record", async () => {
    const { fiber, open } = gatedEmitter();
    const { store, reads } = countingReads(new MemoryStore());
    const runtime = createRuntime({ store, fibers: [fiber] });
    runtimes.push(runtime);
    const { id } = await runtime.start(fiber, { n: 3 });
    const response = await handleEventsRequest(
      new Request(`https://app.test/__fiberline/fibers/${id}/events?after=0`),
      { runtime, prefix: "/__fiberline" },
    );
    expect(response?.status).toBe(200);
    const body = response?.text() ?? Promise.resolve("");
    await drive(open, body);
    const ids = [...(await body).matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids).toEqual([1, 2, 3, 4, 5]);
    expect(reads).toEqual([]);
    // An unknown fiber is still answered 404, from storage.
    const missing = await handleEventsRequest(
      new Request("https://app.test/__fiberline/fibers/nobody/events"),
      { runtime, prefix: "/__fiberline" },
    );
    expect(missing?.status).toBe(404);
  });
});

describe("a fiber another runtime ended while this one still runs it", () => {
  it("is answered from storage: 204 at the end, HEAD too, and a reader from memory reaches the end", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const blocker = defineFiber("blocker", {
      async run(ctx) {
        ctx.emit("a", 1);
        await ctx.step("wait", () => gate);
        return 1;
      },
    });
    const store = new MemoryStore();
    const a = createRuntime({ store, fibers: [blocker], leaseMs: 60_000, pollIntervalMs: 10 });
    const b = createRuntime({ store, fibers: [blocker], leaseMs: 60_000 });
    runtimes.push(a, b);
    const { id } = await a.start(blocker, {});
    while (((await store.getFiber(id))?.streamHead ?? 0) < 2) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    // B ends it (A's run, inside its step, has not noticed yet): its stream ends at seq 3.
    expect(await b.cancel(id)).toBe("cancelled");
    const route = (after: number, method = "GET") =>
      handleEventsRequest(
        new Request(`https://app.test/__fiberline/fibers/${id}/events?after=${after}`, { method }),
        {
          runtime: a,
          prefix: "/__fiberline",
        },
      );
    expect((await route(3))?.status).toBe(204);
    expect((await route(3, "HEAD"))?.status).toBe(204);
    // A still holds chunks 1-2 in memory; what follows them comes from storage.
    const seen = await collect(a.events(id, { after: 0 }));
    expect(seen.map((e) => `${e.seq}:${e.type}`)).toEqual(["1:fiber.start", "2:a", "3:fiber.end"]);
    release();
  });
});

describe("StreamHub's tail", () => {
  const chunk = (seq: number, type = "part"): StreamChunk => ({ fiberId: "f", seq, type, data: seq, at: 0 });
  const seqs = (hub: StreamHub) => hub.tail("f")?.chunks.map((c) => c.seq);

  it("keeps only tracked fibers, from the first chunk published after tracking", () => {
    const hub = new StreamHub();
    hub.publish("f", [chunk(1)]);
    expect(hub.tail("f")).toBeUndefined();
    hub.track("f", "a");
    expect(seqs(hub)).toEqual([]);
    hub.publish("f", [chunk(2), chunk(3)]);
    hub.publish("f", [chunk(4)]);
    expect(hub.tail("f")).toEqual({ identity: "a", chunks: [chunk(2), chunk(3), chunk(4)] });
  });

  it("drops the tail on a publish that does not continue it, and on the end", () => {
    const hub = new StreamHub();
    hub.track("f", "a");
    hub.publish("f", [chunk(1), chunk(2)]);
    hub.publish("f", [chunk(4)]);
    expect(hub.tail("f")).toBeUndefined();
    hub.track("f", "a");
    hub.publish("f", [chunk(1), chunk(3)]);
    expect(hub.tail("f")).toBeUndefined();
    hub.track("f", "a");
    hub.publish("f", [chunk(1), chunk(2, "fiber.end")]);
    expect(hub.tail("f")).toBeUndefined();
  });

  it("covers a cursor only with a chunk after it to send", () => {
    const hub = new StreamHub();
    hub.track("f", "a");
    expect(hub.covers("f", 0)).toBe(false);
    hub.publish("f", [chunk(3), chunk(4)]);
    expect([1, 2, 3, 4].map((cursor) => hub.covers("f", cursor))).toEqual([false, true, true, false]);
    expect(hub.covers("g", 0)).toBe(false);
  });

  it("keeps TAIL_CHUNKS chunks at most, hands out copies, and TAILS fibers at most", () => {
    const hub = new StreamHub();
    hub.track("f", "a");
    for (let seq = 1; seq <= TAIL_CHUNKS; seq++) hub.publish("f", [chunk(seq)]);
    const tail = hub.tail("f");
    expect(tail?.chunks.length).toBe(TAIL_CHUNKS);
    hub.publish("f", [chunk(TAIL_CHUNKS + 1)]);
    expect(tail?.chunks.length).toBe(TAIL_CHUNKS);
    expect(hub.tail("f")).toBeUndefined();
    for (let i = 0; i <= TAILS; i++) hub.track(`f${i}`, "a");
    expect(hub.tail("f0")).toBeUndefined();
    expect(hub.tail("f1")).toBeDefined();
    expect(hub.tail(`f${TAILS}`)).toBeDefined();
    hub.forget("f1");
    expect(hub.tail("f1")).toBeUndefined();
  });
});
