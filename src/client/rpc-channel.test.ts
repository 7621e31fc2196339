/**
 * The control channel against a fake worker in Node (real MessageChannels and comlink): deadlines,
 * class-keeping errors, and restarts found by a probe, a controller change or a stale channel.
 */

import { type Endpoint, expose, wrap } from "comlink";
import { afterEach, describe, expect, it } from "vitest";
import { ConnectionError, InvalidInputError, UnknownFiberError } from "../core/errors";
import { installErrorTransfer } from "../sw/error-transfer";
import type { ControlApi, HandshakeReply, WorkerInfo } from "../sw/protocol";
import { PROTOCOL_VERSION } from "../sw/protocol";
import { callEndpoint, RpcChannel, type RpcChannelOptions } from "./rpc-channel";

/** A stand-in for the Service Worker: each `restart()` is a new instance; the old one's ports go dead. */
class FakeWorker {
  instance = 0;
  ports: MessagePort[] = [];
  never = new Promise<never>(() => {});
  readonly api: ControlApi = {
    start: async () => {
      throw new UnknownFiberError("nope");
    },
    get: async () => undefined,
    list: () => this.never,
    inspect: () => this.never,
    sendEvent: async () => {},
    cancel: async () => "cancelled",
    heartbeat: async () => ({ ...this.info(), active: 0, recovered: true }),
    retryPaused: async () => undefined,
  };

  info(): WorkerInfo {
    return {
      instanceId: `i${this.instance}`,
      scriptUrl: "/sw.js",
      startedAt: 0,
      protocol: PROTOCOL_VERSION,
      prefix: "/p",
    };
  }

  postMessage(_message: unknown, transfer: Transferable[]): void {
    installErrorTransfer();
    const port = transfer[0] as MessagePort;
    this.ports.push(port);
    expose(this.api, port);
    port.postMessage({ type: "fiberline/ready", worker: this.info() } satisfies HandshakeReply);
  }

  /** The old instance dies without a word: its ports stop answering. */
  restart(): void {
    for (const port of this.ports) {
      port.onmessage = null;
      port.close();
    }
    this.ports = [];
    this.instance++;
  }
}

const channels: RpcChannel[] = [];
afterEach(() => {
  for (const c of channels.splice(0)) c.close();
});

function setup(overrides: Partial<RpcChannelOptions> = {}) {
  const worker = new FakeWorker();
  const changeListeners = new Set<() => void>();
  const connects: Array<{ worker: WorkerInfo; restarted: boolean }> = [];
  const channel = new RpcChannel({
    prefix: "/p",
    timeoutMs: 2_000,
    probeAfterMs: 50,
    staleAfterMs: 60_000,
    onConnect: (w, restarted) => connects.push({ worker: w, restarted }),
    host: {
      controller: async () => worker,
      onControllerChange: (listener) => {
        changeListeners.add(listener);
        return () => changeListeners.delete(listener);
      },
    },
    ...overrides,
  });
  channels.push(channel);
  const changeController = () => {
    for (const l of changeListeners) l();
  };
  return { worker, channel, connects, changeController };
}

describe("RpcChannel", () => {
  it("calls the worker and keeps the class and code of its errors", async () => {
    const { channel } = setup();
    expect(await channel.call("cancel", ["a"])).toBe("cancelled");
    const error = await channel.call("start", ["nope", {}]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnknownFiberError);
    expect((error as UnknownFiberError).code).toBe("unknown_fiber");
  });

  it("refuses arguments the page cannot post with not_cloneable, and keeps working", async () => {
    const { channel } = setup();
    const error = await channel.call("start", ["agent", { onDone: () => 1 }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error).toMatchObject({ code: "not_cloneable" });
    expect((error as Error).message).toMatch(/start\(\) cannot be sent to the Service Worker/);
    expect(await channel.call("cancel", ["a"])).toBe("cancelled");
  });

  it("leaves nothing of a refused call waiting in comlink: its listener hears an answer under the call's id", async () => {
    const { port1, port2 } = new MessageChannel();
    expose({ twice: (x: number) => 2 * x }, port2);
    const endpoint = callEndpoint(port1);
    const posted: string[] = [];
    const heard: string[] = [];
    // comlink as it runs on the channel's endpoint, with the ids it posts and hears written down.
    const remote = wrap<{ twice(x: unknown): number }>({
      postMessage(message: { id: string }, transfer?: Transferable[]) {
        posted.push(message.id);
        endpoint.postMessage(message, transfer);
      },
      addEventListener(type: string, listener: EventListenerOrEventListenerObject) {
        endpoint.addEventListener(type, (event) => {
          heard.push((event as MessageEvent<{ id: string }>).data.id);
          (listener as EventListener)(event);
        });
      },
      removeEventListener() {},
      start: () => endpoint.start?.(),
    } satisfies Endpoint);
    const error = await remote.twice(() => 1).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: "DataCloneError" });
    await new Promise((resolve) => setTimeout(resolve, 0));
    // comlink frees a call's resolver only when it hears its id: the refused call's id came back.
    expect(heard).toEqual([posted[0]]);
    expect(await remote.twice(21)).toBe(42);
    expect(heard).toEqual(posted);
    port1.close();
    port2.close();
  });

  it("rejects a call past its deadline with deadline_exceeded and keeps working", async () => {
    const { channel } = setup({ probeAfterMs: 10_000 });
    const started = Date.now();
    const error = await channel.call("list", [], 150).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).code).toBe("deadline_exceeded");
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await channel.call("get", ["x"])).toBeUndefined();
  });

  it("finds a restarted worker by probing and rejects calls left on the dead port with worker_restarted", async () => {
    const { channel, worker, connects } = setup();
    await channel.open();
    worker.restart();
    const started = Date.now();
    const error = await channel.call("get", ["x"], 5_000).catch((e: unknown) => e);
    expect((error as ConnectionError).code).toBe("worker_restarted");
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(connects.map((c) => [c.worker.instanceId, c.restarted])).toEqual([
      ["i0", false],
      ["i1", true],
    ]);
    expect((await channel.call("heartbeat", [])).instanceId).toBe("i1");
  });

  it("rejects pending calls with worker_restarted when another worker takes control", async () => {
    const { channel, changeController } = setup();
    const pending = channel.call("list", [], 5_000).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    changeController();
    expect(((await pending) as ConnectionError).code).toBe("worker_restarted");
    expect(await channel.call("cancel", ["a"])).toBe("cancelled");
  });

  it("re-handshakes a channel that was silent past staleAfterMs before calling", async () => {
    const { channel, worker } = setup({ staleAfterMs: 30, probeAfterMs: 10_000 });
    await channel.open();
    worker.restart();
    await new Promise((r) => setTimeout(r, 60));
    expect((await channel.call("heartbeat", [], 1_000)).instanceId).toBe("i1");
  });

  it("fails the handshake with deadline_exceeded when no worker answers", async () => {
    const silent = { postMessage: () => {} };
    const { channel } = setup({
      timeoutMs: 100,
      host: { controller: async () => silent, onControllerChange: () => () => {} },
    });
    const error = await channel.call("get", ["x"]).catch((e: unknown) => e);
    expect((error as ConnectionError).code).toBe("deadline_exceeded");
  });
});
