/**
 * `BrowserContinuity.sendEvent` and `cancel`, the Service Worker host's routes for a page's
 * event and cancel, in one process: a runtime from `createReplicatedRuntime` on a `MemoryStore`,
 * its edge link answered by an `Arbiter` in memory through a gate the test opens and closes.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import { MemoryStore } from "../store/memory-store";
import { Arbiter } from "./arbiter";
import { type BrowserContinuity, createReplicatedRuntime } from "./browser-home";
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
  const gate = { open: true, held: [] as Array<() => void> };
  const { runtime, continuity } = createReplicatedRuntime({
    store: local,
    fibers: [waiter, plain],
    edge: { baseUrl: "http://edge.test", fibers: ["waiter"], deviceId: "d1", leaseMs: 60_000 },
    pollIntervalMs: 10,
    onError: () => {},
  });
  const link = continuity.link as unknown as Record<string, unknown>;
  link.ship = async (id: string, shipment: Shipment) => {
    if (!gate.open) await new Promise<void>((resolve) => gate.held.push(resolve));
    return arbiter.receive(id, shipment);
  };
  stops.push(async () => {
    continuity.stop();
    await runtime.close();
  });
  return { runtime, continuity, edge, local, gate };
}

function answered(continuity: BrowserContinuity, payload: number) {
  let done = false;
  const sending = continuity.sendEvent("w1", "go", payload).then(() => {
    done = true;
  });
  return { sending, done: () => done };
}

describe("BrowserContinuity's sendEvent and cancel", () => {
  it("answers a page once its event is shipped even when the fiber was missing when it settled", async () => {
    const { runtime, continuity, edge, gate } = host();
    await continuity.start();
    await runtime.start("waiter", null, { id: "w1" });
    await vi.waitFor(async () => expect((await edge.getFiber("w1"))?.status).toBe("waiting"));
    // The page's settle ran before the fiber was started here (another page started it).
    vi.spyOn(continuity, "settle").mockResolvedValue("missing");
    gate.open = false;
    const send = answered(continuity, 7);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Buffered here, not shipped: a fence now would drop it, so the page is not answered yet.
    expect(send.done()).toBe(false);
    gate.open = true;
    for (const release of gate.held.splice(0)) release();
    await send.sending;
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
    const { runtime, continuity, edge, gate } = host();
    await continuity.start();
    await runtime.start("waiter", null, { id: "w2" });
    await vi.waitFor(async () => expect((await edge.getFiber("w2"))?.status).toBe("waiting"));
    vi.spyOn(continuity, "settle").mockResolvedValue("missing");
    gate.open = false;
    let answered = false;
    const cancelling = continuity.cancel("w2", "stop").then((status) => {
      answered = true;
      return status;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Cancelled here, its end not shipped: the page is not answered yet.
    expect(answered).toBe(false);
    gate.open = true;
    for (const release of gate.held.splice(0)) release();
    expect(await cancelling).toBe("cancelled");
    expect((await edge.getFiber("w2"))?.status).toBe("cancelled");
  });
});
