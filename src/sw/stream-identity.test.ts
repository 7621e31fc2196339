/**
 * Every host that streams a fiber to a page names the fiber (its `createdAt`) and then sends
 * its chunks: the tab fallback (`fiberChunks`), the extension's stream port and the Service
 * Worker's port stream. The name and the chunks come from one read, so a fiber collected and
 * started again under its id while a stream opens never has its chunks sent under the old
 * fiber's name; and a stream that answers "ended" releases its live subscription.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import { createRuntime, type Runtime } from "../core/runtime";
import { StreamHub } from "../core/stream-hub";
import { FakeChrome } from "../extension/fake-chrome";
import { serveStreamPort } from "../extension/stream-port";
import { MemoryStore } from "../store/memory-store";
import { fiberChunks } from "./fiber-chunks";
import { openPortStream } from "./port-stream";

const chatter = defineFiber("chatter", {
  async run(ctx, input: { text: string }) {
    for (let i = 0; i < 3; i++) ctx.emit("token", `${input.text} ${i}`);
  },
});

/** A store that runs `hook` once, after the next read of a fiber's record returns from storage. */
class RacingStore extends MemoryStore {
  hook: (() => Promise<void>) | undefined;
  override async getFiber(id: string) {
    const record = await super.getFiber(id);
    await this.#fire();
    return record;
  }
  override async readStreamAndRecord(id: string, after: number, limit?: number) {
    const read = await super.readStreamAndRecord(id, after, limit);
    await this.#fire();
    return read;
  }
  async #fire(): Promise<void> {
    const hook = this.hook;
    this.hook = undefined;
    await hook?.();
  }
}

const runtimes: Runtime[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

/** An ended fiber `reused` whose record's next read collects it and starts another under its id. */
async function racing(): Promise<{ runtime: Runtime; named: number }> {
  const store = new RacingStore();
  const runtime = createRuntime({ store, fibers: [chatter], pollIntervalMs: 20 });
  runtimes.push(runtime);
  await runtime.result(await runtime.start(chatter, { text: "old" }, { id: "reused" }));
  const named = (await runtime.get("reused"))?.createdAt as number;
  store.hook = async () => {
    await store.deleteFibers(["reused"]);
    await runtime.result(await runtime.start(chatter, { text: "new" }, { id: "reused" }));
  };
  return { runtime, named };
}

/** What a page saw: the name, then the chunks' data. */
const shown = (item: unknown): unknown =>
  typeof item === "object" && item !== null && "data" in item ? JSON.parse(String(item.data)) : item;

describe("a stream names the fiber whose chunks it sends", () => {
  it("the tab fallback (fiberChunks)", async () => {
    const { runtime, named } = await racing();
    const seen: unknown[] = [];
    const reading = (async () => {
      for await (const item of fiberChunks(runtime, "reused", 1, new AbortController().signal))
        seen.push(shown(item));
    })();
    await reading.catch(() => {});
    expect(seen[0]).toEqual({ created: named });
    expect(seen.filter((data) => String(data).startsWith("new"))).toEqual([]);
  });

  it("the extension's stream port", async () => {
    const { runtime, named } = await racing();
    const fake = new FakeChrome();
    fake.onConnect.addListener((port) => serveStreamPort(runtime, port, () => {}));
    const page = fake.pageRuntime.connect({ name: "fiberline-stream" });
    const seen: unknown[] = [];
    const done = new Promise<void>((resolve) => page.onDisconnect.addListener(() => resolve()));
    page.onMessage.addListener((message) => {
      const reply = message as { type: string; created?: number; data?: string };
      seen.push(
        reply.type === "chunk"
          ? JSON.parse(String(reply.data))
          : reply.type === "opened"
            ? reply.created
            : reply.type,
      );
    });
    page.postMessage({ type: "subscribe", fiber: "reused", after: 1 });
    await done;
    expect(seen[0]).toBe(named);
    expect(seen.filter((data) => String(data).startsWith("new"))).toEqual([]);
  });
  it("the Service Worker's port stream (the fallback when fetch cannot reach it)", async () => {
    const { runtime, named } = await racing();
    const { port1, port2 } = new MessageChannel();
    const seen: unknown[] = [];
    const closed = new Promise<void>((resolve) => {
      port2.onmessage = (event) => {
        const message = event.data as { type: string; created?: number; data?: string };
        if (message.type === "opened") seen.push(message.created);
        else if (message.type === "chunk") seen.push(JSON.parse(String(message.data)));
        else if (message.type !== "ping") {
          seen.push(message.type);
          resolve();
        }
      };
    });
    await openPortStream(runtime, "reused", 1, port1);
    await closed;
    port2.close();
    expect(seen[0]).toBe(named);
    expect(seen.filter((data) => String(data).startsWith("new"))).toEqual([]);
  });
});

describe("a stream that answers 'ended'", () => {
  it("releases its live subscription (port stream, tab fallback)", async () => {
    let live = 0;
    const subscribe = StreamHub.prototype.subscribe;
    vi.spyOn(StreamHub.prototype, "subscribe").mockImplementation(function (this: StreamHub, id, subscriber) {
      live++;
      const unsubscribe = subscribe.call(this, id, subscriber);
      let released = false;
      return () => {
        if (!released) live--;
        released = true;
        unsubscribe();
      };
    });
    const runtime = createRuntime({ store: new MemoryStore(), fibers: [chatter], pollIntervalMs: 20 });
    runtimes.push(runtime);
    await runtime.result(await runtime.start(chatter, { text: "a" }, { id: "done" }));
    const head = (await runtime.get("done"))?.streamHead as number;
    const before = live;
    for (let i = 0; i < 3; i++) {
      const { port1, port2 } = new MessageChannel();
      const replies: string[] = [];
      port2.onmessage = (event) => replies.push((event.data as { type: string }).type);
      await openPortStream(runtime, "done", head, port1);
      await expect.poll(() => replies).toContain("ended");
      port2.close();
      const items: unknown[] = [];
      for await (const item of fiberChunks(runtime, "done", head, new AbortController().signal))
        items.push(item);
      expect(items.at(-1)).toBe("ended");
    }
    await expect.poll(() => live - before).toBe(0);
  });
});
