/**
 * `BrowserContinuity.sendEvent` and `cancel`, the Service Worker host's routes for a page's
 * event and cancel, in one process: a runtime from `createReplicatedRuntime` on a `MemoryStore`,
 * its edge link answered by an `Arbiter` in memory through a gate the test opens and closes.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import { MemoryStore } from "../store/memory-store";
import { Arbiter } from "./arbiter";
import { createReplicatedRuntime } from "./browser-home";
import type { Shipment } from "./protocol";

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

const waiter = defineFiber("waiter", {
  async run(ctx) {
    return ctx.waitForEvent<number>("go");
  },
});

/** A kind this browser does not replicate. */
const plain = defineFiber("plain", {
  async run(ctx) {
    return ctx.waitForEvent<number>("go");
  },
});

function host() {
  const edge = new MemoryStore();
  const local = new MemoryStore();
  const arbiter = new Arbiter({ store: edge, leaseMs: 60_000 });
  let open = true;
  const held: Array<() => void> = [];
  const { runtime, continuity } = createReplicatedRuntime({
    store: local,
    fibers: [waiter, plain],
    edge: { baseUrl: "http://edge.test", fibers: ["waiter"], deviceId: "d1", leaseMs: 60_000 },
    pollIntervalMs: 10,
    onError: () => {},
  });
  const link = continuity.link as unknown as Record<string, unknown>;
  link.ship = async (id: string, shipment: Shipment) => {
    if (!open) await new Promise<void>((resolve) => held.push(resolve));
    return arbiter.receive(id, shipment);
  };
  stops.push(async () => {
    continuity.stop();
    await runtime.close();
  });
  return {
    runtime,
    continuity,
    edge,
    local,
    /**
     * Starts waiter `id`, waits until the edge holds it waiting, then holds every shipment; the
     * page's `settle` answers "missing" (it ran before another page started the fiber here).
     */
    async startedWhileSettledMissing(id: string) {
      await continuity.start();
      await runtime.start("waiter", null, { id });
      await vi.waitFor(async () => expect((await edge.getFiber(id))?.status).toBe("waiting"));
      vi.spyOn(continuity, "settle").mockResolvedValue("missing");
      open = false;
    },
    /** Lets the held shipments, and every later one, through. */
    ship() {
      open = true;
      for (const release of held.splice(0)) release();
    },
  };
}

/** `work`, and whether it has settled yet. */
function tracked<T>(work: Promise<T>): { work: Promise<T>; done: () => boolean } {
  let done = false;
  const settled = work.finally(() => {
    done = true;
  });
  return { work: settled, done: () => done };
}

describe("BrowserContinuity's sendEvent and cancel", () => {
  it("answers a page once its event is shipped even when the fiber was missing when it settled", async () => {
    const { runtime, continuity, edge, startedWhileSettledMissing, ship } = host();
    await startedWhileSettledMissing("w1");
    const send = tracked(continuity.sendEvent("w1", "go", 7));
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Buffered here, not shipped: a fence now would drop it, so the page is not answered yet.
    expect(send.done()).toBe(false);
    ship();
    await send.work;
    expect((await edge.readInbox("w1")).map((e) => e.payload)).toEqual([7]);
    expect(await runtime.result("w1")).toBe(7);
  });

  it("stores a page's event to a fiber of a kind it does not replicate without an id", async () => {
    const { runtime, continuity, local } = host();
    await continuity.start();
    await runtime.start("plain", null, { id: "l1" });
    await continuity.sendEvent("l1", "go", 5);
    expect(await runtime.result("l1")).toBe(5);
    expect((await local.readInbox("l1")).map((e) => e.eventId)).toEqual([undefined]);
  });

  it("answers a page's cancel once the end is shipped even when the fiber was missing when it settled", async () => {
    const { continuity, edge, startedWhileSettledMissing, ship } = host();
    await startedWhileSettledMissing("w2");
    const cancel = tracked(continuity.cancel("w2", "stop"));
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Cancelled here, its end not shipped: the page is not answered yet.
    expect(cancel.done()).toBe(false);
    ship();
    expect(await cancel.work).toBe("cancelled");
    expect((await edge.getFiber("w2"))?.status).toBe("cancelled");
  });
});
