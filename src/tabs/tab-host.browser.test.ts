/**
 * The tab host in real Chromium (Vitest browser mode): several `connect({ fallback })` clients in
 * one page stand in for tabs. They share the page's Web Locks and talk over BroadcastChannel, as
 * tabs of one origin do; closing the leading client releases its lock as closing its tab would.
 * The real multi-tab cases (a tab closed, a renderer crashed) are e2e/fallback/.
 */

import { deleteDB } from "idb";
import { afterEach, expect, it } from "vitest";
import { connect, type FiberlineClient } from "../client/client";
import { defineFiber } from "../core/define";
import {
  ConnectionError,
  InvalidInputError,
  ServiceWorkerUnavailableError,
  UnknownFiberError,
} from "../core/errors";
import type { FiberEvent } from "../core/records";
import { createRuntime, type Runtime } from "../core/runtime";
import { IdbStore } from "../store/idb-store";

const run = Date.now().toString(36);
let count = 0;
const open: FiberlineClient[] = [];
const databases: string[] = [];

/** Completed executions of each tick's step, by `fiberId:tick`. */
const ticksRun = new Map<string, number>();

const ticker = defineFiber("ticker", {
  async run(ctx, input: { ticks: number; intervalMs: number }) {
    for (let i = 1; i <= input.ticks; i++) {
      await ctx.step("tick", async () => {
        await new Promise((resolve) => setTimeout(resolve, input.intervalMs));
        ticksRun.set(`${ctx.id}:${i}`, (ticksRun.get(`${ctx.id}:${i}`) ?? 0) + 1);
        return i;
      });
      ctx.emit("tick", { i });
    }
    return { ticks: input.ticks };
  },
});

type Fibers = { ticker: typeof ticker };

/** A fresh election (its own lock, channel and database) and a factory of its "tabs". */
function election() {
  const name = `fiberline-tabs-${run}-${++count}`;
  databases.push(name);
  const runtimes: Runtime[] = [];
  const tab = async (patch?: (runtime: Runtime) => void) => {
    const client = await connect<Fibers>({
      timeoutMs: 5_000,
      reader: { initialDelayMs: 20, maxDelayMs: 200 },
      fallback: {
        when: "always",
        name,
        runtime: () => {
          const runtime = createRuntime({ store: new IdbStore({ name }), fibers: [ticker] });
          patch?.(runtime);
          runtimes.push(runtime);
          return runtime;
        },
      },
    });
    open.push(client);
    return client;
  };
  return { tab, runtimes };
}

async function readAll(client: FiberlineClient, id: string, log: FiberEvent[]): Promise<void> {
  for await (const ev of client.events(id)) log.push(ev);
}

afterEach(async () => {
  for (const client of open.splice(0)) client.close();
  await new Promise((resolve) => setTimeout(resolve, 50));
  for (const name of databases.splice(0)) await deleteDB(name).catch(() => {});
});

it("runs the fibers in the first tab and serves the next tab's calls and stream from it", async () => {
  const { tab } = election();
  const leader = await tab();
  const follower = await tab();
  expect(leader.leading).toBe(true);
  expect(follower.leading).toBe(false);
  expect(follower.worker?.instanceId).toBe(leader.worker?.instanceId);

  const started = await follower.start("ticker", { ticks: 3, intervalMs: 5 });
  expect(started).toMatchObject({ name: "ticker", created: true });
  const log: FiberEvent[] = [];
  await readAll(follower, started.id, log);
  expect(log.map((ev) => ev.seq)).toEqual(log.map((_, i) => i + 1));
  expect(log.at(-1)).toMatchObject({
    type: "fiber.end",
    data: { status: "completed", result: { ticks: 3 } },
  });
  expect((await leader.get(started.id))?.status).toBe("completed");
  expect(await follower.result(started.id)).toEqual({ ticks: 3 });
  // A stream whose cursor is at the end of an ended fiber ends at once, as the route's 204.
  const after: FiberEvent[] = [];
  for await (const ev of follower.events(started.id, { after: log.length })) after.push(ev);
  expect(after).toEqual([]);
});

it("keeps the class and code of the leader's errors in the follower", async () => {
  const { tab } = election();
  await tab();
  const follower = await tab();
  // @ts-expect-error: "nope" is not a fiber of the map, which is the mistake under test
  const unknown = await follower.start("nope", {}).catch((error: unknown) => error);
  expect(unknown).toBeInstanceOf(UnknownFiberError);
  expect((unknown as UnknownFiberError).code).toBe("unknown_fiber");
  const missing = await (async () => {
    for await (const _ of follower.events("no-such-fiber")) {
      // nothing to read
    }
  })().catch((error: unknown) => error);
  expect((missing as { code?: string }).code).toBe("fiber_not_found");
});

it("refuses arguments a follower cannot send with the leader's InvalidInputError not_cloneable", async () => {
  const { tab } = election();
  const leader = await tab();
  const follower = await tab();
  const bad = { ticks: 1, intervalMs: 1, callback: () => 1 } as never;
  const inLeader = await leader.start("ticker", bad).catch((error: unknown) => error);
  const inFollower = await follower.start("ticker", bad).catch((error: unknown) => error);
  expect(inLeader).toBeInstanceOf(InvalidInputError);
  expect(inFollower).toBeInstanceOf(InvalidInputError);
  expect(inFollower).toMatchObject({ code: "not_cloneable" });
  // The follower's calls go on as before.
  expect((await follower.start("ticker", { ticks: 1, intervalMs: 1 })).created).toBe(true);
});

it("lets go of the leader lock when its client closes while it is taking the lead", async () => {
  const name = `fiberline-tabs-${run}-${++count}`;
  databases.push(name);
  let slow = true;
  const runtime = async () => {
    if (slow) await new Promise((resolve) => setTimeout(resolve, 400));
    return createRuntime({ store: new IdbStore({ name }), fibers: [ticker] });
  };
  // Its runtime takes longer than the connect deadline: connect() fails and closes the client
  // while it is still taking the lead.
  const first = await connect({ timeoutMs: 150, fallback: { when: "always", name, runtime } }).catch(
    (error: unknown) => error,
  );
  expect(first).toMatchObject({ code: "deadline_exceeded" });
  slow = false;
  await new Promise((resolve) => setTimeout(resolve, 600));
  const second = await connect<Fibers>({ timeoutMs: 3_000, fallback: { when: "always", name, runtime } });
  open.push(second);
  expect(second.leading).toBe(true);
  const { id } = await second.start("ticker", { ticks: 1, intervalMs: 1 });
  expect(await second.result(id)).toEqual({ ticks: 1 });
});

it("hands the fibers to the next tab when the leader goes away: the stream continues exactly once", async () => {
  const { tab, runtimes } = election();
  const first = await tab();
  const second = await tab();
  const { id } = await second.start("ticker", { ticks: 8, intervalMs: 60 });
  const log: FiberEvent[] = [];
  const reading = readAll(second, id, log);
  await expect.poll(() => log.filter((ev) => ev.type === "tick").length).toBeGreaterThanOrEqual(3);
  const oldLeader = first.worker?.instanceId;
  first.close();
  await expect.poll(() => second.leading).toBe(true);
  expect(second.worker?.instanceId).not.toBe(oldLeader);
  await reading;

  expect(log.map((ev) => ev.seq)).toEqual(log.map((_, i) => i + 1));
  expect(log.filter((ev) => ev.type === "tick").map((ev) => (ev.data as { i: number }).i)).toEqual([
    1, 2, 3, 4, 5, 6, 7, 8,
  ]);
  expect(log.some((ev) => ev.type === "fiber.recovered")).toBe(true);
  expect(log.at(-1)).toMatchObject({ type: "fiber.end", data: { status: "completed" } });
  // The second tab's runtime finished the work the first one left.
  expect(runtimes).toHaveLength(2);
  expect((await second.inspect(id)).record.status).toBe("completed");
});

it("rejects a call pending at a leader that goes away with worker_restarted", async () => {
  const { tab } = election();
  let hang = true;
  const first = await tab((runtime) => {
    const get = runtime.get.bind(runtime);
    // The first leader never answers get(): the call is still pending when its tab goes away.
    runtime.get = (id) => (hang ? new Promise(() => {}) : get(id));
  });
  const second = await tab();
  const pending = second.get("some-fiber").catch((error: unknown) => error);
  await new Promise((resolve) => setTimeout(resolve, 50));
  hang = false;
  first.close();
  const error = await pending;
  expect(error).toBeInstanceOf(ConnectionError);
  expect((error as ConnectionError).code).toBe("worker_restarted");
  // The next call reaches the new leader (this tab).
  expect(await second.get("some-fiber")).toBeUndefined();
  expect(second.leading).toBe(true);
});

it("says plainly when the fallback cannot run either (no Web Locks outside secure contexts)", async () => {
  const descriptor = Object.getOwnPropertyDescriptor(Navigator.prototype, "locks");
  Object.defineProperty(Navigator.prototype, "locks", { configurable: true, get: () => undefined });
  try {
    const error = await connect({
      fallback: { when: "always", runtime: () => createRuntime({ store: new IdbStore(), fibers: [] }) },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceWorkerUnavailableError);
    expect((error as ServiceWorkerUnavailableError).code).toBe("fallback_unavailable");
    expect((error as Error).message).toMatch(/secure context/);
  } finally {
    if (descriptor) Object.defineProperty(Navigator.prototype, "locks", descriptor);
  }
});

/** A Service Worker container whose `register()` is refused, as in a private window. */
function refusingContainer(): ServiceWorkerContainer {
  return {
    register: () => Promise.reject(new DOMException("The operation is insecure.", "SecurityError")),
    getRegistration: () => Promise.resolve(undefined),
    ready: new Promise(() => {}),
    controller: null,
    addEventListener: () => {},
    removeEventListener: () => {},
  } as unknown as ServiceWorkerContainer;
}

it("falls back to the tabs when registering the worker is refused, and only with fallback", async () => {
  const name = `fiberline-tabs-${run}-${++count}`;
  databases.push(name);
  const runtime = () => createRuntime({ store: new IdbStore({ name }), fibers: [ticker] });
  const refused = await connect({
    container: refusingContainer(),
    scriptUrl: "/sw.js",
    timeoutMs: 2_000,
  }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(ServiceWorkerUnavailableError);
  expect((refused as ServiceWorkerUnavailableError).code).toBe("service_worker_unavailable");

  const client = await connect<Fibers>({
    container: refusingContainer(),
    scriptUrl: "/sw.js",
    timeoutMs: 2_000,
    fallback: { name, runtime },
  });
  open.push(client);
  expect(client.leading).toBe(true);
  const { id } = await client.start("ticker", { ticks: 1, intervalMs: 1 });
  expect(await client.result(id)).toEqual({ ticks: 1 });
});

it("does not fall back when a worker is only slow to appear: two hosts would run the same fibers", async () => {
  const error = await connect({
    container: refusingContainer(),
    timeoutMs: 300,
    fallback: { runtime: () => createRuntime({ store: new IdbStore(), fibers: [] }) },
  }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ServiceWorkerUnavailableError);
  expect((error as ServiceWorkerUnavailableError).code).toBe("service_worker_unavailable");
});
