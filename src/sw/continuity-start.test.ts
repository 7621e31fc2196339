/**
 * The Service Worker host's `start(name, input, { id })` of an id only the edge has (the same
 * user's second device, or a browser whose IndexedDB was wiped): like every other control call
 * that names a fiber, it first decides where the fiber stands (`continuity.settle`, which
 * restores it from the replica), so it attaches to the fiber the edge holds.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { Arbiter } from "../continuity/arbiter";
import { createReplicatedRuntime } from "../continuity/browser-home";
import { linkTo } from "../continuity/test-homes";
import { defineFiber } from "../core/define";
import type { FiberRecord } from "../core/records";
import { MemoryStore } from "../store/memory-store";
import { createServiceWorkerHost } from "./host";
import { connectPage, FakeEvent, FakeScope } from "./testing/fake-scope";

const stops: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

const pair = defineFiber("pair", {
  async run(ctx) {
    const a = await ctx.waitForEvent<number>("go");
    const b = await ctx.waitForEvent<number>("go");
    return a + b;
  },
});

/** One browser (device `deviceId`): its host on a fake scope, its edge link answered by `edge`. */
async function browser(edge: { store: MemoryStore; arbiter: Arbiter }, deviceId: string) {
  const { runtime, continuity } = createReplicatedRuntime({
    store: new MemoryStore(),
    fibers: [pair],
    edge: { baseUrl: "http://edge.test", fibers: ["pair"], deviceId, leaseMs: 60_000, mirrorPollMs: 20 },
    pollIntervalMs: 10,
    onError: () => {},
  });
  linkTo(continuity, edge);
  const scope = new FakeScope();
  const host = createServiceWorkerHost({ runtime, continuity, scope });
  scope.dispatch("activate", new FakeEvent());
  stops.push(
    () => host.dispose(),
    () => runtime.close(),
  );
  await host.recovery;
  return { runtime, scope };
}

describe("the host's start of an id only the edge has", () => {
  it("attaches to the fiber the edge holds (created: false) instead of starting another under its id", async () => {
    const store = new MemoryStore();
    const edge = { store, arbiter: new Arbiter({ store, leaseMs: 60_000 }) };
    // Device d0 starts fiber "r"; the edge holds its replica, waiting for its first event.
    const d0 = await browser(edge, "d0");
    await d0.runtime.start("pair", 1, { id: "r" });
    await vi.waitFor(async () => expect((await store.getFiber("r"))?.status).toBe("waiting"));
    const original = (await store.getFiber("r")) as FiberRecord;

    // The same user's page on device d1 starts "r" by id, the usual "start or attach" call.
    const d1 = await browser(edge, "d1");
    const page = await connectPage(d1.scope);
    stops.push(() => page.port.close());
    const started = await page.remote.start("pair", 2, { id: "r" });
    expect(started.created).toBe(false);
    // What the page reads of "r" is the fiber the edge holds, not a new one.
    const got = await page.remote.get("r");
    expect(got?.createdAt).toBe(original.createdAt);
    expect(got?.input).toBe(1);
  });
});
