/**
 * Continuity end to end in one process: a browser runtime on a `ReplicatingStore` over a
 * `MemoryStore`, a `Shipper` whose link the test holds, cuts and heals, and an `Arbiter` with an
 * edge runtime on another `MemoryStore`. Checks that the replica is the browser's history, Rules
 * A and B, and the handoff out: the lease lapses, the edge runs the cut step again with
 * `interrupted: true` and the same key, and the browser is fenced.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { CommitQueue } from "../core/commit-queue";
import { defineFiber, type FiberDefinition } from "../core/define";
import type { FiberEvent } from "../core/records";
import { createRuntime, type Runtime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { fiber } from "../store/store-contract";
import { Arbiter } from "./arbiter";
import { ArbitratedStore } from "./arbitrated-store";
import { Outbox } from "./outbox";
import { browserHome, EDGE_HOME, homeEventId, type Shipment, type ShipmentAnswer } from "./protocol";
import { ReplicatingStore } from "./replicating-store";
import { bufferedEventId, sendShippedEvent } from "./send-event";
import { Shipper } from "./shipper";

const HOME = browserHome("d1");

interface Held {
  fiberId: string;
  shipment: Shipment;
  release(): void;
}

/** A browser and an edge home joined by a link the test controls. */
function homes(fibers: FiberDefinition[], options: { hold?: boolean } = {}) {
  let arbiterNow = Date.now();
  const local = new MemoryStore();
  const outbox = new Outbox();
  const store = new ReplicatingStore(local, { outbox, home: HOME, replicates: () => true });
  const browser = createRuntime({ store, fibers, replication: outbox, pollIntervalMs: 10 });
  const edgeStore = new MemoryStore();
  const arbiter = new Arbiter({ store: edgeStore, clock: () => arbiterNow, leaseMs: 30_000 });
  const link = { cut: false, hold: options.hold ?? false, held: [] as Held[] };
  const send = (fiberId: string, shipment: Shipment): Promise<ShipmentAnswer> => {
    if (link.cut) return Promise.reject(new Error("offline"));
    if (!link.hold) return arbiter.receive(fiberId, shipment);
    return new Promise((resolve, reject) => {
      link.held.push({
        fiberId,
        shipment,
        release: () => arbiter.receive(fiberId, shipment).then(resolve, reject),
      });
    });
  };
  const shipper = new Shipper({ outbox, home: HOME, send, retry: { initialMs: 5, maxMs: 20 } });
  const edge = createRuntime({ store: new ArbitratedStore(edgeStore), fibers, pollIntervalMs: 10 });
  opened.push(browser, edge);
  stoppers.push(() => shipper.stop());
  return {
    local,
    store,
    outbox,
    browser,
    edge,
    edgeStore,
    arbiter,
    link,
    shipper,
    advanceArbiter(ms: number) {
      arbiterNow += ms;
    },
    releaseAll() {
      for (const h of link.held.splice(0)) h.release();
    },
  };
}

const opened: Runtime[] = [];
const stoppers: Array<() => void> = [];
afterEach(async () => {
  for (const stop of stoppers.splice(0)) stop();
  await Promise.all(opened.splice(0).map((r) => r.close()));
});

async function collect(rt: Runtime, id: string, into: FiberEvent[] = []): Promise<FiberEvent[]> {
  for await (const ev of rt.events(id)) into.push(ev);
  return into;
}

describe("continuity in one process", () => {
  it("ships a fiber's whole history, in order, into a replica equal to the browser's", async () => {
    const chat = defineFiber("chat", {
      async run(ctx) {
        const a = await ctx.step("a", () => 1);
        ctx.emit("note", { a });
        await ctx.stash({ a });
        const go = await ctx.waitForEvent<{ n: number }>("go");
        const b = await ctx.step("b", async ({ emit }) => {
          emit("partial", { n: go.n });
          return go.n + a;
        });
        return { b };
      },
    });
    const h = homes([chat]);
    const fiber = await h.browser.start(chat, null, { id: "c1" });
    await vi.waitFor(async () => expect((await h.local.getFiber("c1"))?.status).toBe("waiting"));
    // Answered once the event is shipped: a change of home cannot lose it from here on.
    await sendShippedEvent({ runtime: h.browser, store: h.store, outbox: h.outbox }, fiber.id, "go", {
      n: 41,
    });
    expect((await h.edgeStore.readInbox("c1")).map((e) => e.payload)).toEqual([{ n: 41 }]);
    expect(await h.browser.result(fiber)).toEqual({ b: 42 });
    await vi.waitFor(() => expect(h.outbox.settled("c1")).toBe(true));

    const [mine, replica] = [h.local, h.edgeStore];
    expect(await replica.readJournal("c1")).toEqual(await mine.readJournal("c1"));
    expect(await replica.readStream("c1", 0)).toEqual(await mine.readStream("c1", 0));
    // The replica keeps each event under the id it was shipped with (a send-on finds it by it).
    expect(await replica.readInbox("c1")).toEqual(
      (await mine.readInbox("c1")).map((e) => ({ ...e, eventId: homeEventId(HOME, 1, e.seq) })),
    );
    expect(await replica.readSnapshot("c1")).toEqual(await mine.readSnapshot("c1"));
    const [a, b] = [await mine.getFiber("c1"), await replica.getFiber("c1")];
    expect(b).toMatchObject({ status: "completed", result: { b: 42 }, streamHead: a?.streamHead });
    expect(b?.home?.appliedPos).toBe(h.outbox.acked("c1"));
  });

  it("runs a step's function only once its start is acknowledged (Rule A)", async () => {
    const calls: string[] = [];
    const one = defineFiber("one", {
      async run(ctx) {
        return ctx.step("effect", ({ idempotencyKey }) => {
          calls.push(idempotencyKey);
          return "done";
        });
      },
    });
    const h = homes([one], { hold: true });
    await h.browser.start(one, null, { id: "o1" });
    await vi.waitFor(async () =>
      expect((await h.local.readJournal("o1")).map((e) => e.status)).toEqual(["started"]),
    );
    // The start is durable here, but the arbiter has not seen it: the function must wait.
    expect(calls).toEqual([]);
    while (calls.length === 0) {
      h.releaseAll();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(calls).toEqual(["o1:effect#1"]);
    expect((await h.edgeStore.readJournal("o1"))[0]).toMatchObject({ status: "started", attempt: 1 });
  });

  it("shows readers only shipped chunks (Rule B)", async () => {
    const talker = defineFiber("talker", {
      async run(ctx) {
        ctx.emit("said", { text: "hi" });
        await ctx.waitForEvent("bye");
      },
    });
    const h = homes([talker], { hold: true });
    await h.browser.start(talker, null, { id: "t1" });
    const seen: FiberEvent[] = [];
    void collect(h.browser, "t1", seen);
    await vi.waitFor(async () => expect((await h.local.readStream("t1", 0)).length).toBe(2));
    // Durable here, unshipped: give the reader several polls to (wrongly) find it.
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(seen).toEqual([]);
    while (seen.length < 2) {
      h.releaseAll();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(seen.map((e) => e.type)).toEqual(["fiber.start", "said"]);
  });

  it("hands a fiber cut off mid-step to the edge, which runs the step again interrupted", async () => {
    const runs: Array<{ where: string; key: string; interrupted: boolean }> = [];
    let finishBrowserStep!: () => void;
    const browserStepDone = new Promise<void>((resolve) => {
      finishBrowserStep = resolve;
    });
    let where = "browser";
    const job = defineFiber("job", {
      async run(ctx) {
        const value = await ctx.step("work", async ({ idempotencyKey, interrupted }) => {
          runs.push({ where, key: idempotencyKey, interrupted });
          if (where === "browser") await browserStepDone;
          return where;
        });
        ctx.emit("done", { value });
        return value;
      },
    });
    const h = homes([job]);
    await h.browser.start(job, null, { id: "j1" });
    await vi.waitFor(() => expect(runs.length).toBe(1));
    // The browser goes offline with the step running; its completion never reaches the edge.
    h.link.cut = true;
    finishBrowserStep();
    await vi.waitFor(async () => expect((await h.local.getFiber("j1"))?.status).toBe("completed"));

    h.advanceArbiter(30_000);
    // Past the lease, the edge runtime still leaves the fiber alone until the arbiter hands it over.
    await h.edge.recover();
    expect((await h.edgeStore.getFiber("j1"))?.owner).toBe(HOME);
    expect(await h.arbiter.takeOverLapsed()).toEqual(["j1"]);
    where = "edge";
    await h.edge.recover();
    expect(await h.edge.result("j1")).toBe("edge");
    expect(runs).toEqual([
      { where: "browser", key: "j1:work#1", interrupted: false },
      { where: "edge", key: "j1:work#1", interrupted: true },
    ]);
    const stream = await h.edgeStore.readStream("j1", 0);
    expect(stream.map((c) => c.seq)).toEqual(stream.map((_, i) => i + 1));
    expect(stream.map((c) => c.type)).toEqual(["fiber.start", "fiber.recovered", "done", "fiber.end"]);

    // Back online, the browser learns it was fenced and lets its unshipped tail go.
    h.link.cut = false;
    h.shipper.kick("j1");
    await vi.waitFor(() =>
      expect(h.outbox.where("j1")).toEqual({ status: "away", epoch: 2, home: EDGE_HOME }),
    );
    expect(h.outbox.hasPending("j1")).toBe(false);
    expect(h.outbox.mayWrite("j1", Date.now())).toBe(false);
  });
});

describe("events buffered here when the fiber moves away", () => {
  it("reject each sender with the id its own event had here, to send it on under", async () => {
    const pair = defineFiber("pair", {
      async run(ctx) {
        const a = await ctx.waitForEvent<number>("go");
        const b = await ctx.waitForEvent<number>("go");
        return a + b;
      },
    });
    const h = homes([pair]);
    await h.browser.start(pair, null, { id: "p1" });
    await vi.waitFor(async () => expect((await h.edgeStore.getFiber("p1"))?.status).toBe("waiting"));
    // Two pages send while the link is cut: both events are buffered here, neither ships.
    h.link.cut = true;
    const parts = { runtime: h.browser, store: h.store, outbox: h.outbox };
    const sends = [1, 2].map((n) => sendShippedEvent(parts, "p1", "go", n).then(() => "", bufferedEventId));
    await vi.waitFor(async () => expect(await h.local.readInbox("p1")).toHaveLength(2));
    // The edge takes the fiber over; back online, one fence answers both waits.
    h.advanceArbiter(30_000);
    expect(await h.arbiter.takeOverLapsed()).toEqual(["p1"]);
    h.link.cut = false;
    h.shipper.kick("p1");
    expect(await Promise.all(sends)).toEqual([homeEventId(HOME, 1, 1), homeEventId(HOME, 1, 2)]);
  });
});

describe("a send's own event", () => {
  it("is told apart from any other event buffered for the fiber meanwhile", async () => {
    const pair = defineFiber("pair", {
      async run(ctx) {
        return (await ctx.waitForEvent<number>("go")) + (await ctx.waitForEvent<number>("go"));
      },
    });
    const h = homes([pair], { hold: true });
    await h.browser.start(pair, null, { id: "p2" });
    await vi.waitFor(async () => expect((await h.local.getFiber("p2"))?.status).toBe("waiting"));
    // Beside the send: an event the arbiter pushed here, and one the worker's own code sent.
    const buffered = await h.store.bufferedDuring(async (token) => {
      await h.browser.sendEvent("p2", "go", 1, { eventId: token });
      await Promise.all([
        h.browser.sendEvent("p2", "go", 2, { eventId: "edge:1" }),
        h.browser.sendEvent("p2", "go", 3),
      ]);
    });
    const inbox = await h.local.readInbox("p2");
    const mine = inbox.find((e) => e.payload === 1);
    expect(buffered?.eventId).toBe(homeEventId(HOME, 1, mine?.seq ?? 0));
    // The token is no id: the event is stored as a page's event is.
    expect(mine?.eventId).toBeUndefined();
    expect(inbox).toHaveLength(3);
    h.releaseAll();
  });
});

describe("Rule C and a step in progress", () => {
  it("stops a run whose write comes after the lease's end with lease_lapsed, not as a move", async () => {
    // The write can come before the outbox's own lapse timer fires: the store refuses it, and
    // before, the runner took that for another home's fence and waited for its sweep.
    let now = 1_000;
    const outbox = new Outbox();
    const store = new ReplicatingStore(new MemoryStore(), {
      outbox,
      home: HOME,
      replicates: () => true,
      clock: () => now,
    });
    for (const id of ["lapsing", "moved"]) {
      await store.createFiber(fiber(id, { generation: 1 }), []);
      outbox.acknowledge(id, 1, 2_000);
    }
    outbox.fence("moved", 2, EDGE_HOME, 1);
    now = 2_500;
    const queue = new CommitQueue(store, () => {});
    const write = (id: string) => queue.write({ fiberId: id, generation: 1, fiber: { updatedAt: now } });
    await expect(write("lapsing")).rejects.toMatchObject({ code: "lease_lapsed" });
    await expect(write("moved")).rejects.toMatchObject({ code: "fenced" });
  });

  it("aborts the signal of a step still running when the browser's lease lapses, before the edge can take over; runs it again soon once the edge answers", async () => {
    let aborted: unknown;
    let abortedAt = 0;
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step("tool", async ({ signal, interrupted }) => {
          if (interrupted) return "done";
          await new Promise<void>((resolve) => {
            signal.addEventListener("abort", () => resolve(), { once: true });
          });
          aborted = signal.reason;
          abortedAt = Date.now();
          throw signal.reason;
        });
      },
    });
    const outbox = new Outbox();
    const browser = createRuntime({
      store: new ReplicatingStore(new MemoryStore(), { outbox, home: HOME, replicates: () => true }),
      fibers: [job],
      replication: outbox,
      pollIntervalMs: 10,
    });
    const arbiter = new Arbiter({ store: new MemoryStore(), leaseMs: 1_500 });
    let cut = false;
    let lastAnswered = 0;
    const shipper = new Shipper({
      outbox,
      home: HOME,
      heartbeatMs: 100,
      retry: { initialMs: 20, maxMs: 50 },
      send: async (id, shipment) => {
        if (cut) throw new Error("offline");
        const answer = await arbiter.receive(id, shipment);
        lastAnswered = Date.now();
        return answer;
      },
    });
    opened.push(browser);
    stoppers.push(() => shipper.stop());
    shipper.start();
    await browser.start(job, null, { id: "lapsing" });
    await vi.waitFor(() => expect(outbox.acked("lapsing")).toBeGreaterThan(1)); // the step's start shipped
    cut = true;
    await vi.waitFor(() => expect(aborted).toMatchObject({ code: "lease_lapsed" }), { timeout: 5_000 });
    // The arbiter's lease runs 1.5 s from the last shipment it answered: the browser stopped first.
    expect(abortedAt).toBeLessThan(lastAnswered + 1_500);
    // Back before the arbiter's lease ended: the fiber runs here again within a few seconds, not
    // after the runtime's own 15 s lease and a sweep.
    cut = false;
    const result = browser.result("lapsing");
    await vi.waitFor(() => expect(outbox.leased("lapsing", Date.now())).toBe(true));
    expect(await Promise.race([result, new Promise((resolve) => setTimeout(resolve, 8_000, "late"))])).toBe(
      "done",
    );
  });
});
