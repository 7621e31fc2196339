/**
 * Flow control of the port streams: a page reader that stops reading holds at most a window of
 * chunk data, over the Service Worker's port stream (real MessageChannels in Node, the runtime on
 * a MemoryStore) and over the extension host's stream port (the fake `chrome`); reading again,
 * it gets every chunk once and in order.
 */

import { afterEach, describe, expect, it } from "vitest";
import { readExtensionStream } from "../client/extension-stream";
import { readPortStream } from "../client/port-stream";
import { defineFiber } from "../core/define";
import { createRuntime, type Runtime } from "../core/runtime";
import { FakeChrome } from "../extension/fake-chrome";
import { createExtensionHost } from "../extension/host";
import { MemoryStore } from "../store/memory-store";
import { openPortStream } from "./port-stream";
import { STREAM_WINDOW, StreamCredit } from "./stream-credit";

const BLOB = "x".repeat(256 * 1024);
const COUNT = 60; // 60 x 256 KiB: 15 MiB, more than three windows

const blobs = defineFiber("blobs", {
  async run(ctx, input: { n: number }) {
    for (let i = 0; i < input.n; i++) ctx.emit("blob", { i, s: BLOB });
    return "done";
  },
});

const runtimes: Runtime[] = [];
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

/** The `i` of each chunk an item list holds, in order. */
function blobIndexes(items: unknown[]): number[] {
  return items.flatMap((item) => {
    const chunk = item as { event?: string; data?: string } | null;
    return chunk?.event === "blob" && chunk.data !== undefined
      ? [(JSON.parse(chunk.data) as { i: number }).i]
      : [];
  });
}

describe("port stream flow control", () => {
  it("holds a stalled page reader to a window over the worker's port, then delivers the rest once", async () => {
    const runtime = createRuntime({ store: new MemoryStore(), fibers: [blobs] });
    runtimes.push(runtime);
    const fiber = await runtime.start(blobs, { n: COUNT });
    await runtime.result(fiber);
    let posted = 0;
    const items = readPortStream(async (port, window) => {
      const post = port.postMessage.bind(port);
      port.postMessage = ((message: { type: string; data?: string }) => {
        if (message.type === "chunk") posted += message.data?.length ?? 0;
        post(message);
      }) as typeof port.postMessage;
      await openPortStream(runtime, fiber.id, 0, port, undefined, { window });
    });
    const seen: unknown[] = [(await items.next()).value, (await items.next()).value];
    // The reader stops: the worker sends up to a window and waits.
    await new Promise((r) => setTimeout(r, 200));
    expect(posted).toBeLessThanOrEqual(STREAM_WINDOW + BLOB.length);
    expect(posted).toBeLessThan(COUNT * BLOB.length);
    for await (const item of items) seen.push(item);
    expect(blobIndexes(seen)).toEqual(Array.from({ length: COUNT }, (_, i) => i));
    expect(posted).toBeGreaterThanOrEqual(COUNT * BLOB.length);
  });

  it("holds a stalled page reader to a window over an extension's stream port too", async () => {
    const fake = new FakeChrome();
    const runtime = createRuntime({ store: new MemoryStore(), fibers: [blobs] });
    runtimes.push(runtime);
    const host = createExtensionHost({ runtime, chrome: fake.chrome });
    cleanups.push(() => host.dispose());
    const fiber = await runtime.start(blobs, { n: COUNT });
    await runtime.result(fiber);
    let posted = 0;
    const connect = fake.pageRuntime.connect.bind(fake.pageRuntime);
    fake.pageRuntime.connect = ((info: { name: string }) => {
      const port = connect(info);
      const peer = (port as unknown as { peer: { postMessage(m: unknown): void } }).peer;
      const post = peer.postMessage.bind(peer);
      peer.postMessage = (message: { type?: string; data?: string }) => {
        if (message.type === "chunk") posted += message.data?.length ?? 0;
        post(message);
      };
      return port;
    }) as typeof fake.pageRuntime.connect;
    const items = readExtensionStream(fake.pageRuntime, fiber.id, 0, new AbortController().signal);
    const seen: unknown[] = [(await items.next()).value, (await items.next()).value];
    await new Promise((r) => setTimeout(r, 200));
    expect(posted).toBeLessThanOrEqual(STREAM_WINDOW + BLOB.length);
    for await (const item of items) seen.push(item);
    expect(blobIndexes(seen)).toEqual(Array.from({ length: COUNT }, (_, i) => i));
  });

  it("never waits for credit the page holds back: a chunk bigger than what is left of the window still goes", async () => {
    // A small chunk, then one whose JSON text is over 4 MiB though its estimate is under the
    // 1 MiB limit (a Uint8Array is counted by its bytes, and sent as {"0":200,...}).
    const mixed = defineFiber("mixed", {
      async run(ctx) {
        ctx.emit("small", { hi: 1 });
        ctx.emit("bytes", { b: new Uint8Array(450_000).fill(200) });
        return "done";
      },
    });
    const runtime = createRuntime({ store: new MemoryStore(), fibers: [mixed] });
    runtimes.push(runtime);
    const fiber = await runtime.start(mixed, {});
    await runtime.result(fiber);
    const events: string[] = [];
    for await (const item of readPortStream((port, window) =>
      openPortStream(runtime, fiber.id, 0, port, undefined, { window }),
    ))
      if (typeof item === "object" && "event" in item) events.push(item.event);
    expect(events).toEqual(["fiber.start", "small", "bytes", "fiber.end"]);
  }, 10_000);

  it("sends a chunk larger than the window when nothing is in flight", async () => {
    const credit = new StreamCredit(10);
    const signal = new AbortController().signal;
    await credit.reserve(100, signal);
    let second = false;
    const next = credit.reserve(5, signal).then(() => {
      second = true;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(second).toBe(false);
    // The page returns credit by halves of a window: under half in flight, anything goes.
    credit.grant(96);
    await next;
    expect(second).toBe(true);
  });
});
