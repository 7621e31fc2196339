/**
 * The page's end of the port stream: answers pings, ends at `end`, rebuilds errors, and gives up
 * with `worker_restarted` when the worker goes silent (Chromium fires no close event on a dead port).
 */

import { describe, expect, it } from "vitest";
import { ConnectionError, FiberNotFoundError, serializeError } from "../core/errors";
import type { PortStreamMessage } from "../sw/protocol";
import { readPortStream } from "./port-stream";

async function drain<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

describe("readPortStream", () => {
  it("waits for the worker's first message after an open slower than three ping periods", async () => {
    const chunks = await drain(
      readPortStream(
        async (port) => {
          // The worker's first read was slow; its answer to `openStream` arrives before the port's.
          await new Promise((r) => setTimeout(r, 100));
          setTimeout(() => {
            port.postMessage({ type: "opened", created: 7 } satisfies PortStreamMessage);
            port.postMessage({
              type: "chunk",
              seq: 1,
              event: "a",
              at: 5,
              data: "1",
            } satisfies PortStreamMessage);
            port.postMessage({ type: "end" } satisfies PortStreamMessage);
          }, 5);
        },
        undefined,
        20,
      ),
    );
    expect(chunks).toEqual([{ created: 7 }, { seq: 1, event: "a", at: 5, data: "1" }]);
  });

  it("yields chunks until end and answers pings", async () => {
    const replies: unknown[] = [];
    const chunks = await drain(
      readPortStream(
        async (port) => {
          port.addEventListener("message", (e) => replies.push((e as MessageEvent).data));
          port.start();
          const post = (m: PortStreamMessage) => port.postMessage(m);
          post({ type: "chunk", seq: 1, event: "a", at: 5, data: "1" });
          post({ type: "ping" });
          post({ type: "chunk", seq: 2, event: "b", at: 6, data: "null" });
          post({ type: "end" });
        },
        undefined,
        50,
      ),
    );
    expect(chunks).toEqual([
      { seq: 1, event: "a", at: 5, data: "1" },
      { seq: 2, event: "b", at: 6, data: "null" },
    ]);
    await expect.poll(() => replies).toEqual([{ type: "pong" }, { type: "close" }]);
  });

  it("rethrows the worker's error with its class", async () => {
    const error = await drain(
      readPortStream(async (port) => {
        port.postMessage({
          type: "error",
          error: serializeError(new FiberNotFoundError("x")),
        } satisfies PortStreamMessage);
      }),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FiberNotFoundError);
  });

  it("gives up with worker_restarted when the worker stays silent", async () => {
    const started = Date.now();
    const error = await drain(readPortStream(async () => {}, undefined, 20)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).code).toBe("worker_restarted");
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
