/**
 * `examples/edge` in workerd: the example Worker (bundled as wrangler would, with `fiberline`
 * resolved to the sources as its `wrangler.toml` aliases them) runs the agent layer unchanged in a
 * Durable Object, and only for the user whose signed token started it: every route refuses a
 * missing, forged or expired token, another user's fibers look exactly like missing ones, the
 * per-user limits hold, CORS answers only the configured origins, and a refused request writes
 * nothing.
 */

import { resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { signToken } from "../../examples/edge/src/token";
import { readSse } from "../core/sse";
import { bundleWorker, TestWorker } from "./testing/workerd";

const SECRET = "test-secret-for-the-example";
const worker = new TestWorker({
  script: await bundleWorker("examples/edge/src/worker.ts", {
    fiberline: resolve("src/index.ts"),
    "fiberline/agent": resolve("src/agent/index.ts"),
    "fiberline/edge": resolve("src/edge/index.ts"),
  }),
  durableObjects: { FIBERS: "FiberObject" },
  bindings: {
    AUTH_SECRET: SECRET,
    ALLOWED_ORIGINS: "http://app.test, http://other-app.test",
    MAX_UNFINISHED_FIBERS: "2",
    MAX_BODY_BYTES: "4096",
  },
});

afterAll(() => worker.dispose());

const PREFIX = "/__fiberline";
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;
const alice = await signToken({ sub: "alice", exp: inAnHour() }, SECRET);
const bob = await signToken({ sub: "bob", exp: inAnHour() }, SECRET);
const aliceExpired = await signToken({ sub: "alice", exp: Math.floor(Date.now() / 1000) - 60 }, SECRET);
const aliceForged = await signToken({ sub: "alice", exp: inAnHour() }, "not-the-secret");

function call(path: string, token: string | undefined, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  return worker.fetch(`${PREFIX}${path}`, { ...init, headers });
}

const post = (path: string, token: string | undefined, body?: unknown) =>
  call(path, token, { method: "POST", ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

async function errorOf(response: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await response.json()) as { error: { code: string; message: string } };
  return { status: response.status, code: body.error.code, message: body.error.message };
}

async function recordOf(
  id: string,
  token: string,
): Promise<{ status: string; inbox?: unknown[] } | undefined> {
  const response = await call(`/fibers/${id}/inspect`, token);
  if (response.status === 404) return undefined;
  const inspection = (await response.json()) as { record: { status: string }; inbox: unknown[] };
  return { status: inspection.record.status, inbox: inspection.inbox };
}

async function readAll(id: string, token: string): Promise<Array<{ type: string; data: unknown }>> {
  const response = await call(`/fibers/${id}/events?after=0`, token);
  expect(response.status).toBe(200);
  const events: Array<{ type: string; data: unknown }> = [];
  for await (const message of readSse(response.body as ReadableStream<Uint8Array>)) {
    events.push({ type: message.event, data: JSON.parse(message.data) as unknown });
    if (message.event === "fiber.end") break;
  }
  return events;
}

/** Every route of the protocol, for one fiber id. */
const routes = (id: string) =>
  [
    [
      "start",
      () => [
        "/fibers",
        { method: "POST", body: JSON.stringify({ name: "ticker", id, input: { ticks: 1 } }) },
      ],
    ],
    ["list", () => ["/fibers", {}]],
    ["read", () => [`/fibers/${id}`, {}]],
    ["inspect", () => [`/fibers/${id}/inspect`, {}]],
    ["stream", () => [`/fibers/${id}/events?after=0`, {}]],
    [
      "event",
      () => [`/fibers/${id}/events`, { method: "POST", body: JSON.stringify({ name: "x", payload: 1 }) }],
    ],
    ["cancel", () => [`/fibers/${id}/cancel`, { method: "POST", body: "{}" }]],
  ] as const satisfies ReadonlyArray<readonly [string, () => readonly [string, RequestInit]]>;

it("runs the example's assistant for a signed-in user: a tool call, then a streamed answer", async () => {
  const started = await call("/fibers", alice, {
    method: "POST",
    headers: { origin: "http://app.test" },
    body: JSON.stringify({
      name: "assistant",
      id: "chat-1",
      input: { messages: [{ role: "user", content: "what is 12 * 7" }] },
    }),
  });
  expect(started.status).toBe(201);
  expect(started.headers.get("access-control-allow-origin")).toBe("http://app.test");
  expect(started.headers.get("access-control-expose-headers")).toContain("x-fiberline");

  const events = await readAll("chat-1", alice);
  expect(events.map((e) => e.type)).toContain("tool.call");
  expect(events.find((e) => e.type === "tool.result")?.data).toMatchObject({
    name: "calculator",
    result: { value: 84 },
  });
  const answer = events
    .filter((e) => e.type === "text.delta")
    .map((e) => (e.data as { delta: string }).delta)
    .join("");
  expect(answer).toContain("84");
  expect(events.at(-1)?.data).toMatchObject({ status: "completed" });
}, 20_000);

describe("authorisation", () => {
  it("refuses every route with no token, a forged token and an expired token, and writes nothing", async () => {
    // alice's own fiber, waiting (sleeping between ticks) while the refused calls arrive
    expect(
      (await post("/fibers", alice, { name: "ticker", id: "own-1", input: { ticks: 600 } })).status,
    ).toBe(201);
    for (const [token, label] of [
      [undefined, "no token"],
      ["not.a.token", "garbage"],
      [aliceForged, "forged"],
      [aliceExpired, "expired"],
    ] as const) {
      for (const [route, request] of routes("own-1")) {
        const [path, init] = request();
        const refused = await errorOf(await call(path, token, init));
        expect({ label, route, ...refused }).toMatchObject({
          label,
          route,
          status: 401,
          code: "unauthorized",
        });
      }
      // A start under a refused token with a fresh id created nothing.
      const ghost = `ghost-${label.replace(/ /g, "-")}`;
      await post("/fibers", token, { name: "ticker", id: ghost, input: { ticks: 1 } });
      expect(await recordOf(ghost, alice)).toBeUndefined();
    }
    // A path that names no action is answered by the Worker, token or not.
    const bogus = await call("/fibers/own-1/bogus", undefined, { method: "DELETE" });
    expect(await errorOf(bogus)).toMatchObject({ status: 404, code: "route_not_found" });
    // The refused events and cancels never reached alice's fiber.
    expect(await recordOf("own-1", alice)).toMatchObject({
      status: expect.stringMatching(/^(running|sleeping)$/),
      inbox: [],
    });
    expect((await errorOf(await call("/fibers/own-1", aliceExpired))).message).toContain("expired");
    expect((await post("/fibers/own-1/cancel", alice)).status).toBe(200);
  });

  it("answers another user's fiber exactly as a missing one, and leaves it untouched", async () => {
    expect(
      (await post("/fibers", alice, { name: "ticker", id: "secret-1", input: { ticks: 600 } })).status,
    ).toBe(201);
    for (const [route, request] of routes("secret-1")) {
      if (route === "start" || route === "list") continue;
      const [path, init] = request();
      const theirs = await call(path, bob, init);
      const [missingPath, missingInit] = routes("no-such-fiber").find(([r]) => r === route)?.[1]() ?? [];
      const missing = await call(missingPath as string, bob, missingInit);
      const a = await errorOf(theirs);
      const b = await errorOf(missing);
      expect({ route, ...a, message: a.message.replace("secret-1", "ID") }).toEqual({
        route,
        ...b,
        message: b.message.replace("no-such-fiber", "ID"),
      });
      expect(a).toMatchObject({ status: 404, code: "fiber_not_found" });
    }
    // bob's list holds none of alice's fibers; bob's own "secret-1" is another fiber entirely.
    expect(((await (await call("/fibers", bob)).json()) as unknown[]).length).toBe(0);
    const bobs = await post("/fibers", bob, { name: "ticker", id: "secret-1", input: { ticks: 1 } });
    expect(bobs.status).toBe(201);
    expect((await readAll("secret-1", bob)).at(-1)?.data).toMatchObject({ status: "completed" });
    // alice's fiber got no event, was not cancelled, and is still hers.
    expect(await recordOf("secret-1", alice)).toMatchObject({
      status: expect.stringMatching(/^(running|sleeping)$/),
      inbox: [],
    });
    expect((await post("/fibers/secret-1/cancel", alice)).status).toBe(200);
  });

  it("scopes idempotency keys to their user: the same key starts separate fibers for two users", async () => {
    const a = (await (
      await post("/fibers", alice, { name: "ticker", idempotencyKey: "order-7", input: { ticks: 1 } })
    ).json()) as { id: string; created: boolean };
    const again = (await (
      await post("/fibers", alice, { name: "ticker", idempotencyKey: "order-7", input: { ticks: 1 } })
    ).json()) as { id: string; created: boolean };
    const b = (await (
      await post("/fibers", bob, { name: "ticker", idempotencyKey: "order-7", input: { ticks: 1 } })
    ).json()) as { id: string; created: boolean };
    expect(a.created).toBe(true);
    expect(again).toEqual(expect.objectContaining({ id: a.id, created: false }));
    expect(b.created).toBe(true);
    expect(b.id).not.toBe(a.id);
    await readAll(a.id, alice);
    await readAll(b.id, bob);
  });

  it("gives a start without an id a random, unguessable one", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 2; i++) {
      const started = (await (
        await post("/fibers", alice, { name: "ticker", input: { ticks: 1 } })
      ).json()) as { id: string };
      expect(started.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      ids.add(started.id);
      await readAll(started.id, alice);
    }
    expect(ids.size).toBe(2);
  });
});

describe("limits and CORS", () => {
  it("refuses a user's third unfinished fiber with 429 too_many_fibers, and takes it once one ended", async () => {
    const carol = await signToken({ sub: "carol", exp: inAnHour() }, SECRET);
    for (const id of ["long-1", "long-2"]) {
      expect((await post("/fibers", carol, { name: "ticker", id, input: { ticks: 600 } })).status).toBe(201);
    }
    const third = await errorOf(
      await post("/fibers", carol, { name: "ticker", id: "long-3", input: { ticks: 1 } }),
    );
    expect(third).toMatchObject({ status: 429, code: "too_many_fibers" });
    expect(await recordOf("long-3", carol)).toBeUndefined();
    // joining one of the running fibers is not a new fiber, and another user is not limited by carol's
    expect(
      (await post("/fibers", carol, { name: "ticker", id: "long-1", input: { ticks: 600 } })).status,
    ).toBe(200);
    const dave = await signToken({ sub: "dave", exp: inAnHour() }, SECRET);
    expect((await post("/fibers", dave, { name: "ticker", id: "d-1", input: { ticks: 1 } })).status).toBe(
      201,
    );

    expect((await post("/fibers/long-1/cancel", carol)).status).toBe(200);
    expect((await post("/fibers", carol, { name: "ticker", id: "long-3", input: { ticks: 1 } })).status).toBe(
      201,
    );
    expect((await post("/fibers/long-2/cancel", carol)).status).toBe(200);
  });

  it("refuses a body over MAX_BODY_BYTES with 413 payload_too_large before anything is written", async () => {
    const big = { name: "ticker", id: "big-1", input: { ticks: 1, pad: "x".repeat(5_000) } };
    expect(await errorOf(await post("/fibers", alice, big))).toMatchObject({
      status: 413,
      code: "payload_too_large",
    });
    expect(await recordOf("big-1", alice)).toBeUndefined();

    await post("/fibers", alice, { name: "ticker", id: "big-2", input: { ticks: 600 } });
    const event = await post("/fibers/big-2/events", alice, { name: "x", payload: "y".repeat(5_000) });
    expect(await errorOf(event)).toMatchObject({ status: 413, code: "payload_too_large" });
    expect(await recordOf("big-2", alice)).toMatchObject({ inbox: [] });
    await post("/fibers/big-2/cancel", alice);
  });

  it("answers only the configured origins", async () => {
    const preflight = await worker.fetch(`${PREFIX}/fibers`, {
      method: "OPTIONS",
      headers: { origin: "http://other-app.test", "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("http://other-app.test");
    expect(preflight.headers.get("access-control-allow-headers")).toContain("authorization");

    const stranger = await call("/fibers", alice, {
      method: "POST",
      headers: { origin: "http://evil.test" },
      body: JSON.stringify({ name: "ticker", id: "cors-1", input: { ticks: 1 } }),
    });
    expect(await errorOf(stranger)).toMatchObject({ status: 403, code: "origin_not_allowed" });
    expect(stranger.headers.get("access-control-allow-origin")).toBeNull();
    expect(await recordOf("cors-1", alice)).toBeUndefined();
  });
});
