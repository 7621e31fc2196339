/**
 * A worker that restarts with a persisted outbox (IdbStore over fake-indexeddb) while the edge
 * cannot be reached, after the edge took its fiber over. `settle` waits for the arbiter's first
 * answer a few seconds, then lets pages in (an event is buffered, answered once shipped), but no
 * runner claims the fiber before the arbiter answered: it may run at the edge. Before, it ran
 * here with no lease: it took the page's event and wrote past what the replica holds, and once
 * the link came back the mirror rebuilt the copy under the page's open stream (`fiber_not_found`).
 * A page's cancel meanwhile, of a fiber nobody took over, waits for that answer too, then is
 * carried out and answered once the end is shipped (it was refused with `fenced` at once); of a
 * fiber that had ended, it is answered with its status at once.
 */

import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { afterEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import type { FiberEvent, FiberRecord } from "../core/records";
import { type ReplicaReadOptions, readReplica } from "../edge/replica-read";
import { IdbStore } from "../store/idb-store";
import { createReplicatedRuntime } from "./browser-home";
import type { Shipment } from "./protocol";
import { edgeInProcess } from "./test-homes";

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

const ticket = defineFiber("ticket", {
  async run(ctx) {
    await ctx.step("a", () => 1);
    const n = await ctx.waitForEvent<number>("go");
    ctx.emit("got", { n });
    return ctx.step("b", () => n);
  },
});

/** A fiber that ends at once. */
const quick = defineFiber("quick", {
  async run(ctx) {
    return ctx.step("a", () => 1);
  },
});

/** An IdbStore whose `createFiber` takes 300 ms once `slow` is set (a restore's create, slowed). */
class SlowCreate extends IdbStore {
  slow = false;
  override async createFiber(...args: Parameters<IdbStore["createFiber"]>) {
    if (this.slow) await new Promise((resolve) => setTimeout(resolve, 300));
    return super.createFiber(...args);
  }
}

function worker(store: IdbStore, edge: ReturnType<typeof edgeInProcess>, link: { online: boolean }) {
  const { runtime, continuity } = createReplicatedRuntime({
    store,
    fibers: [ticket, quick],
    edge: {
      baseUrl: "http://edge.test",
      fibers: ["ticket", "quick"],
      deviceId: "d1",
      leaseMs: 600,
      mirrorWaitMs: 0,
      mirrorPollMs: 20,
    },
    pollIntervalMs: 10,
    onError: () => {},
  });
  const offline = () => Promise.reject(new TypeError("Failed to fetch"));
  const l = continuity.link as unknown as Record<string, unknown>;
  l.ship = (id: string, shipment: Shipment) => (link.online ? edge.arbiter.receive(id, shipment) : offline());
  l.readReplica = (id: string, after: number, options?: ReplicaReadOptions) =>
    link.online ? readReplica(edge.store, id, after, options?.cursor) : offline();
  l.sendEvent = (fiberId: string, name: string, payload?: unknown, eventId?: string) =>
    link.online
      ? edge.arbiter.accept({ fiberId, name, payload, at: Date.now(), ...(eventId ? { eventId } : {}) })
      : offline();
  l.cancel = () => offline();
  stops.push(async () => {
    continuity.stop();
    await runtime.close();
  });
  return { runtime, continuity };
}

/**
 * A browser that ran fiber "t" of `ticket` to its first wait (or, with `"quick"`, "q" to its
 * end), replicated, and stopped (every acknowledgement recorded): its database, the edge, and the
 * link (`online`) a restart goes on with.
 */
async function ranThenStopped(kind: "ticket" | "quick" = "ticket") {
  const indexedDB = new IDBFactory();
  const edge = edgeInProcess();
  const link = { online: true };
  const first = worker(new IdbStore({ name: "db", indexedDB }), edge, link);
  await first.continuity.start();
  const [id, status] = kind === "ticket" ? ["t", "waiting"] : ["q", "completed"];
  await first.runtime.start(kind, null, { id });
  await vi.waitFor(async () => expect((await edge.store.getFiber(id))?.status).toBe(status));
  await new Promise((resolve) => setTimeout(resolve, 500)); // acknowledgements recorded
  first.continuity.stop();
  await first.runtime.close();
  return { indexedDB, edge, link };
}

describe("a worker relaunched offline after the edge took its fiber over", () => {
  it("runs nothing before the arbiter answered, and a page's stream opened meanwhile reads on", async () => {
    const { indexedDB, edge, link } = await ranThenStopped();
    // The edge takes the fiber over; the browser restarts with no network.
    await edge.takeOver("t");
    link.online = false;
    const store = new SlowCreate({ name: "db", indexedDB });
    const second = worker(store, edge, link);
    await second.continuity.start(); // waits out the 5 s cap
    void second.runtime.recover();
    // A page sends an event (answered once shipped: it waits) and opens the fiber's stream,
    // which the host serves once `settle` answered.
    void second.continuity.sendEvent("t", "go", 5).catch(() => {});
    expect(await second.continuity.settle("t")).toBe("home");
    const seen: FiberEvent[] = [];
    let failure: unknown;
    const reading = (async () => {
      for await (const chunk of second.runtime.events("t")) seen.push(chunk);
    })().catch((error: unknown) => {
      failure = error;
    });
    // Nothing runs here meanwhile (longer than a claim's own wait for the first answer): the event
    // is not taken, nothing is written past the replica.
    await new Promise((resolve) => setTimeout(resolve, 6_500));
    expect((await store.readStream("t", 0)).map((c) => c.type)).not.toContain("got");
    expect((await store.getFiber("t"))?.status).toBe("waiting");
    // Nor does a later call wait out the first answer again.
    const asked = Date.now();
    expect(await second.continuity.settle("t")).toBe("home");
    expect(Date.now() - asked).toBeLessThan(1_000);
    // The link comes back: the fence arrives, the mirror follows the edge's copy.
    store.slow = true;
    link.online = true;
    await vi.waitFor(() => expect(second.continuity.mirror.synced("t")).toBe(true), { timeout: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(failure).toBeUndefined();
    const replica = await edge.store.readStream("t", 0);
    expect(seen.map((c) => [c.seq, c.type])).toEqual(replica.map((c) => [c.seq, c.type]));
    void reading;
  }, 60_000);
});

describe("a page's cancel in a worker restarted offline", () => {
  it("of a fiber that still runs here, is carried out and answered once the link is back, not refused with fenced", async () => {
    const { indexedDB, edge, link } = await ranThenStopped();
    // Restarted with no network; nobody took the fiber over.
    link.online = false;
    const second = worker(new IdbStore({ name: "db", indexedDB }), edge, link);
    await second.continuity.start();
    void second.runtime.recover();
    let outcome: unknown;
    const cancelling = second.continuity.cancel("t", "user").then(
      (status) => {
        outcome = status;
      },
      (error: unknown) => {
        outcome = error;
      },
    );
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    link.online = true;
    await cancelling;
    expect(outcome).toBe("cancelled");
    await vi.waitFor(async () => expect((await edge.store.getFiber("t"))?.status).toBe("cancelled"), {
      timeout: 5_000,
    });
  }, 30_000);

  it("of a fiber that ended before the restart, is answered with its status at once", async () => {
    const { indexedDB, edge, link } = await ranThenStopped("quick");
    link.online = false;
    const second = worker(new IdbStore({ name: "db", indexedDB }), edge, link);
    await second.continuity.start();
    // Nothing to run nor ship: no answer from the edge is needed.
    expect(await second.continuity.cancel("q", "user")).toBe("completed");
  }, 30_000);

  it("of a fiber the edge ended and collected meanwhile, is answered, not left waiting", async () => {
    const { indexedDB, edge, link } = await ranThenStopped();
    // The edge takes the fiber over, ends it and collects it (its retention is not the browser's).
    await edge.takeOver("t");
    const record = (await edge.store.getFiber("t")) as FiberRecord;
    await edge.store.commit([
      { fiberId: "t", generation: record.generation, fiber: { status: "cancelled" } },
    ]);
    expect(await edge.store.deleteFibers(["t"])).toEqual(["t"]);
    // The browser restarts with the link up: its heartbeat finds no replica (the shipper gives up).
    const second = worker(new IdbStore({ name: "db", indexedDB }), edge, link);
    await second.continuity.start();
    const settled = second.continuity.cancel("t", "user").then(
      () => "answered",
      () => "answered",
    );
    const late = new Promise((resolve) => setTimeout(resolve, 8_000, "still waiting"));
    expect(await Promise.race([settled, late])).toBe("answered");
  }, 30_000);
});
