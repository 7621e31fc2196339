/**
 * The resumable reader against the real event-stream route (MemoryStore runtime) behind a fetch
 * that breaks streams, replays too much or is not the host: every chunk exactly once, in order,
 * ending after `fiber.end`; typed errors for unknown fibers; bounded retries.
 */

import { afterEach, describe, expect, it } from "vitest";
import { defineFiber } from "../core/define";
import { ConnectionError, FiberNotFoundError, InvalidInputError, StoreError } from "../core/errors";
import type { FiberEvent } from "../core/records";
import { createRuntime, type Runtime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { frame, handleEventsRequest } from "../sw/event-route";
import { fiberChunks } from "../sw/fiber-chunks";
import { readFiberEvents } from "./event-reader";

const prefix = "/__fiberline";
const ticker = defineFiber("ticker", {
  async run(ctx, input: { ticks: number; ms: number }) {
    for (let i = 1; i <= input.ticks; i++) {
      await ctx.step("tick", () => new Promise((r) => setTimeout(r, input.ms)));
      ctx.emit("tick", { i });
    }
    return "done";
  },
});

const runtimes: Runtime[] = [];
function runtime(): Runtime {
  const rt = createRuntime({ store: new MemoryStore(), fibers: [ticker], pollIntervalMs: 10 });
  runtimes.push(rt);
  return rt;
}
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

/** A fetch served by the route whose bodies error after `breakAfter` chunks, like a worker stopping mid-stream. */
function breakingFetch(rt: Runtime, breakAfter: number, urls: string[]): typeof fetch {
  return async (input) => {
    const url = String(input);
    urls.push(url);
    const res = (await handleEventsRequest(new Request(`https://app.test${url}`), {
      runtime: rt,
      prefix,
    })) as Response;
    if (!res.body) return res;
    const reader = res.body.getReader();
    let blocks = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (blocks === breakAfter) {
          await reader.cancel();
          controller.error(new TypeError("network error"));
          return;
        }
        const next = await reader.read();
        if (next.done) return controller.close();
        blocks++;
        controller.enqueue(next.value);
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
}

async function collect(iterable: AsyncIterable<FiberEvent>): Promise<FiberEvent[]> {
  const out: FiberEvent[] = [];
  for await (const ev of iterable) out.push(ev);
  return out;
}

describe("readFiberEvents", () => {
  it("yields every chunk exactly once, in order, across broken streams, resuming after the last seq", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 12, ms: 5 });
    const urls: string[] = [];
    const reconnects: number[] = [];
    const events = await collect(
      readFiberEvents(fiber.id, {
        prefix,
        fetch: breakingFetch(rt, 3, urls),
        initialDelayMs: 1,
        onReconnect: ({ after }) => reconnects.push(after),
      }),
    );
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 14 }, (_, i) => i + 1));
    expect(events.at(-1)?.type).toBe("fiber.end");
    expect(events.filter((e) => e.type === "tick").map((e) => (e.data as { i: number }).i)).toEqual(
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
    expect(urls[0]).toBe(`${prefix}/fibers/${fiber.id}/events?after=0`);
    // Each reconnect names the fiber it reads (its createdAt, from the first answer).
    const created = (await rt.get(fiber.id))?.createdAt;
    expect(urls.slice(1)).toEqual(
      reconnects.map((after) => `${prefix}/fibers/${fiber.id}/events?after=${after}&created=${created}`),
    );
    expect(reconnects).toEqual([3, 6, 9, 12]);
    expect(events[1]?.at).toBeGreaterThan(1_600_000_000_000);
  });

  it("starts after the given cursor and never yields a chunk twice when a host replays too much", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 5, ms: 1 });
    await rt.result(fiber);
    let calls = 0;
    // A careless host that ignores the cursor and always replays everything, breaking after 4 blocks.
    const replayAll: typeof fetch = async () => {
      calls++;
      const all: string[] = [];
      for await (const ev of rt.events(fiber.id)) all.push(frame(ev));
      const blocks = calls === 1 ? all.slice(0, 4) : all;
      return new Response(blocks.join(""), {
        headers: { "x-fiberline": "1", "content-type": "text/event-stream" },
      });
    };
    const events = await collect(
      readFiberEvents(fiber.id, { prefix, after: 1, fetch: replayAll, initialDelayMs: 1 }),
    );
    expect(events.map((e) => e.seq)).toEqual([2, 3, 4, 5, 6, 7]);
    expect(calls).toBe(2);
  });

  it("ends at once, after one request, when the cursor is already at the end of an ended fiber", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 2, ms: 1 });
    await rt.result(fiber);
    const end = (await rt.inspect(fiber.id)).streamHead;
    const urls: string[] = [];
    const events = await collect(
      readFiberEvents(fiber.id, {
        prefix,
        after: end,
        fetch: breakingFetch(rt, 100, urls),
        initialDelayMs: 1,
      }),
    );
    expect(events).toEqual([]);
    expect(urls).toHaveLength(1);
  });

  it("replaces a connection that goes silent (no chunk, no keep-alive) and resumes after the last seq", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 3, ms: 1 });
    await rt.result(fiber);
    const urls: string[] = [];
    const served = breakingFetch(rt, 100, urls);
    let calls = 0;
    // The first connection delivers one chunk, then stays open and silent forever.
    const halfOpen: typeof fetch = async (input, init) => {
      if (++calls > 1) return served(input, init);
      urls.push(String(input));
      const first = new TextEncoder().encode('id: 1\nevent: fiber.start\nat: 1\ndata: {"name":"ticker"}\n\n');
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(first);
        },
      });
      return new Response(body, { headers: { "x-fiberline": "1", "content-type": "text/event-stream" } });
    };
    const reconnects: unknown[] = [];
    const events = await collect(
      readFiberEvents(fiber.id, {
        prefix,
        fetch: halfOpen,
        idleTimeoutMs: 50,
        initialDelayMs: 1,
        onReconnect: ({ error }) => reconnects.push(error),
      }),
    );
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(urls).toHaveLength(2);
    expect(urls[1]).toContain("after=1");
    expect(reconnects).toHaveLength(1);
    expect(reconnects[0]).toMatchObject({ code: "deadline_exceeded" });
  });

  it("does not take a consumer slower than idleTimeoutMs for a dead connection", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 3, ms: 1 });
    const urls: string[] = [];
    const reconnects: unknown[] = [];
    const seqs: number[] = [];
    for await (const event of readFiberEvents(fiber.id, {
      prefix,
      fetch: breakingFetch(rt, 100, urls),
      idleTimeoutMs: 40,
      initialDelayMs: 1,
      onReconnect: ({ error }) => reconnects.push(error),
    })) {
      seqs.push(event.seq);
      // The page renders slowly; the chunks wait in the connection meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 120));
    }
    expect(seqs).toEqual([1, 2, 3, 4, 5]);
    expect(reconnects).toEqual([]);
    expect(urls).toHaveLength(1);
  });

  it("replaces a connection whose answer never comes (no headers) after idleTimeoutMs", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 3, ms: 1 });
    await rt.result(fiber);
    const served = breakingFetch(rt, 100, []);
    let calls = 0;
    // The first request is never answered; one that honours its signal rejects when aborted.
    const stuck: typeof fetch = async (input, init) => {
      if (++calls > 1) return served(input, init);
      return await new Promise<Response>((_, reject) =>
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason), { once: true }),
      );
    };
    const reconnects: unknown[] = [];
    const events = await collect(
      readFiberEvents(fiber.id, {
        prefix,
        fetch: stuck,
        idleTimeoutMs: 50,
        initialDelayMs: 1,
        onReconnect: ({ error }) => reconnects.push(error),
      }),
    );
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(reconnects).toHaveLength(1);
    expect(reconnects[0]).toMatchObject({ code: "deadline_exceeded" });
  });

  it("throws FiberNotFoundError at once for an unknown fiber, and InvalidInputError for a bad cursor", async () => {
    const rt = runtime();
    const urls: string[] = [];
    const missing = await collect(
      readFiberEvents("ghost", { prefix, fetch: breakingFetch(rt, 99, urls) }),
    ).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(FiberNotFoundError);
    expect((missing as FiberNotFoundError).code).toBe("fiber_not_found");
    expect(urls).toHaveLength(1);
    const bad = await collect(readFiberEvents("ghost", { prefix, after: -1 })).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(InvalidInputError);
  });

  it("stops with FiberNotFoundError when the fiber it read was collected and another started under its id", async () => {
    let now = 1_000_000;
    const rt = createRuntime({
      store: new MemoryStore(),
      fibers: [ticker],
      pollIntervalMs: 10,
      retentionMs: 1_000,
      clock: () => now,
    });
    runtimes.push(rt);
    const first = await rt.start(ticker, { ticks: 3, ms: 1 }, { id: "reused" });
    const urls: string[] = [];
    const serve = breakingFetch(rt, 1, urls);
    let calls = 0;
    const seen: number[] = [];
    const outcome = await (async () => {
      for await (const event of readFiberEvents("reused", {
        prefix,
        initialDelayMs: 1,
        fetch: async (input, init) => {
          if (++calls === 2) {
            // While the reader was away: the fiber ended, was collected, and a longer one took its id.
            await rt.result(first);
            now += 5_000;
            expect(await rt.collect()).toEqual(["reused"]);
            await rt.result(await rt.start(ticker, { ticks: 9, ms: 1 }, { id: "reused" }));
          }
          return serve(input, init);
        },
      })) {
        seen.push(event.seq);
      }
      return "read on";
    })().catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(FiberNotFoundError);
    expect((outcome as Error).message).toMatch(/collected/);
    expect(seen[0]).toBe(1);
    expect(urls[1]).toBe(`${prefix}/fibers/reused/events?after=${seen.at(-1)}&created=1000000`);
  });

  it("resumes after a reload on the fiber it read before (created), refusing one started again under the id", async () => {
    let now = 1_000_000;
    const rt = createRuntime({
      store: new MemoryStore(),
      fibers: [ticker],
      pollIntervalMs: 10,
      retentionMs: 1_000,
      clock: () => now,
    });
    runtimes.push(rt);
    const first = await rt.start(ticker, { ticks: 3, ms: 1 }, { id: "kept" });
    await rt.result(first);
    // The page before the reload: reads, and keeps the cursor and the fiber's createdAt.
    const named: number[] = [];
    const before = await collect(
      readFiberEvents("kept", { prefix, fetch: breakingFetch(rt, 99, []), onCreated: (c) => named.push(c) }),
    );
    expect(named).toEqual([1_000_000]);
    const cursor = before.at(-1)?.seq ?? 0;
    // While the page was away, the fiber was collected and a longer one took its id.
    now += 5_000;
    expect(await rt.collect()).toEqual(["kept"]);
    await rt.result(await rt.start(ticker, { ticks: 9, ms: 1 }, { id: "kept" }));

    const urls: string[] = [];
    const after = await collect(
      readFiberEvents("kept", {
        prefix,
        after: cursor - 1,
        created: named[0],
        fetch: breakingFetch(rt, 99, urls),
      }),
    ).catch((e: unknown) => e);
    expect(after).toBeInstanceOf(FiberNotFoundError);
    expect(urls).toEqual([`${prefix}/fibers/kept/events?after=${cursor - 1}&created=1000000`]);
    // The new fiber, named by its own createdAt, reads as usual.
    const fresh = await collect(
      readFiberEvents("kept", { prefix, created: 1_005_000, fetch: breakingFetch(rt, 99, []) }),
    );
    expect(fresh.at(-1)?.type).toBe("fiber.end");
    const bad = await collect(readFiberEvents("kept", { prefix, created: Number.NaN })).catch(
      (e: unknown) => e,
    );
    expect(bad).toBeInstanceOf(InvalidInputError);
  });

  it("tells apart two fibers started under one id within the same millisecond", async () => {
    const store = new MemoryStore();
    const rt = createRuntime({ store, fibers: [ticker], pollIntervalMs: 10, clock: () => 2_000_000 });
    runtimes.push(rt);
    const first = await rt.start(ticker, { ticks: 2, ms: 1 }, { id: "twice" });
    await rt.result(first);
    const named: number[] = [];
    const read = await collect(
      readFiberEvents("twice", { prefix, fetch: breakingFetch(rt, 99, []), onCreated: (c) => named.push(c) }),
    );
    await store.deleteFibers(["twice"]);
    await rt.result(await rt.start(ticker, { ticks: 5, ms: 1 }, { id: "twice" }));
    const again = await collect(
      readFiberEvents("twice", {
        prefix,
        after: read.length - 1,
        created: named[0],
        fetch: breakingFetch(rt, 99, []),
      }),
    ).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(FiberNotFoundError);
  });

  it("over a transport: retries the host's storage errors and a host that never answers, from the cursor", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 4, ms: 1 });
    await rt.result(fiber);
    let attempts = 0;
    const reconnects: string[] = [];
    const events = await collect(
      readFiberEvents(fiber.id, {
        prefix,
        initialDelayMs: 1,
        idleTimeoutMs: 50,
        onReconnect: ({ error }) => reconnects.push((error as { code?: string }).code ?? String(error)),
        async *transport(id, after, signal) {
          attempts++;
          if (attempts === 1) {
            // The host's storage fails for a moment (its error travels with its class).
            throw new StoreError("store_error", "Storage failed during the read; retry.");
          }
          if (attempts === 2) {
            // The host never answers (a stuck read, a leader tab that dropped the request).
            await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
          }
          yield* fiberChunks(rt, id, after, signal);
        },
      }),
    );
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(reconnects).toEqual(["store_error", "deadline_exceeded"]);
  });

  it("does not count a connection the host kept a while and then lost as a failure (a quiet fiber, its worker stopped again and again)", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 1, ms: 1 });
    await rt.result(fiber);
    let attempts = 0;
    const events = await collect(
      readFiberEvents(fiber.id, {
        prefix,
        initialDelayMs: 1,
        maxDelayMs: 10,
        maxAttempts: 3,
        async *transport(id, after, signal) {
          // Ten times: the host answers, nothing happens for a while, and the worker stops.
          if (++attempts <= 10) {
            yield { created: (await rt.get(id))?.createdAt as number };
            await new Promise((resolve) => setTimeout(resolve, 15));
            throw new ConnectionError("worker_restarted", "The worker stopped.");
          }
          yield* fiberChunks(rt, id, after, signal);
        },
      }),
    );
    expect(events.at(-1)?.type).toBe("fiber.end");
    expect(attempts).toBe(11);
  });

  it("retries a response that is not the host's and gives up after maxAttempts with the reason", async () => {
    let waited = 0;
    const network: typeof fetch = async () =>
      new Response("<!doctype html>", { status: 200, headers: { "content-type": "text/html" } });
    const error = await collect(
      readFiberEvents("f", {
        prefix,
        fetch: network,
        initialDelayMs: 1,
        maxDelayMs: 2,
        maxAttempts: 4,
        waitForHost: async () => {
          waited++;
        },
      }),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).code).toBe("deadline_exceeded");
    expect((error as Error).message).toContain("not answered by the Fiberline Service Worker");
    expect(waited).toBe(4);
  });

  // Live, each chunk comes in a read of its own; replayed, an ended fiber's come in one write.
  it.each([
    ["mid-stream", false],
    ["inside a batch the host sent at once (a replay)", true],
  ])("stops with the signal's reason when aborted %s", async (_, replay) => {
    const rt = runtime();
    const fiber = await rt.start(ticker, replay ? { ticks: 40, ms: 0 } : { ticks: 1000, ms: 5 });
    if (replay) await rt.result(fiber);
    const abort = new AbortController();
    const seen: number[] = [];
    const error = await (async () => {
      for await (const ev of readFiberEvents(fiber.id, {
        prefix,
        signal: abort.signal,
        fetch: breakingFetch(rt, 99, []),
      })) {
        seen.push(ev.seq);
        if (seen.length === 3) abort.abort(new Error("user left"));
      }
    })().catch((e: unknown) => e);
    expect((error as Error).message).toBe("user left");
    expect(seen).toEqual([1, 2, 3]);
    if (!replay) await rt.cancel(fiber.id);
  });

  it.each([
    ["never answers", false],
    ["fails after a while (its RPC deadline)", true],
  ])("counts a fallback that %s as a failed attempt, and gives up after maxAttempts", async (_, rejects) => {
    const network: typeof fetch = async () => new Response("<!doctype html>", { status: 200 });
    let opened = 0;
    const error = await collect(
      readFiberEvents("f", {
        prefix,
        fetch: network,
        initialDelayMs: 1,
        maxDelayMs: 2,
        maxAttempts: 3,
        idleTimeoutMs: 20,
        // A port stream whose worker never answers `openStream` (a stuck read in the worker), or
        // whose `openStream` call fails later than maxDelayMs.
        async *fallback(_id, _after, signal) {
          opened++;
          if (rejects) {
            await new Promise((r) => setTimeout(r, 10));
            throw new ConnectionError("deadline_exceeded", "openStream() got no answer");
          }
          await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
        },
      }),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).code).toBe("deadline_exceeded");
    expect(opened).toBe(3);
  });

  it("reads an attempt through the fallback when fetch is not answered by the host, then tries fetch again", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 6, ms: 2 });
    await rt.result(fiber);
    let fetches = 0;
    const real = breakingFetch(rt, 99, []);
    // The first fetch goes around the worker (Chromium's stuck routing after a version takeover).
    const flaky: typeof fetch = async (input, init) => {
      fetches++;
      return fetches === 1 ? new Response("<!doctype html>", { status: 200 }) : real(input, init);
    };
    const fallbackCalls: number[] = [];
    const events = await collect(
      readFiberEvents(fiber.id, {
        prefix,
        fetch: flaky,
        initialDelayMs: 1,
        async *fallback(id, after) {
          fallbackCalls.push(after);
          for await (const ev of rt.events(id, { after })) {
            yield { seq: ev.seq, event: ev.type, at: ev.at, data: JSON.stringify(ev.data) };
            if (ev.seq === 3) return; // the port stream breaks too
          }
        },
      }),
    );
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(fallbackCalls).toEqual([0]);
    expect(fetches).toBe(2);
  });
});
