/**
 * A cancel that reaches the edge (`POST .../cancel`, workerd) while a browser (a runtime in this
 * Node process) runs the fiber: the arbiter keeps it and sends it in the answer to the browser's
 * next shipment (a heartbeat here); the browser cancels the fiber and ships its end, and the route
 * answers `cancelled`. A browser that is gone never hears it: the route answers `202 forwarded`
 * and the takeover, once the lease lapses, ends the fiber as `cancelled`; the edge never runs it.
 * Effects are counted outside both homes (the edge's through a ledger binding).
 */

import { afterAll, describe, expect, it, vi } from "vitest";
import { cancelShipped } from "../continuity/cancel";
import { EDGE_HOME } from "../continuity/protocol";
import { NODE_HOME, nodeBrowserHome, PREFIX, replicaOf } from "./testing/browser-home";
import { Ledger } from "./testing/ledger";
import { bundleWorker, TestWorker } from "./testing/workerd";

const ledger = new Ledger();
const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/continuity-worker.ts"),
  durableObjects: { FIBERS: "FiberObject" },
  // Long enough that answers arrive before Rule C's deadline on a loaded machine (see continuity.test.ts).
  bindings: { LEASE_MS: "10000", CANCEL_WAIT_MS: "4000" },
  serviceBindings: { LEDGER: ledger.binding },
});
afterAll(() => worker.dispose());

/** A browser home in this process whose shipper carries out the cancels the arbiter forwards. */
function browserHomeOf() {
  const cancels: string[] = [];
  const home = nodeBrowserHome(worker, ({ runtime }) => ({
    onCancel: (fiberId, reason) => {
      cancels.push(reason);
      return runtime.cancel(fiberId, reason);
    },
  }));
  return { ...home, cancels };
}

const replicaNow = (id: string) => replicaOf(worker, id);

async function cancelAtEdge(id: string, reason: string): Promise<{ http: number; body: unknown }> {
  const response = await worker.fetch(`${PREFIX}/fibers/${id}/cancel`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ reason }),
  });
  return { http: response.status, body: await response.json() };
}

const until = (check: () => Promise<void> | void, timeout = 30_000) =>
  vi.waitFor(check, { timeout, interval: 100 });

describe("a cancel that reaches the edge while a browser runs the fiber", () => {
  it("is carried out by the browser, and the route answers cancelled once the end is shipped", async () => {
    const browser = browserHomeOf();
    await browser.runtime.start("approval", null, { id: "cancel-1" });
    await until(async () => expect((await replicaNow("cancel-1")).record.status).toBe("waiting"));

    expect(await cancelAtEdge("cancel-1", "stopped from another device")).toEqual({
      http: 200,
      body: { status: "cancelled" },
    });
    expect(browser.cancels[0]).toBe("stopped from another device");
    expect((await browser.runtime.get("cancel-1"))?.status).toBe("cancelled");
    const replica = await replicaNow("cancel-1");
    expect(replica.record).toMatchObject({
      status: "cancelled",
      error: { code: "cancelled", message: "stopped from another device" },
    });
    expect(replica.record.home).toMatchObject({ home: NODE_HOME, epoch: 1 });
    expect(replica.record.home?.cancel).toBeUndefined();
    expect(replica.chunks.at(-1)).toMatchObject({ type: "fiber.end", data: { status: "cancelled" } });
    expect(browser.effects).toEqual([]);
    expect(ledger.count("cancel-1", "after")).toBe(0);
    browser.shipper.stop();
    await browser.runtime.close();
  }, 60_000);

  it("is answered 202 forwarded when the browser is gone, and the takeover ends the fiber as cancelled", async () => {
    const browser = browserHomeOf();
    await browser.runtime.start("approval", null, { id: "cancel-2" });
    await until(async () => expect((await replicaNow("cancel-2")).record.status).toBe("waiting"));
    // Every tab closes: nothing ships from here on.
    browser.shipper.stop();
    await browser.runtime.close();

    expect(await cancelAtEdge("cancel-2", "stop")).toEqual({
      http: 202,
      body: { status: "waiting", forwarded: true },
    });
    expect((await replicaNow("cancel-2")).record.home?.cancel).toMatchObject({ reason: "stop" });
    // The lease lapses; the alarm's takeover ends it in the same write that hands it to the edge.
    await until(async () => expect((await replicaNow("cancel-2")).record.status).toBe("cancelled"), 40_000);
    const replica = await replicaNow("cancel-2");
    expect(replica.record.home).toMatchObject({ home: EDGE_HOME, epoch: 2 });
    expect(replica.record.error).toMatchObject({ code: "cancelled", message: "stop" });
    expect(replica.chunks.filter((c) => c.type === "fiber.end")).toHaveLength(1);
    expect(ledger.count("cancel-2", "after")).toBe(0);
    // A cancel after that answers the end.
    expect(await cancelAtEdge("cancel-2", "again")).toEqual({ http: 200, body: { status: "cancelled" } });
  }, 90_000);

  it("from the browser that runs the fiber, is answered once the edge holds the end", async () => {
    const browser = browserHomeOf();
    await browser.runtime.start("approval", null, { id: "cancel-3" });
    await until(async () => expect((await replicaNow("cancel-3")).record.status).toBe("waiting"));
    expect(await cancelShipped({ runtime: browser.runtime, outbox: browser.outbox }, "cancel-3")).toBe(
      "cancelled",
    );
    expect((await replicaNow("cancel-3")).record.status).toBe("cancelled");
    browser.shipper.stop();
    await browser.runtime.close();
  }, 60_000);
});
