/**
 * What `BrowserContinuity` decides once per worker start about a fiber (where it stands, that it
 * is away, its mirror's state) is of that fiber, not of its id: a fiber restored here as a mirror
 * that ended, was collected, and is started again under its id (the edge replaces an ended replica
 * with the new fiber) runs here. Before, its writes were refused, its claims held and its events
 * sent to the edge for the rest of the worker's life.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import { MemoryStore } from "../store/memory-store";
import { Arbiter } from "./arbiter";
import { createReplicatedRuntime } from "./browser-home";
import { linkTo } from "./test-homes";

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

const pair = defineFiber("pair", {
  retentionMs: 0,
  async run(ctx) {
    const a = await ctx.waitForEvent<number>("go");
    const b = await ctx.waitForEvent<number>("go");
    return a + b;
  },
});

function browser(edge: { store: MemoryStore; arbiter: Arbiter }, deviceId: string) {
  const local = new MemoryStore();
  const { runtime, continuity } = createReplicatedRuntime({
    store: local,
    fibers: [pair],
    edge: { baseUrl: "http://edge.test", fibers: ["pair"], deviceId, leaseMs: 60_000, mirrorPollMs: 20 },
    pollIntervalMs: 10,
    onError: () => {},
  });
  linkTo(continuity, edge);
  stops.push(async () => {
    continuity.stop();
    await runtime.close();
  });
  return { runtime, continuity, local };
}

describe("a fiber restored here, ended, collected, and started again under its id", () => {
  it("runs here: the decisions about the old fiber do not carry over to the new one", async () => {
    const store = new MemoryStore();
    const edge = { store, arbiter: new Arbiter({ store, leaseMs: 60_000 }) };
    // Another device runs "q" to its end; this browser restores it (a page named it).
    const d0 = browser(edge, "d0");
    await d0.continuity.start();
    await d0.runtime.start("pair", null, { id: "q" });
    await vi.waitFor(async () => expect((await store.getFiber("q"))?.status).toBe("waiting"));
    await d0.continuity.sendEvent("q", "go", 1);
    await d0.continuity.sendEvent("q", "go", 2);
    await vi.waitFor(async () => expect((await store.getFiber("q"))?.status).toBe("completed"));

    const d1 = browser(edge, "d1");
    await d1.continuity.start();
    expect(await d1.continuity.settle("q")).toBe("away");
    expect((await d1.local.getFiber("q"))?.status).toBe("completed");

    // Its retention passes here; the user starts "q" again on this device.
    expect(await d1.runtime.collect()).toEqual(["q"]);
    await d1.runtime.start("pair", null, { id: "q" });
    // The edge takes the new fiber (the ended replica is replaced) under this browser's lease...
    await vi.waitFor(async () => expect((await store.getFiber("q"))?.home?.home).toBe("browser:d1"));
    // ...so it runs here: it reaches its first wait, and this home does not call it away.
    await vi.waitFor(async () => expect((await d1.local.getFiber("q"))?.status).toBe("waiting"), {
      timeout: 3_000,
    });
    expect(d1.continuity.isAway("q")).toBe(false);
    expect(await d1.continuity.settle("q")).toBe("home");
  });
});
