/**
 * The Service Worker host against a fake worker scope in Node: recovery on the first event of a
 * start, lifecycle wiring, which fetches it answers, the comlink control channel (errors keep
 * their class) and the keep-alive of running fibers.
 */

import { transfer } from "comlink";
import { afterEach, describe, expect, it, vi } from "vitest";
import { readPortStream } from "../client/port-stream";
import { defineFiber } from "../core/define";
import { FiberNotFoundError, UnknownFiberError } from "../core/errors";
import { createRuntime, type Runtime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { createServiceWorkerHost, type ServiceWorkerHost } from "./host";
import { PROTOCOL_VERSION } from "./protocol";
import { connectPage, FakeEvent, FakeFetchEvent, FakeMessageEvent, FakeScope } from "./testing/fake-scope";

const release = { go: () => {} };
const waiter = defineFiber("waiter", {
  async run(ctx) {
    await ctx.step("hold", () => new Promise<void>((resolve) => (release.go = resolve)));
    ctx.emit("done", {});
    return "ok";
  },
});

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(options: { skipWaiting?: boolean } = {}) {
  const runtime: Runtime = createRuntime({
    store: new MemoryStore(),
    fibers: [waiter],
    pollIntervalMs: 20,
  });
  const recover = vi.spyOn(runtime, "recover");
  const scope = new FakeScope();
  const host: ServiceWorkerHost = createServiceWorkerHost({ runtime, scope, ...options });
  cleanups.push(
    () => runtime.close(),
    () => host.dispose(),
  );
  return { runtime, recover, scope, host };
}

async function connect(scope: FakeScope, message: Record<string, unknown> = {}) {
  const page = await connectPage(scope, message);
  cleanups.push(() => page.port.close());
  return page;
}

/** Sends one raw comlink message on the control port and resolves with the worker's answer. */
function rawMessage(port: MessagePort, message: Record<string, unknown>): Promise<Record<string, unknown>> {
  const id = `raw-${Math.random()}`;
  return new Promise((resolve) => {
    const listener = (event: MessageEvent) => {
      if (event.data?.id !== id) return;
      port.removeEventListener("message", listener);
      resolve(event.data);
    };
    port.addEventListener("message", listener);
    port.postMessage({ ...message, id });
  });
}

describe("createServiceWorkerHost", () => {
  it("runs recover() once per worker start, inside waitUntil of the first event", async () => {
    const { recover, scope, host } = setup();
    expect(recover).not.toHaveBeenCalled();
    const first = scope.dispatch("fetch", new FakeFetchEvent(new Request("https://app.test/app.js")));
    expect(recover).toHaveBeenCalledTimes(1);
    expect(first.lifetime).toHaveLength(1);
    await first.settled();
    await expect(host.recovery).resolves.toEqual({ resumed: [], scheduled: [], collected: [] });
    scope.dispatch("message", new FakeMessageEvent({ type: "fiberline/heartbeat" }));
    expect(recover).toHaveBeenCalledTimes(1);
  });

  it("skips waiting when configured and claims clients on activate", async () => {
    const plain = setup();
    plain.scope.dispatch("install", new FakeEvent());
    expect(plain.scope.skipWaiting).not.toHaveBeenCalled();
    const eager = setup({ skipWaiting: true });
    eager.scope.dispatch("install", new FakeEvent());
    expect(eager.scope.skipWaiting).toHaveBeenCalledTimes(1);
    const activate = eager.scope.dispatch("activate", new FakeEvent());
    await activate.settled();
    expect(eager.scope.clients.claim).toHaveBeenCalledTimes(1);
  });

  it("answers its own route and leaves the app's requests and messages alone", async () => {
    const { scope } = setup();
    const app = scope.dispatch("fetch", new FakeFetchEvent(new Request("https://app.test/index.html")));
    expect(app.response).toBeUndefined();
    const foreign = scope.dispatch(
      "fetch",
      new FakeFetchEvent(new Request("https://cdn.test/__fiberline/fibers/a/events")),
    );
    expect(foreign.response).toBeUndefined();
    const ours = scope.dispatch(
      "fetch",
      new FakeFetchEvent(new Request("https://app.test/__fiberline/fibers/a/events")),
    );
    const res = (await ours.response) as Response;
    expect(res.status).toBe(404);
    expect((await res.json()).error.code).toBe("fiber_not_found");
    const appMessage = scope.dispatch("message", new FakeMessageEvent({ type: "app/hello" }));
    expect(appMessage.lifetime).toHaveLength(0);
  });

  it("exposes the control API on the handshake port; errors keep their class and code", async () => {
    const { scope, host } = setup();
    const { reply, remote } = await connect(scope);
    expect(reply).toEqual({ type: "fiberline/ready", worker: host.info });
    const started = await remote.start("waiter", {}, { id: "w1" });
    expect(started).toEqual({ id: "w1", name: "waiter", status: "running", created: true });
    expect((await remote.get("w1"))?.status).toBe("running");
    expect((await remote.list()).map((r) => r.id)).toEqual(["w1"]);
    expect((await remote.heartbeat()).active).toBe(1);
    const missing = await remote.inspect("nope").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(FiberNotFoundError);
    expect((missing as FiberNotFoundError).code).toBe("fiber_not_found");
    const unknown = await remote.start("nope", {}).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(UnknownFiberError);
    expect(await remote.cancel("w1", "enough")).toBe("cancelled");
  });

  it("answers calls of its methods only: a page can neither replace a method nor reach Function", async () => {
    const { scope } = setup();
    const pageA = await connect(scope);
    const refused = (answer: Record<string, unknown>) =>
      answer.type === "HANDLER" && answer.name === "throw"
        ? (answer.value as { error: { code: string } }).error.code
        : answer;
    // comlink's SET on the worker's control API: refused, and another page still starts fibers.
    const set = await rawMessage(pageA.port, {
      type: "SET",
      path: ["start"],
      value: { type: "RAW", value: 42 },
    });
    expect(refused(set)).toBe("protocol_error");
    const pageB = await connect(scope);
    expect((await pageB.remote.start("waiter", {}, { id: "b1" })).created).toBe(true);
    // CONSTRUCT of Function through start.constructor: refused, and no code ran.
    const code = { type: "RAW", value: "globalThis.__fiberlinePwned = true" };
    for (const type of ["CONSTRUCT", "APPLY"]) {
      const path = ["start", "constructor", "constructor"];
      expect(refused(await rawMessage(pageA.port, { type, path, argumentList: [code] }))).toBe(
        "protocol_error",
      );
    }
    expect((globalThis as { __fiberlinePwned?: boolean }).__fiberlinePwned).toBeUndefined();
    // A GET of any property, ENDPOINT, a method outside the API, a proxied callback: refused alike.
    for (const message of [
      { type: "GET", path: ["constructor"] },
      { type: "GET", path: [] },
      { type: "ENDPOINT" },
      { type: "APPLY", path: ["__proto__"], argumentList: [] },
      { type: "APPLY", path: ["toString"], argumentList: [] },
      { type: "APPLY", path: ["heartbeat"], argumentList: [{ type: "HANDLER", name: "proxy", value: null }] },
    ]) {
      expect(refused(await rawMessage(pageA.port, message))).toBe("protocol_error");
    }
    // The page client's own calls still go through, errors keeping their class.
    expect((await pageA.remote.heartbeat()).active).toBe(1);
  });

  it("refuses openStream with a port that is not a MessagePort, opening nothing", async () => {
    const { scope, runtime } = setup();
    const { remote } = await connect(scope);
    await remote.start("waiter", {}, { id: "p1" });
    const open = vi.spyOn(runtime, "openEventBatches");
    for (const port of [{}, 0, null]) {
      const refused = await remote
        .openStream("p1", 0, port as unknown as MessagePort)
        .catch((e: unknown) => e);
      expect((refused as { code?: string }).code).toBe("invalid_argument");
    }
    expect(open).not.toHaveBeenCalled();
  });

  it("rejects a handshake of another protocol version or prefix with protocol_error", async () => {
    const { scope } = setup();
    const { reply } = await connect(scope, { protocol: PROTOCOL_VERSION + 1 });
    expect(reply.type).toBe("fiberline/rejected");
    expect(reply.type === "fiberline/rejected" && reply.error.code).toBe("protocol_error");
    const other = await connect(scope, { prefix: "/elsewhere" });
    expect(other.reply.type).toBe("fiberline/rejected");
  });

  it("holds every event open while a fiber runs and lets go when it ends", async () => {
    const { scope, host } = setup();
    const { remote } = await connect(scope);
    await remote.start("waiter", {}, { id: "held" });
    const heartbeat = scope.dispatch("message", new FakeMessageEvent({ type: "fiberline/heartbeat" }));
    let settled = false;
    void heartbeat.settled().then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBe(false);
    expect(host.pendingWork).toBe(1);
    release.go();
    await expect.poll(() => settled).toBe(true);
    expect(host.pendingWork).toBe(0);
  });

  it("streams a fiber's events over a port (the fallback when fetch cannot reach the worker)", async () => {
    const { scope } = setup();
    const { remote } = await connect(scope);
    await remote.start("waiter", {}, { id: "ported" });
    const seen: string[] = [];
    const reading = (async () => {
      for await (const chunk of readPortStream((port) =>
        remote.openStream("ported", 0, transfer(port, [port])),
      )) {
        if (chunk === "ended") seen.push("ended");
        else if ("created" in chunk) seen.push(`created ${chunk.created}`);
        else seen.push(`${chunk.seq}:${chunk.event}:${chunk.data}`);
      }
    })();
    await expect.poll(() => seen.length).toBe(2);
    release.go();
    await reading;
    // The port names the fiber first (its createdAt), then the chunks.
    expect(seen).toEqual([
      `created ${(await remote.get("ported"))?.createdAt}`,
      "1:fiber.start:" + '{"name":"waiter","version":"1"}',
      "2:done:{}",
      '3:fiber.end:{"status":"completed","result":"ok"}',
    ]);
    const missing = await (async () => {
      for await (const _ of readPortStream((port) => remote.openStream("ghost", 0, transfer(port, [port])))) {
        // nothing arrives
      }
    })().catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(FiberNotFoundError);

    // At the end of the ended fiber: "ended" at once, as the route's 204 (not a stream cut short).
    const atEnd: unknown[] = [];
    for await (const chunk of readPortStream((port) =>
      remote.openStream("ported", 3, transfer(port, [port])),
    ))
      atEnd.push(chunk);
    expect(atEnd).toEqual([{ created: (await remote.get("ported"))?.createdAt }, "ended"]);

    // A reader of another fiber that had this id (it names its createdAt): refused.
    const createdAt = (await remote.get("ported"))?.createdAt as number;
    const other = await (async () => {
      for await (const _ of readPortStream((port) =>
        remote.openStream("ported", 1, transfer(port, [port]), createdAt - 1),
      )) {
        // nothing arrives
      }
    })().catch((e: unknown) => e);
    expect(other).toBeInstanceOf(FiberNotFoundError);
    const same: unknown[] = [];
    for await (const chunk of readPortStream((port) =>
      remote.openStream("ported", 2, transfer(port, [port]), createdAt),
    ))
      same.push(chunk === "ended" || "created" in chunk ? chunk : chunk.seq);
    expect(same).toEqual([{ created: createdAt }, 3]);
  });
});
