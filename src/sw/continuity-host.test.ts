/**
 * The Service Worker host with continuity (issue #18), in Node against a real edge in workerd:
 * `createReplicatedRuntime` + `createServiceWorkerHost({ runtime, continuity })` over a fake
 * worker scope, a `MemoryStore` standing for IndexedDB (the Chromium e2e in e2e/continuity runs
 * the same wiring on IdbStore against `wrangler dev`). Covered: a worker restart after the edge
 * took a fiber over finds the fiber away, never runs it, and mirrors one contiguous stream; a
 * browser without the fiber restores it from the edge, and its page's `sendEvent` and `cancel`
 * reach the edge while the page's stream follows the edge live (the copy's inbox takes the event as
 * the edge consumed it); `awaitStart: false` starts steps
 * the edge has not seen. Every step the edge runs is counted in a ledger outside both homes.
 */

import { afterAll, describe, expect, it, vi } from "vitest";
import { type BrowserContinuity, createReplicatedRuntime } from "../continuity/browser-home";
import type { Runtime } from "../core/runtime";
import { readSse } from "../core/sse";
import type { ReplicaSnapshot } from "../edge/replica-routes";
import { Ledger } from "../edge/testing/ledger";
import { bundleWorker, TestWorker } from "../edge/testing/workerd";
import { decodeValue } from "../edge/value-codec";
import { MemoryStore } from "../store/memory-store";
import { createServiceWorkerHost, type ServiceWorkerHost } from "./host";
import type { ControlApi } from "./protocol";
import { continuityFibers, type Report } from "./testing/continuity-fibers";
import { connectPage, FakeEvent, FakeFetchEvent, FakeScope } from "./testing/fake-scope";

const LEASE_MS = 6_000;
const ledger = new Ledger();
const worker = new TestWorker({
  script: await bundleWorker("src/sw/testing/continuity-edge-worker.ts"),
  durableObjects: { FIBERS: "FiberObject" },
  bindings: { LEASE_MS: String(LEASE_MS) },
  serviceBindings: { LEDGER: ledger.binding },
});
afterAll(() => worker.dispose());

const EDGE = "http://edge.test/__fiberline";
const edgeFetch = (url: string, init: RequestInit) => {
  const { pathname, search } = new URL(url);
  return worker.fetch(pathname + search, init);
};

/** One worker start of a browser: its runtime and continuity over `store`, hosted on a fake scope. */
interface BrowserStart {
  runtime: Runtime;
  continuity: BrowserContinuity;
  host: ServiceWorkerHost;
  scope: FakeScope;
  /** Steps this start ran. */
  runs: Array<{ fiber: string; step: string; interrupted: boolean }>;
  /** What `edge.onAway` reported. */
  away: Array<{ fiberId: string; home: string | undefined }>;
  /** What `edge.onHome` reported: fibers that came home here. */
  home: string[];
  /** The worker stops (every tab closed, or the browser killed): nothing more runs or ships. */
  kill(): Promise<void>;
}

function startBrowser(
  store: MemoryStore,
  options: { hang?: string; fetch?: typeof edgeFetch; awaitStartOff?: boolean; comeHome?: boolean } = {},
): BrowserStart {
  const runs: BrowserStart["runs"] = [];
  const away: BrowserStart["away"] = [];
  const home: string[] = [];
  const report: Report = async (fiber, step, _attempt, interrupted) => {
    runs.push({ fiber, step, interrupted });
    if (step === options.hang) await new Promise(() => {});
    return `${step}@browser`;
  };
  const fibers = continuityFibers(report);
  const { runtime, continuity } = createReplicatedRuntime({
    store,
    fibers: Object.values(fibers),
    edge: {
      baseUrl: EDGE,
      fibers: options.awaitStartOff
        ? [{ name: "job", awaitStart: false }, "waiter"]
        : options.comeHome
          ? [
              "job",
              { name: "waiter", comeHome: "at-suspension" },
              { name: "pair", comeHome: "at-suspension" },
            ]
          : ["job", "waiter"],
      leaseMs: LEASE_MS,
      mirrorPollMs: 200,
      fetch: options.fetch ?? edgeFetch,
      onAway: (fiberId, where) => away.push({ fiberId, home: where?.home }),
      onHome: (fiberId) => home.push(fiberId),
    },
    pollIntervalMs: 100,
  });
  const scope = new FakeScope();
  const host = createServiceWorkerHost({ runtime, continuity, scope });
  scope.dispatch("activate", new FakeEvent());
  return {
    runtime,
    continuity,
    host,
    scope,
    runs,
    away,
    home,
    async kill() {
      host.dispose();
      await runtime.close();
    },
  };
}

/** The page's control channel to `start`'s host, over a MessageChannel as `connect()` makes it. */
async function pageApi(start: BrowserStart): Promise<ControlApi> {
  const page = await connectPage(start.scope);
  expect(page.reply.type).toBe("fiberline/ready");
  return page.remote as unknown as ControlApi;
}

/** Reads `id`'s stream from the page's route `{prefix}/fibers/:id/events` until `fiber.end`. */
async function readPageStream(
  start: BrowserStart,
  id: string,
  onEvent?: (seq: number, type: string) => void,
): Promise<Array<{ seq: number; type: string; data: unknown }>> {
  const event = new FakeFetchEvent(new Request(`https://app.test/__fiberline/fibers/${id}/events?after=0`));
  start.scope.dispatch("fetch", event);
  const response = await (event.response as Promise<Response>);
  expect(response.status).toBe(200);
  const out: Array<{ seq: number; type: string; data: unknown }> = [];
  for await (const message of readSse(response.body as ReadableStream<Uint8Array>)) {
    const chunk = { seq: Number(message.id), type: message.event, data: JSON.parse(message.data) as unknown };
    out.push(chunk);
    onEvent?.(chunk.seq, chunk.type);
    if (chunk.type === "fiber.end") break;
  }
  return out;
}

async function replica(id: string): Promise<ReplicaSnapshot> {
  const response = await worker.fetch(`/__fiberline/fibers/${id}/replica?after=0`);
  expect(response.status).toBe(200);
  return decodeValue(await response.text()) as ReplicaSnapshot;
}

async function edgeHolds(id: string): Promise<void> {
  await vi.waitFor(async () => expect((await replica(id)).record.home?.home).toBe("edge"), {
    timeout: LEASE_MS * 4,
    interval: 250,
  });
}

describe("the Service Worker host with continuity", () => {
  it("after the edge took a fiber over, a restarted worker never runs it and mirrors one contiguous stream", async () => {
    const store = new MemoryStore();
    const first = startBrowser(store, { hang: "b" });
    await first.runtime.start("job", null, { id: "restart" });
    await vi.waitFor(() => expect(first.runs.map((r) => r.step)).toEqual(["a", "b"]), { timeout: 20_000 });
    await first.kill();

    await ledger.arrived("restart", "b", { attempt: 2, timeoutMs: LEASE_MS * 5 });
    await vi.waitFor(async () => expect((await replica("restart")).record.status).toBe("completed"), {
      timeout: 20_000,
    });

    // The worker starts again on the same store, its in-memory outbox gone: the edge decides.
    const second = startBrowser(store);
    await second.host.recovery;
    const chunks = await readPageStream(second, "restart");
    const edge = await replica("restart");
    expect(chunks.map((c) => c.seq)).toEqual(edge.chunks.map((_, i) => i + 1));
    expect(chunks.map((c) => [c.type, c.data])).toEqual(edge.chunks.map((c) => [c.type, c.data]));
    expect(chunks.map((c) => c.type)).toEqual([
      "fiber.start",
      "progress",
      "fiber.recovered",
      "progress",
      "fiber.end",
    ]);
    expect(chunks[1]?.data).toEqual({ step: "a", value: "a@browser" });
    expect(chunks[3]?.data).toEqual({ step: "b", value: "b@edge-again" });
    // Step a ran once (here), step b once here and once, interrupted, at the edge; the restarted
    // worker ran nothing.
    expect(second.runs).toEqual([]);
    expect(second.away).toEqual([{ fiberId: "restart", home: "edge" }]);
    expect(ledger.entries.filter((e) => e.fiber === "restart").map((e) => [e.what, e.attempt])).toEqual([
      ["b", 2],
    ]);
    const local = await store.getFiber("restart");
    expect(local).toMatchObject({ status: "completed", result: "done", home: { home: "edge" } });
    await second.kill();
  }, 120_000);

  it("restores a fiber only the edge has, forwards the page's sendEvent and cancel to the edge, and follows it live", async () => {
    const first = startBrowser(new MemoryStore());
    await first.runtime.start("waiter", null, { id: "restore-go" });
    await first.runtime.start("waiter", null, { id: "restore-cancel" });
    await vi.waitFor(
      async () => {
        for (const id of ["restore-go", "restore-cancel"])
          expect((await replica(id)).chunks.map((c) => c.type)).toContain("waiting");
      },
      { timeout: 20_000 },
    );
    await first.kill();
    await edgeHolds("restore-go");
    await edgeHolds("restore-cancel");

    // A browser whose IndexedDB holds neither (wiped, or another device of the same user).
    const store = new MemoryStore();
    const second = startBrowser(store);
    const api = await pageApi(second);
    expect(await api.get("restore-go")).toMatchObject({ status: "waiting", home: { home: "edge" } });

    const seen: string[] = [];
    const reading = readPageStream(second, "restore-go", (_seq, type) => seen.push(type));
    await vi.waitFor(() => expect(seen).toContain("waiting"), { timeout: 10_000 });
    await api.sendEvent("restore-go", "go", { n: 7 });
    const chunks = await reading;
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i + 1));
    expect(chunks.map((c) => c.type)).toEqual((await replica("restore-go")).chunks.map((c) => c.type));
    expect(chunks.at(-2)).toMatchObject({ type: "got", data: { payload: { n: 7 }, value: "after@edge" } });
    expect(ledger.count("restore-go", "after")).toBe(1);
    expect(second.runs).toEqual([]);
    // The copy's inbox follows the replica's: the event the page sent reached it, consumed there.
    const edgeInbox = (await replica("restore-go")).inbox;
    expect(edgeInbox).toMatchObject([{ seq: 1, name: "go", payload: { n: 7 } }]);
    expect(edgeInbox[0]?.consumedBy).toBeDefined();
    await vi.waitFor(async () =>
      expect(await store.readInbox("restore-go")).toMatchObject([
        { seq: 1, name: "go", payload: { n: 7 }, consumedBy: edgeInbox[0]?.consumedBy },
      ]),
    );

    expect(await api.cancel("restore-cancel", "no longer needed")).toBe("cancelled");
    expect(await api.get("restore-cancel")).toMatchObject({ status: "cancelled" });
    expect(ledger.count("restore-cancel", "after")).toBe(0);

    // A fiber neither home has is still `fiber_not_found` for the page.
    expect(await api.get("nowhere")).toBeUndefined();
    await expect(api.sendEvent("nowhere", "go")).rejects.toMatchObject({ code: "fiber_not_found" });
    await second.kill();
  }, 120_000);

  it("an event sent while the link is cut reaches the edge once when the edge took the fiber over meanwhile", async () => {
    let cut = false;
    const link = (url: string, init: RequestInit) =>
      cut ? Promise.reject(new TypeError("Failed to fetch")) : edgeFetch(url, init);
    const browser = startBrowser(new MemoryStore(), { fetch: link });
    const api = await pageApi(browser);
    await browser.runtime.start("waiter", null, { id: "cut-send" });
    await vi.waitFor(
      async () => expect((await replica("cut-send")).chunks.map((c) => c.type)).toContain("waiting"),
      {
        timeout: 20_000,
      },
    );
    // The link between the homes is cut past the lease: the edge takes the fiber over.
    cut = true;
    await edgeHolds("cut-send");
    // The page sends its event: buffered here, it cannot ship; once the link heals the shipment
    // is fenced, the copy here is dropped, and the event goes to the edge instead.
    const sending = api.sendEvent("cut-send", "go", { n: 3 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    cut = false;
    await sending;
    await vi.waitFor(async () => expect((await replica("cut-send")).record.status).toBe("completed"), {
      timeout: 20_000,
    });
    const edge = await replica("cut-send");
    expect(edge.inbox.filter((e) => e.name === "go").map((e) => e.payload)).toEqual([{ n: 3 }]);
    expect(edge.chunks.find((c) => c.type === "got")?.data).toEqual({
      payload: { n: 3 },
      value: "after@edge",
    });
    expect(ledger.count("cut-send", "after")).toBe(1);
    expect(browser.runs).toEqual([]);
    await browser.kill();
  }, 120_000);

  it("an event sent to the edge while this browser holds the fiber is pushed here and consumed once", async () => {
    const browser = startBrowser(new MemoryStore());
    await browser.runtime.start("waiter", null, { id: "pushed" });
    await vi.waitFor(
      async () => expect((await replica("pushed")).chunks.map((c) => c.type)).toContain("waiting"),
      {
        timeout: 20_000,
      },
    );
    // A webhook reaches the edge, which holds no lease on the fiber: the arbiter pushes it here.
    const webhook = await worker.fetch("/__fiberline/fibers/pushed/events", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "go", payload: { n: 5 } }),
    });
    expect(webhook.status).toBe(202);
    await vi.waitFor(async () => expect((await replica("pushed")).record.status).toBe("completed"), {
      timeout: 20_000,
    });
    expect(browser.runs).toEqual([{ fiber: "pushed", step: "after", interrupted: false }]);
    expect(ledger.count("pushed")).toBe(0);
    const edge = await replica("pushed");
    expect(edge.inbox.filter((e) => e.name === "go")).toHaveLength(1);
    expect(edge.chunks.find((c) => c.type === "got")?.data).toEqual({
      payload: { n: 5 },
      value: "after@browser",
    });
    await browser.kill();
  }, 60_000);

  it("a fiber the edge took over comes home at its wait when its kind asks for it, and runs the rest here", async () => {
    const first = startBrowser(new MemoryStore());
    await first.runtime.start("waiter", null, { id: "come-home" });
    await vi.waitFor(
      async () => expect((await replica("come-home")).chunks.map((c) => c.type)).toContain("waiting"),
      { timeout: 20_000 },
    );
    await first.kill();
    await edgeHolds("come-home");
    // The edge recovered it and it waits there again (suspended: nothing of it runs).
    await vi.waitFor(
      async () => {
        const at = await replica("come-home");
        expect(at.record.status).toBe("waiting");
        expect(at.record.owner).toBeUndefined();
      },
      { timeout: 20_000 },
    );
    const epochAtEdge = (await replica("come-home")).record.home?.epoch ?? 0;

    // A browser of the same user (here one whose IndexedDB lacks it) reads it: its mirror finds
    // it suspended at the edge, and its kind comes home.
    const store = new MemoryStore();
    const second = startBrowser(store, { comeHome: true });
    const api = await pageApi(second);
    const seen: string[] = [];
    const reading = readPageStream(second, "come-home", (_seq, type) => seen.push(type));
    await vi.waitFor(() => expect(second.home).toEqual(["come-home"]), { timeout: 20_000 });
    const back = await replica("come-home");
    expect(back.record.home).toMatchObject({ epoch: epochAtEdge + 1, formerHome: "edge" });
    expect(back.record.home?.home).toMatch(/^browser:/);
    expect(await store.getFiber("come-home")).toMatchObject({
      status: "waiting",
      home: { home: back.record.home?.home, epoch: epochAtEdge + 1 },
    });

    // Its event is this home's now: the step after it runs here, not at the edge.
    await api.sendEvent("come-home", "go", { n: 11 });
    const chunks = await reading;
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i + 1));
    expect(chunks.at(-2)).toMatchObject({
      type: "got",
      data: { payload: { n: 11 }, value: "after@browser" },
    });
    expect(second.runs).toEqual([{ fiber: "come-home", step: "after", interrupted: false }]);
    expect(ledger.count("come-home", "after")).toBe(0);
    // The replica got the rest of it from here, shipped under the new epoch: the same stream.
    await vi.waitFor(async () => expect((await replica("come-home")).record.status).toBe("completed"), {
      timeout: 20_000,
    });
    const edge = await replica("come-home");
    expect(chunks.map((c) => [c.seq, c.type, c.data])).toEqual(
      edge.chunks.map((c) => [c.seq, c.type, c.data ?? null]),
    );
    expect(edge.inbox.filter((e) => e.name === "go").map((e) => e.payload)).toEqual([{ n: 11 }]);
    await second.kill();
  }, 120_000);

  it("an event dropped by a fence and sent on after the fiber came home is not taken for one buffered since", async () => {
    // The link can be cut, and the event this browser sends on to the edge after a fence held.
    let cut = false;
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let holding = false;
    const sentOn: string[] = [];
    const link = async (url: string, init: RequestInit) => {
      if (cut) throw new TypeError("Failed to fetch");
      if (holding && url.endsWith("/fibers/dropped/events") && init.method === "POST") {
        sentOn.push(String(init.body));
        await held;
      }
      return edgeFetch(url, init);
    };
    const browser = startBrowser(new MemoryStore(), { fetch: link, comeHome: true });
    const api = await pageApi(browser);
    await browser.runtime.start("pair", null, { id: "dropped" });
    await vi.waitFor(
      async () => expect((await replica("dropped")).chunks.map((c) => c.type)).toContain("waiting"),
      { timeout: 20_000 },
    );
    // Cut past the lease: the edge takes the fiber over, and the page's first event is buffered
    // here (inbox seq 1) where it cannot ship.
    cut = true;
    await edgeHolds("dropped");
    const first = api.sendEvent("dropped", "go", { n: 1 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    // The link heals: the shipment is fenced, the copy here is dropped, and the event is sent on
    // to the edge under the id it had here (held on the way). Meanwhile the fiber, waiting at
    // the edge with nothing in its inbox, comes home, and its copy's inbox is rebuilt empty.
    holding = true;
    cut = false;
    await vi.waitFor(() => expect(browser.home).toEqual(["dropped"]), { timeout: 30_000 });
    expect(sentOn).toHaveLength(1);
    // The page's second event is buffered here at inbox seq 1 again, and shipped.
    await api.sendEvent("dropped", "go", { n: 2 });
    await vi.waitFor(
      async () =>
        expect((await replica("dropped")).chunks.filter((c) => c.type === "got").map((c) => c.data)).toEqual([
          { payload: { n: 2 } },
        ]),
      { timeout: 20_000 },
    );
    // The first event arrives now: it is not the second one, so it reaches the fiber too.
    release();
    await first;
    await vi.waitFor(async () => expect((await replica("dropped")).record.status).toBe("completed"), {
      timeout: 20_000,
    });
    const edge = await replica("dropped");
    expect(edge.chunks.filter((c) => c.type === "got").map((c) => c.data)).toEqual([
      { payload: { n: 2 } },
      { payload: { n: 1 } },
    ]);
    expect(edge.inbox.filter((e) => e.name === "go").map((e) => e.payload)).toEqual([{ n: 2 }, { n: 1 }]);
    await browser.kill();
  }, 120_000);

  it("starts a step the edge has not seen only for a kind with awaitStart: false", async () => {
    const offline = async (): Promise<Response> => {
      throw new TypeError("Failed to fetch");
    };
    const strict = startBrowser(new MemoryStore(), { fetch: offline });
    await strict.runtime.start("job", null, { id: "strict" });
    const relaxed = startBrowser(new MemoryStore(), { fetch: offline, awaitStartOff: true });
    await relaxed.runtime.start("job", null, { id: "relaxed" });
    await vi.waitFor(() => expect(relaxed.runs.map((r) => r.step)).toEqual(["a", "b"]), { timeout: 5_000 });
    // Rule A: the same steps under the default wait for the edge, which is unreachable.
    expect(strict.runs).toEqual([]);
    await strict.kill();
    await relaxed.kill();
  }, 30_000);

  it("has the outbox take in, at activate, the fibers an older version created after it loaded", async () => {
    const { runtime, continuity } = createReplicatedRuntime({
      store: new MemoryStore(),
      fibers: Object.values(continuityFibers(async () => "ok")),
      edge: { baseUrl: EDGE, fibers: ["job"], leaseMs: LEASE_MS, fetch: edgeFetch },
    });
    const activated = vi.spyOn(continuity, "activated");
    const scope = new FakeScope();
    const host = createServiceWorkerHost({ runtime, continuity, scope });
    const event = new FakeEvent();
    scope.dispatch("activate", event);
    expect(activated).toHaveBeenCalledTimes(1);
    // The activation's event waits for it: the old version's backlog ships from here.
    expect(event.lifetime.length).toBeGreaterThanOrEqual(2);
    await Promise.all(event.lifetime);
    host.dispose();
    await runtime.close();
  });
});
