/**
 * The extension host and `connect({ extension: true })` against a fake `chrome` in Node: the
 * control calls over a port (errors keep their class), the event stream exactly once across a
 * worker stop, the wake-up alarm for running, sleeping and finished fibers, and the keep-alive.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { connect, type FiberlineClient } from "../client/client";
import { defineFiber } from "../core/define";
import { ConnectionError, FiberNotFoundError, StoreError, UnknownFiberError } from "../core/errors";
import type { FiberEvent } from "../core/records";
import { createRuntime, type Runtime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { FakeChrome } from "./fake-chrome";
import { createExtensionHost, type ExtensionHost, type ExtensionHostOptions } from "./host";
import { CONTROL_PORT, EXTENSION_PROTOCOL_VERSION } from "./protocol";

const gate = { open: () => {} };
/** Emits ticks in steps; the third waits for the gate, so a test can stop the worker mid-run. */
const ticker = defineFiber("ticker", {
  async run(ctx, input: { ticks: number }) {
    for (let i = 1; i <= input.ticks; i++) {
      await ctx.step("tick", async () => {
        if (i === 3) await new Promise<void>((resolve) => (gate.open = resolve));
        return i;
      });
      ctx.emit("tick", { i });
    }
    return input.ticks;
  },
});
const napper = defineFiber("napper", {
  async run(ctx, input: { ms: number }) {
    await ctx.sleep("nap", input.ms);
    return "rested";
  },
});

/** A result extension messaging (JSON) cannot carry. */
const counter = defineFiber("counter", { run: async () => ({ n: 10n }) });

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** One start of the background worker: a runtime on the extension's store, and the host. */
function startWorker(fake: FakeChrome, store: MemoryStore, options: Partial<ExtensionHostOptions> = {}) {
  const runtime: Runtime = createRuntime({
    store,
    fibers: [ticker, napper, counter],
    pollIntervalMs: 20,
    leaseMs: 100,
    unloadAfterMs: 20,
  });
  const host: ExtensionHost = createExtensionHost({ runtime, chrome: fake.chrome, ...options });
  cleanups.push(
    () => runtime.close(),
    () => host.dispose(),
  );
  return { runtime, host };
}

async function page(fake: FakeChrome): Promise<FiberlineClient> {
  const client = await connect({ extension: fake.pageRuntime, timeoutMs: 2_000 });
  cleanups.push(() => client.close());
  return client;
}

describe("createExtensionHost", () => {
  it("answers the control calls over a port; errors keep their class and code", async () => {
    const fake = new FakeChrome();
    const { host } = startWorker(fake, new MemoryStore());
    const fl = await page(fake);
    expect(fl.worker?.instanceId).toBe(host.info.instanceId);
    const started = await fl.start("napper", { ms: 60_000 }, { id: "n1" });
    expect(started).toEqual({ id: "n1", name: "napper", status: "running", created: true });
    expect((await fl.start("napper", { ms: 60_000 }, { id: "n1" })).created).toBe(false);
    expect((await fl.list()).map((r) => r.id)).toEqual(["n1"]);
    const missing = await fl.inspect("nope").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(FiberNotFoundError);
    expect((missing as FiberNotFoundError).code).toBe("fiber_not_found");
    const unknown = await fl.start("nope" as never, {} as never).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(UnknownFiberError);
    expect(await fl.cancel("n1", "enough")).toBe("cancelled");
    expect((await fl.heartbeat()).recovered).toBe(true);
  });

  it("answers a call whose result JSON cannot carry with not_cloneable at once; other calls still work", async () => {
    const fake = new FakeChrome();
    const { runtime } = startWorker(fake, new MemoryStore(), { onError: () => {} });
    const fl = await page(fake);
    await fl.start("napper", { ms: 60_000 }, { id: "n1" });
    await fl.start("counter", {}, { id: "c1" });
    await runtime.result("c1");
    for (const call of [() => fl.list(), () => fl.get("c1")]) {
      const refused = await call().catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: "not_cloneable", message: expect.stringMatching(/JSON/) });
    }
    expect((await fl.get("n1"))?.status).toBe("sleeping");
  });

  it("refuses arguments extension messaging cannot carry with not_cloneable, before sending; other calls still work", async () => {
    const fake = new FakeChrome();
    startWorker(fake, new MemoryStore());
    const fl = await page(fake);
    const refused = await fl.start("counter", { budget: 10n }, { id: "c1" }).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: "not_cloneable",
      message: expect.stringMatching(/start\(\) cannot be sent to the extension's background worker/),
    });
    expect(await fl.get("c1")).toBeUndefined();
    expect((await fl.start("counter", {}, { id: "c1" })).created).toBe(true);
  });

  it("refuses a page of another protocol version with protocol_error, and ignores the app's own ports", async () => {
    const fake = new FakeChrome();
    startWorker(fake, new MemoryStore());
    const port = fake.pageRuntime.connect({ name: CONTROL_PORT });
    const reply = new Promise<unknown>((resolve) => port.onMessage.addListener(resolve));
    port.postMessage({ type: "hello", protocol: EXTENSION_PROTOCOL_VERSION + 1 });
    expect(await reply).toMatchObject({ type: "rejected", error: { code: "protocol_error" } });
    const own = fake.pageRuntime.connect({ name: "my-app/port" });
    const answered = vi.fn();
    own.onMessage.addListener(answered);
    own.postMessage({ type: "hello", protocol: EXTENSION_PROTOCOL_VERSION });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(answered).not.toHaveBeenCalled();
  });

  it("streams every chunk exactly once, in order, across a worker stop mid-run", async () => {
    const fake = new FakeChrome();
    const store = new MemoryStore();
    const first = startWorker(fake, store);
    const fl = await page(fake);
    await fl.start("ticker", { ticks: 5 }, { id: "t1" });
    const seen: FiberEvent[] = [];
    const reading = (async () => {
      for await (const ev of fl.events("t1")) seen.push(ev);
    })();
    await expect.poll(() => seen.filter((e) => e.type === "tick").length).toBe(2);

    // Chrome stops the worker: every port drops, the runtime dies with it.
    fake.stopWorker();
    await first.runtime.close();
    first.host.dispose();
    // The page's reader reconnects; connecting starts a new worker, whose start recovers the fiber.
    const second = startWorker(fake, store);
    await second.host.recovery;
    await expect.poll(() => second.runtime.activeCount).toBe(1);
    gate.open();
    await reading;

    expect(seen.map((e) => e.seq)).toEqual(seen.map((_, i) => i + 1));
    expect(seen.filter((e) => e.type === "tick").map((e) => (e.data as { i: number }).i)).toEqual([
      1, 2, 3, 4, 5,
    ]);
    expect(seen.some((e) => e.type === "fiber.recovered")).toBe(true);
    expect(seen.at(-1)).toMatchObject({ type: "fiber.end", data: { status: "completed", result: 5 } });
    // A control call after the stop reconnects to the new instance.
    expect((await fl.heartbeat()).instanceId).toBe(second.host.info.instanceId);
  });

  it("stops a reader with fiber_not_found when, while the worker was stopped, its fiber gave way to another under the same id", async () => {
    const fake = new FakeChrome();
    const store = new MemoryStore();
    const first = startWorker(fake, store);
    const fl = await page(fake);
    await fl.start("ticker", { ticks: 5 }, { id: "reused" });
    const seen: FiberEvent[] = [];
    const reading = (async () => {
      for await (const ev of fl.events("reused")) seen.push(ev);
      return "read on";
    })().catch((error: unknown) => error);
    await expect.poll(() => seen.filter((e) => e.type === "tick").length).toBe(2);
    fake.stopWorker();
    await first.runtime.close();
    first.host.dispose();
    // Meanwhile the fiber is gone (collected) and another one was started under its id.
    await store.deleteFibers(["reused"]);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const other = createRuntime({ store, fibers: [napper] });
    await other.result(await other.start(napper, { ms: 0 }, { id: "reused" }));
    await other.close();
    startWorker(fake, store);
    const outcome = await reading;
    expect(outcome).toBeInstanceOf(FiberNotFoundError);
    expect(seen.every((e) => e.type !== "fiber.end")).toBe(true);
  });

  it("ends a read at once when the cursor is at the end of an ended fiber", async () => {
    const fake = new FakeChrome();
    startWorker(fake, new MemoryStore());
    const fl = await page(fake);
    await fl.start("napper", { ms: 0 }, { id: "short" });
    await expect(fl.result("short")).resolves.toBe("rested");
    const head = (await fl.get("short"))?.streamHead ?? 0;
    const after: FiberEvent[] = [];
    for await (const ev of fl.events("short", { after: head })) after.push(ev);
    expect(after).toEqual([]);
    const ghost = await (async () => {
      for await (const _ of fl.events("ghost")) {
        // nothing arrives
      }
    })().catch((e: unknown) => e);
    expect(ghost).toBeInstanceOf(FiberNotFoundError);
  });

  it("rejects pending calls with worker_restarted when the worker stops", async () => {
    const fake = new FakeChrome();
    const store = new MemoryStore();
    const { runtime } = startWorker(fake, store);
    const fl = await page(fake);
    // A call that cannot be answered before the stop: the store never answers it.
    const stalled = new Promise<never>(() => {});
    runtime.list = () => stalled;
    const pending = fl.list();
    await new Promise((resolve) => setTimeout(resolve, 10));
    fake.stopWorker();
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).code).toBe("worker_restarted");
  });
});

describe("the wake-up alarm", () => {
  it("is a heartbeat while a fiber runs, the timer while it sleeps, and cleared when nothing is due", async () => {
    const fake = new FakeChrome();
    const { host } = startWorker(fake, new MemoryStore(), { alarmMinimumMs: 1_000, heartbeatMs: 30_000 });
    await host.recovery;
    expect(await host.planWake()).toEqual({ status: "cleared" });

    const fl = await page(fake);
    const before = Date.now();
    await fl.start("ticker", { ticks: 3 }, { id: "busy" });
    const running = await host.planWake();
    expect(running.status).not.toBe("cleared");
    const heartbeat = fake.alarmMap.get("fiberline/wake")?.scheduledTime ?? 0;
    expect(heartbeat).toBeGreaterThanOrEqual(before + 30_000);
    gate.open();
    await fl.result("busy");

    await fl.start("napper", { ms: 45_000 }, { id: "nap" });
    await expect.poll(async () => (await fl.get("nap"))?.status).toBe("sleeping");
    const wakeAt = (await fl.get("nap"))?.wakeAt ?? 0;
    // Asleep, nothing runs: the heartbeat gives way to the timer itself (no wake-up for nothing).
    await expect.poll(() => fake.alarmMap.get("fiberline/wake")?.scheduledTime).toBe(wakeAt);
    fake.fireAlarm("fiberline/wake"); // early or not, a fired alarm is planned again
    await expect.poll(() => fake.alarmMap.get("fiberline/wake")?.scheduledTime).toBe(wakeAt);

    await fl.cancel("nap");
    await expect.poll(() => fake.alarmMap.has("fiberline/wake")).toBe(false);
  });

  it("sets a retry alarm when the recovery of an alarm-started worker fails, so the due timer still fires", async () => {
    const fake = new FakeChrome();
    const store = new MemoryStore();
    const first = startWorker(fake, store);
    await first.runtime.start(napper, { ms: 200 }, { id: "nap" });
    await expect.poll(() => fake.alarmMap.has("fiberline/wake")).toBe(true);
    fake.stopWorker();
    await first.runtime.close();
    first.host.dispose();
    await new Promise((resolve) => setTimeout(resolve, 250));
    // The alarm starts the worker, whose storage fails for a moment.
    const list = store.listFibers.bind(store);
    let failures = 8;
    store.listFibers = (query) =>
      failures-- > 0 ? Promise.reject(new StoreError("store_error", "Storage is busy; retry.")) : list(query);
    const errors: string[] = [];
    startWorker(fake, store, { onError: (_error, doing) => errors.push(doing) });
    fake.fireAlarm("fiberline/wake");
    await expect
      .poll(() => errors.filter((doing) => doing === "recovering fibers at worker start").length)
      .toBe(2);
    // The alarm that fired is gone: without a new one, nothing would start the worker again.
    expect(fake.alarmMap.has("fiberline/wake")).toBe(true);
    await expect
      .poll(async () => (await store.getFiber("nap"))?.status, { timeout: 5_000 })
      .toBe("completed");
  });

  it("never asks Chrome for an alarm sooner than its minimum delay", async () => {
    const fake = new FakeChrome();
    fake.installType = "normal"; // a packed extension: Chrome's minimum is 30 s
    const { host } = startWorker(fake, new MemoryStore());
    const fl = await page(fake);
    const before = Date.now();
    await fl.start("napper", { ms: 5_000 }, { id: "soon" });
    await expect.poll(async () => (await fl.get("soon"))?.status).toBe("sleeping");
    await host.planWake();
    expect(fake.alarmMap.get("fiberline/wake")?.scheduledTime).toBeGreaterThanOrEqual(before + 30_000);
  });

  it("resumes a sleeping fiber whose timer came due while the worker was stopped, at the next start", async () => {
    const fake = new FakeChrome();
    const store = new MemoryStore();
    const first = startWorker(fake, store, { alarmMinimumMs: 1_000 });
    const fl = await page(fake);
    await fl.start("napper", { ms: 150 }, { id: "late" });
    await expect.poll(async () => (await fl.get("late"))?.status).toBe("sleeping");
    expect(fake.alarmMap.has("fiberline/wake")).toBe(true);
    fake.stopWorker();
    await first.runtime.close();
    first.host.dispose();
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Chrome starts the worker for the alarm: the start recovers, the alarm is planned again.
    const second = startWorker(fake, store, { alarmMinimumMs: 1_000 });
    fake.fireAlarm("fiberline/wake");
    await expect.poll(async () => (await store.getFiber("late"))?.status).toBe("completed");
    await second.host.planWake();
    expect(fake.alarmMap.has("fiberline/wake")).toBe(false);
  });

  it("pings the extension API while fibers run, so Chrome does not idle the worker out", async () => {
    const fake = new FakeChrome();
    const { host } = startWorker(fake, new MemoryStore(), { keepAliveMs: 20 });
    const fl = await page(fake);
    await fl.start("ticker", { ticks: 3 }, { id: "alive" });
    await expect.poll(() => fake.pings).toBeGreaterThan(2);
    expect(host.pendingWork).toBeGreaterThan(0);
    gate.open();
    await fl.result("alive");
    await expect.poll(() => host.pendingWork).toBe(0);
    const after = fake.pings;
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(fake.pings).toBe(after);
  });
});
