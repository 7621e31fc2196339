/**
 * The event-stream route on Node's Request/Response with a MemoryStore runtime: status codes and
 * JSON error bodies, cursors from `?after` and `Last-Event-ID`, replay then live, and the close
 * after `fiber.end`.
 */

import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { defineFiber } from "../core/define";
import { createRuntime, type Runtime } from "../core/runtime";
import { formatSse, readSse } from "../core/sse";
import { MemoryStore } from "../store/memory-store";
import { frame, handleEventsRequest, toJson } from "./event-route";
import { CREATED_HEADER, HOST_HEADER } from "./protocol";

const origin = "https://app.test";
const prefix = "/__fiberline";

const gate = { open: () => {} };
const ticker = defineFiber("ticker", {
  async run(ctx, input: { ticks: number; waitAfter?: number }) {
    for (let i = 1; i <= input.ticks; i++) {
      if (i === input.waitAfter) await new Promise<void>((resolve) => (gate.open = resolve));
      ctx.emit("tick", { i, big: 10n, nothing: undefined });
    }
    return { ticks: input.ticks };
  },
});

const runtimes: Runtime[] = [];
function runtime(): Runtime {
  const rt = createRuntime({ store: new MemoryStore(), fibers: [ticker], pollIntervalMs: 20 });
  runtimes.push(rt);
  return rt;
}
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

function get(path: string, headers: Record<string, string> = {}, method = "GET"): Request {
  return new Request(`${origin}${path}`, { method, headers });
}

async function read(response: Response) {
  const out: Array<{ id?: string; event: string; data: unknown; at?: string }> = [];
  if (!response.body) throw new Error("no body");
  for await (const m of readSse(response.body, undefined, { fields: ["at"] })) {
    out.push({ id: m.id, event: m.event, data: JSON.parse(m.data), at: m.fields?.at });
  }
  return out;
}

describe("GET {prefix}/fibers/:id/events", () => {
  it("replays seq > after as id/event/at/data blocks and closes after fiber.end", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 3 }, { id: "f/1" });
    await rt.result(fiber);
    const res = await handleEventsRequest(get(`${prefix}/fibers/f%2F1/events?after=2`), {
      runtime: rt,
      prefix,
      origin,
    });
    expect(res?.status).toBe(200);
    expect(res?.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(res?.headers.get(HOST_HEADER)).toBe("1");
    const events = await read(res as Response);
    expect(events.map((e) => [e.id, e.event])).toEqual([
      ["3", "tick"],
      ["4", "tick"],
      ["5", "fiber.end"],
    ]);
    // JSON on the wire: bigint as a string, undefined members dropped; `at` is a timestamp.
    expect(events[0]?.data).toEqual({ i: 2, big: "10" });
    expect(Number(events[0]?.at)).toBeGreaterThan(1_600_000_000_000);
    expect(events[2]?.data).toEqual({ status: "completed", result: { ticks: 3 } });
  });

  it("takes the cursor from Last-Event-ID over ?after, as a reconnecting EventSource sends it", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 3 });
    await rt.result(fiber);
    const res = await handleEventsRequest(
      get(`${prefix}/fibers/${fiber.id}/events?after=0`, { "Last-Event-ID": "4" }),
      {
        runtime: rt,
        prefix,
      },
    );
    expect((await read(res as Response)).map((e) => e.id)).toEqual(["5"]);
  });

  it("streams live chunks after the replay, as they become durable", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 4, waitAfter: 3 });
    await expect.poll(async () => (await rt.inspect(fiber.id)).streamHead).toBe(3);
    const res = (await handleEventsRequest(get(`${prefix}/fibers/${fiber.id}/events?after=1`), {
      runtime: rt,
      prefix,
    })) as Response;
    const seen: string[] = [];
    const reading = (async () => {
      for await (const m of readSse(res.body as ReadableStream<Uint8Array>)) seen.push(`${m.id}:${m.event}`);
    })();
    await expect.poll(() => seen.length).toBe(2);
    gate.open();
    await reading;
    expect(seen).toEqual(["2:tick", "3:tick", "4:tick", "5:tick", "6:fiber.end"]);
  });

  it("answers 204 No Content for a cursor at or past the end of an ended fiber, so EventSource stops", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 2 });
    await rt.result(fiber);
    const end = (await rt.inspect(fiber.id)).streamHead;
    for (const request of [
      get(`${prefix}/fibers/${fiber.id}/events?after=${end}`),
      get(`${prefix}/fibers/${fiber.id}/events?after=${end + 5}`),
      get(`${prefix}/fibers/${fiber.id}/events`, { "Last-Event-ID": String(end) }),
    ]) {
      const res = (await handleEventsRequest(request, { runtime: rt, prefix })) as Response;
      expect(res.status).toBe(204);
      expect(res.body).toBeNull();
    }
    // One short of the end still gets the last chunk.
    const last = (await handleEventsRequest(get(`${prefix}/fibers/${fiber.id}/events?after=${end - 1}`), {
      runtime: rt,
      prefix,
    })) as Response;
    expect((await read(last)).map((e) => e.event)).toEqual(["fiber.end"]);
  });

  it("sends a keep-alive comment while the stream is quiet, then the chunks as they come", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 2, waitAfter: 1 });
    await expect.poll(async () => (await rt.inspect(fiber.id)).streamHead).toBe(1);
    const res = (await handleEventsRequest(get(`${prefix}/fibers/${fiber.id}/events`), {
      runtime: rt,
      prefix,
      heartbeatMs: 20,
    })) as Response;
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    while (!text.includes(": keep-alive")) text += decoder.decode((await reader.read()).value);
    expect(text.startsWith("id: 1\nevent: fiber.start\n")).toBe(true);
    gate.open();
    for (;;) {
      const next = await reader.read();
      if (next.done) break;
      text += decoder.decode(next.value);
    }
    // Comments are ignored by SSE readers: the chunks read as if there were none.
    const events: string[] = [];
    for await (const m of readSse(new Response(text).body as ReadableStream<Uint8Array>))
      events.push(m.event);
    expect(events).toEqual(["fiber.start", "tick", "tick", "fiber.end"]);
  });

  it("answers 404 with a JSON error body for an unknown fiber", async () => {
    const res = (await handleEventsRequest(get(`${prefix}/fibers/nope/events`), {
      runtime: runtime(),
      prefix,
    })) as Response;
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toContain("application/json");
    const body = await res.json();
    expect(body.error.code).toBe("fiber_not_found");
    expect(body.error.name).toBe("FiberNotFoundError");
    expect(body.error.message).toContain('"nope"');
  });

  it("answers 400 for a malformed cursor or id", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 1 });
    for (const bad of ["abc", "-1", "1.5", "", "99999999999999999"]) {
      const res = (await handleEventsRequest(get(`${prefix}/fibers/${fiber.id}/events?after=${bad}`), {
        runtime: rt,
        prefix,
      })) as Response;
      expect(res.status, `after=${bad}`).toBe(400);
      expect((await res.json()).error.code).toBe("invalid_argument");
    }
    const header = (await handleEventsRequest(
      get(`${prefix}/fibers/${fiber.id}/events`, { "Last-Event-ID": "x" }),
      {
        runtime: rt,
        prefix,
      },
    )) as Response;
    expect(header.status).toBe(400);
    for (const badId of ["bad%20id", "%E0%A4%A", "x".repeat(201)]) {
      const res = (await handleEventsRequest(get(`${prefix}/fibers/${badId}/events`), {
        runtime: rt,
        prefix,
      })) as Response;
      expect(res.status, badId).toBe(400);
      expect((await res.json()).error.code).toBe("invalid_id");
    }
  });

  it("names the fiber (createdAt) in every stream answer and refuses a reconnect into another fiber under the same id", async () => {
    let now = 1_000_000;
    const rt = createRuntime({
      store: new MemoryStore(),
      fibers: [ticker],
      pollIntervalMs: 20,
      retentionMs: 1_000,
      clock: () => now,
    });
    runtimes.push(rt);
    const first = await rt.start(ticker, { ticks: 2 }, { id: "same" });
    // Served from memory (the fiber this runtime just started) and from storage: both say which fiber.
    const live = await handleEventsRequest(get(`${prefix}/fibers/same/events?after=0`), {
      runtime: rt,
      prefix,
    });
    expect(live?.headers.get(CREATED_HEADER)).toBe(String(now));
    await read(live as Response);
    await rt.result(first);
    const stored = await handleEventsRequest(get(`${prefix}/fibers/same/events?after=1`), {
      runtime: rt,
      prefix,
    });
    expect(stored?.headers.get(CREATED_HEADER)).toBe("1000000");
    await stored?.body?.cancel();
    // The same fiber, asked by name: served.
    const same = await handleEventsRequest(get(`${prefix}/fibers/same/events?after=1&created=1000000`), {
      runtime: rt,
      prefix,
    });
    expect(same?.status).toBe(200);
    await same?.body?.cancel();
    // Collected, and a new fiber started under the id: a reader of the first one is refused.
    now += 5_000;
    expect(await rt.collect()).toEqual(["same"]);
    await rt.result(await rt.start(ticker, { ticks: 5 }, { id: "same" }));
    for (const method of ["GET", "HEAD"]) {
      const gone = await handleEventsRequest(
        get(`${prefix}/fibers/same/events?after=2&created=1000000`, {}, method),
        { runtime: rt, prefix },
      );
      expect(gone?.status).toBe(404);
      if (method === "GET") {
        const body = (await gone?.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe("fiber_not_found");
        expect(body.error.message).toMatch(/collected/);
      }
    }
    // Even at a cursor past the first fiber's end (which would have been 204).
    const past = await handleEventsRequest(get(`${prefix}/fibers/same/events?after=9&created=1000000`), {
      runtime: rt,
      prefix,
    });
    expect(past?.status).toBe(404);
    const fresh = await handleEventsRequest(get(`${prefix}/fibers/same/events?after=2&created=${now}`), {
      runtime: rt,
      prefix,
    });
    expect(fresh?.status).toBe(200);
    expect((await read(fresh as Response)).map((e) => e.id)).toEqual(["3", "4", "5", "6", "7"]);
    const malformed = await handleEventsRequest(get(`${prefix}/fibers/same/events?created=soon`), {
      runtime: rt,
      prefix,
    });
    expect(malformed?.status).toBe(400);
  });

  it("answers 405 for other methods, 404 for other paths under the prefix, and leaves the rest alone", async () => {
    const rt = runtime();
    const post = (await handleEventsRequest(get(`${prefix}/fibers/x/events`, {}, "POST"), {
      runtime: rt,
      prefix,
    })) as Response;
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    const other = (await handleEventsRequest(get(`${prefix}/fibers/x`), { runtime: rt, prefix })) as Response;
    expect(other.status).toBe(404);
    expect((await other.json()).error.code).toBe("route_not_found");
    expect(await handleEventsRequest(get("/index.html"), { runtime: rt, prefix })).toBeNull();
    expect(await handleEventsRequest(get(`${prefix}x/fibers/a/events`), { runtime: rt, prefix })).toBeNull();
    const foreign = new Request(`https://elsewhere.test${prefix}/fibers/a/events`);
    expect(await handleEventsRequest(foreign, { runtime: rt, prefix, origin })).toBeNull();
  });

  it("stops reading the runtime when the reader cancels and reports the stream's end", async () => {
    const rt = runtime();
    const fiber = await rt.start(ticker, { ticks: 2, waitAfter: 2 });
    let ended: Promise<void> | undefined;
    const res = (await handleEventsRequest(get(`${prefix}/fibers/${fiber.id}/events`), {
      runtime: rt,
      prefix,
      onStream: (p) => {
        ended = p;
      },
    })) as Response;
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await reader.cancel();
    await expect(ended).resolves.toBeUndefined();
    gate.open();
  });
});

describe("frame", () => {
  /** The block as `formatSse` writes it, with the bigint-aware JSON of the stream. */
  const viaFormatSse = (event: { seq: number; type: string; data: unknown; at: number }) =>
    formatSse({
      id: event.seq,
      event: event.type.replace(/[\r\n]/g, " "),
      fields: { at: event.at },
      data: JSON.stringify(event.data === undefined ? null : event.data, (_key, value) =>
        typeof value === "bigint" ? value.toString() : value,
      ),
    });

  it("writes exactly what formatSse writes, for any chunk (line breaks, bigints, undefined)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1 }),
        fc.string({ unit: "binary" }),
        fc.anything({ withBigInt: true, withNullPrototype: true }),
        fc.double(),
        (seq, type, data, at) => {
          const event = { seq, type, data, at };
          expect(frame(event)).toBe(viaFormatSse(event));
        },
      ),
      { numRuns: 500 },
    );
    expect(frame({ seq: 3, type: "a\r\nb", data: { n: 10n, u: undefined, s: "x\ny" }, at: 1.5 })).toBe(
      'id: 3\nevent: a  b\nat: 1.5\ndata: {"n":"10","s":"x\\ny"}\n\n',
    );
    // 500 arbitrary values take about a second alone; a loaded machine has taken over five.
  }, 30_000);

  it("sends data that is not JSON (a cycle) as an explanation instead of breaking the stream", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(JSON.parse(toJson(cyclic))).toEqual({ unserializable: expect.stringMatching(/circular/i) });
    expect(toJson(undefined)).toBe("null");
  });
});
