/**
 * The edge host in real workerd (Miniflare): the HTTP protocol, recovery of a fiber whose object
 * was killed mid-step, and durable timers fired by the alarm after a restart. The Worker routes
 * one Durable Object per fiber; storage persists on disk across restarts.
 */

import { afterAll, afterEach, describe, expect, it } from "vitest";
import { Ledger } from "./testing/ledger";
import { readStream, type WireEvent } from "./testing/sse-client";
import { bundleWorker, TestWorker } from "./testing/workerd";

const ledger = new Ledger();
const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/host-worker.ts"),
  durableObjects: { FIBERS: "FiberObject" },
  persist: true,
  // A short heartbeat, so an object killed mid-run comes back within the test's patience.
  bindings: { KEEPALIVE_MS: "300" },
  serviceBindings: { LEDGER: ledger.binding },
});

afterEach(() => ledger.releaseAll());
afterAll(() => worker.dispose());

const PREFIX = "/__fiberline";

function post(path: string, body?: unknown): Promise<Response> {
  return worker.fetch(`${PREFIX}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function record(id: string): Promise<{ status: string; result?: unknown }> {
  return (await (await worker.fetch(`${PREFIX}/fibers/${id}`)).json()) as {
    status: string;
    result?: unknown;
  };
}

const seqs = (events: WireEvent[]) => events.map((e) => e.seq);

describe("the HTTP protocol", () => {
  it("starts a fiber, streams its chunks as SSE and answers its record and inspection", async () => {
    const started = await post("/fibers", { name: "steps", id: "http-1", input: { count: 2, ms: 1 } });
    expect(started.status).toBe(201);
    expect(await started.json()).toEqual({ id: "http-1", name: "steps", status: "running", created: true });

    const response = await worker.fetch(`${PREFIX}/fibers/http-1/events?after=0`);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await response.text();
    expect(text).toMatch(/^id: 1\nevent: fiber\.start\nat: \d+\ndata: \{"name":"steps","version":"1"\}\n\n/);
    expect(text).toContain("id: 4\nevent: fiber.end\n");

    expect(await record("http-1")).toMatchObject({ status: "completed", result: { values: [10, 20] } });
    const inspection = (await (await worker.fetch(`${PREFIX}/fibers/http-1/inspect`)).json()) as {
      journal: Array<{ key: string; status: string }>;
      streamHead: number;
    };
    expect(inspection.journal.map((e) => [e.key, e.status])).toEqual([
      ["step#1", "completed"],
      ["step#2", "completed"],
    ]);
    expect(inspection.streamHead).toBe(4);
  });

  it("resumes the stream after the Last-Event-ID header, which wins over ?after", async () => {
    await post("/fibers", { name: "steps", id: "http-2", input: { count: 3, ms: 1 } });
    await readStream(worker, "http-2", 0);
    const response = await worker.fetch(`${PREFIX}/fibers/http-2/events?after=0`, {
      headers: { "last-event-id": "3" },
    });
    expect((await response.text()).match(/^id: \d+$/gm)).toEqual(["id: 4", "id: 5"]);
  });

  it("answers errors as JSON with a code and the error's class", async () => {
    const missing = await worker.fetch(`${PREFIX}/fibers/nobody/events`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: "fiber_not_found" } });

    const record = await worker.fetch(`${PREFIX}/fibers/nobody`);
    expect(record.status).toBe(404);
    expect(await record.json()).toMatchObject({
      error: { code: "fiber_not_found", name: "FiberNotFoundError" },
    });

    const unknown = await post("/fibers", { name: "no-such-fiber", id: "http-3" });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({
      error: { code: "unknown_fiber", name: "UnknownFiberError" },
    });

    const malformed = await post("/fibers/http-1/events", { payload: 1 });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ error: { code: "invalid_argument" } });

    const list = await worker.fetch(`${PREFIX}/fibers`);
    expect(list.status).toBe(400);
    expect(await list.json()).toMatchObject({ error: { code: "invalid_argument" } });
  });

  it("joins a second start with the same idempotency key in the same object", async () => {
    const first = (await (await post("/fibers", { name: "approval", idempotencyKey: "order-7" })).json()) as {
      id: string;
      created: boolean;
    };
    const second = (await (
      await post("/fibers", { name: "approval", idempotencyKey: "order-7" })
    ).json()) as {
      id: string;
      created: boolean;
    };
    expect(first.created).toBe(true);
    expect(second).toMatchObject({ id: first.id, created: false });
    await post(`/fibers/${first.id}/cancel`);
  });

  it("delivers an event to a waiting fiber, cancels another, and refuses events after the end", async () => {
    await post("/fibers", { name: "approval", id: "http-approve" });
    await expect.poll(async () => (await record("http-approve")).status).toBe("waiting");
    const sent = await post("/fibers/http-approve/events", { name: "approval", payload: { ok: true } });
    expect(sent.status).toBe(202);
    await expect
      .poll(() => record("http-approve"))
      .toMatchObject({ status: "completed", result: "approved" });

    await post("/fibers", { name: "approval", id: "http-cancel" });
    const cancelled = await post("/fibers/http-cancel/cancel", { reason: "changed my mind" });
    expect(await cancelled.json()).toEqual({ status: "cancelled" });
    const late = await post("/fibers/http-cancel/events", { name: "approval", payload: { ok: true } });
    expect(late.status).toBe(409);
    expect(await late.json()).toMatchObject({ error: { code: "fiber_ended" } });
  });
});

describe("values over what one SQLite row holds", () => {
  for (const kind of ["text", "view"] as const) {
    it(`fails a step whose result is over the edge's payload limit as stored (${kind}) with payload_too_large, running it once`, async () => {
      const id = `big-${kind}`;
      expect((await post("/fibers", { name: "big", id, input: { kind } })).status).toBe(201);
      await expect.poll(async () => (await record(id)).status, { timeout: 10_000 }).toBe("failed");
      const failed = (await record(id)) as { error?: { code?: string } };
      expect(failed.error?.code).toBe("payload_too_large");
      expect(ledger.count(id, "fetch-doc")).toBe(1);
    });
  }
});

describe("eviction and crash", () => {
  it("resumes a fiber killed mid-step from its journal; completed steps do not run again; a reader resuming after N sees every chunk once", async () => {
    const id = "crash-1";
    ledger.hold(id, "step-3"); // step 3's first attempt never gets its answer: it is in flight
    await post("/fibers", { name: "steps", id, input: { count: 5, ms: 20 } });

    const before: WireEvent[] = [];
    const firstRead = readStream(worker, id, 0, (event) => before.push(event));
    await ledger.arrived(id, "step-3");
    await expect.poll(() => before.length).toBe(3); // fiber.start, progress 1, progress 2

    await worker.restart(); // workerd killed: memory gone, SQLite and the alarm kept on disk
    expect((await firstRead).ended).toBe("broken");
    ledger.releaseAll();

    // No request has reached the new process: the heartbeat alarm brings the object back.
    await ledger.arrived(id, "step-3", { attempt: 2 });

    const lastSeen = before.at(-1)?.seq ?? 0;
    const after = await readStream(worker, id, lastSeen);
    expect(after.ended).toBe("fiber.end");

    const all = [...before, ...after.events];
    expect(seqs(all)).toEqual(all.map((_, i) => i + 1)); // every seq once, in order, no gap
    expect(all.map((e) => e.type)).toEqual([
      "fiber.start",
      "progress",
      "progress",
      "fiber.recovered",
      "progress",
      "progress",
      "progress",
      "fiber.end",
    ]);
    expect(all.at(-1)?.data).toMatchObject({ status: "completed", result: { values: [10, 20, 30, 40, 50] } });
    expect(all.filter((e) => e.type === "progress").map((e) => (e.data as { step: number }).step)).toEqual([
      1, 2, 3, 4, 5,
    ]);

    // Steps 1 and 2 completed before the crash and were replayed from the journal, not re-run.
    expect(["step-1", "step-2", "step-3", "step-4", "step-5"].map((s) => ledger.count(id, s))).toEqual([
      1, 1, 2, 1, 1,
    ]);
  });
});

describe("a pick-up that keeps failing", () => {
  it("keeps the alarm while a fiber runs nowhere, so a later process resumes it with no request", async () => {
    const id = "stranded-1";
    ledger.hold(id, "step-2");
    const started = await post("/fibers", { name: "steps", id, input: { count: 3, ms: 20 } });
    expect(started.status).toBe(201);
    await ledger.arrived(id, "step-2");
    // Process 2: every update of a fiber record fails (a storage error), so each pick-up's claim
    // fails and the runner retries in memory only; its heartbeats come and go meanwhile.
    ledger.refuse("fiber-updates");
    await worker.restart();
    ledger.releaseAll();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(ledger.count(id, "step-2")).toBe(1);
    // Process 3: storage works again, and only the object's alarm can bring the fiber back.
    ledger.allow("fiber-updates");
    await worker.restart();
    await ledger.arrived(id, "step-2", { attempt: 2, timeoutMs: 10_000 });
    await expect.poll(async () => (await record(id)).status, { timeout: 10_000 }).toBe("completed");
  }, 40_000);
});

describe("durable timers", () => {
  it("wakes a fiber sleeping across a restart by alarm, with no request arriving", async () => {
    const id = "nap-1";
    const sleepMs = 1_500;
    await post("/fibers", { name: "nap", id, input: { ms: sleepMs } });
    await ledger.arrived(id, "before");
    const startedAt = Date.now();
    await expect.poll(async () => (await record(id)).status).toBe("sleeping");

    await worker.stop();
    await worker.start();
    const requestsBefore = ledger.entries.length;

    // Nothing calls the Worker now; only the object's alarm can run the rest of the fiber.
    await ledger.arrived(id, "after", { timeoutMs: 10_000 });
    const woke = ledger.entries.find((e) => e.fiber === id && e.what === "after");
    expect(woke?.at).toBeGreaterThanOrEqual(startedAt + sleepMs - 50);
    expect(ledger.entries.slice(requestsBefore).map((e) => `${e.fiber}/${e.what}`)).toEqual([`${id}/after`]);

    await expect.poll(() => record(id)).toMatchObject({ status: "completed", result: "rested" });
    expect(ledger.count(id, "before")).toBe(1);
  });
});
