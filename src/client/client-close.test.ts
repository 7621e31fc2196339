/**
 * `client.close()` ends the readers the client still has open (they would otherwise keep reading
 * and reconnecting after the page let go of the client), with `client_closed`; the fiber goes on.
 * The client speaks HTTP (`connect({ baseUrl })`) to the host's routes on a MemoryStore runtime.
 */

import { afterEach, describe, expect, it } from "vitest";
import { defineFiber } from "../core/define";
import { ConnectionError } from "../core/errors";
import { createRuntime, type Runtime } from "../core/runtime";
import { handleFiberlineRequest } from "../edge/http-routes";
import { MemoryStore } from "../store/memory-store";
import { connect } from "./client";

const waiter = defineFiber("waiter", {
  async run(ctx) {
    ctx.emit("asked", {});
    return await ctx.waitForEvent("answer");
  },
});

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

describe("client.close()", () => {
  it("ends its open readers with client_closed and leaves the fiber running", async () => {
    const runtime = createRuntime({ store: new MemoryStore(), fibers: [waiter], pollIntervalMs: 10 });
    runtimes.push(runtime);
    const requests: string[] = [];
    const fetchFromHost: typeof fetch = async (input, init) => {
      const request = new Request(input, init);
      requests.push(new URL(request.url).pathname);
      const answer = await handleFiberlineRequest(request, { runtime, prefix: "/__fiberline" });
      return answer ?? new Response(null, { status: 404 });
    };
    const client = await connect({ baseUrl: "http://host.test", fetch: fetchFromHost, timeoutMs: 2_000 });
    const { id } = await client.start("waiter", {});
    const seen: string[] = [];
    const reading = (async () => {
      for await (const event of client.events(id)) seen.push(event.type);
    })().then(
      () => "ended",
      (error: unknown) => error,
    );
    await expect.poll(() => seen).toEqual(["fiber.start", "asked"]);
    client.close();
    const outcome = await reading;
    expect(outcome).toBeInstanceOf(ConnectionError);
    expect(outcome).toMatchObject({ code: "client_closed" });
    // No reader reconnects after the close, and a new one is refused at once.
    const after = requests.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(requests.length).toBe(after);
    await expect(client.events(id).next()).rejects.toMatchObject({ code: "client_closed" });
    expect((await runtime.get(id))?.status).toBe("waiting");
  });

  it("reads with a caller's signal where AbortSignal.any is missing (older Safari, Firefox, Chrome)", async () => {
    const runtime = createRuntime({ store: new MemoryStore(), fibers: [waiter], pollIntervalMs: 10 });
    runtimes.push(runtime);
    const fetchFromHost: typeof fetch = async (input, init) =>
      (await handleFiberlineRequest(new Request(input, init), { runtime, prefix: "/__fiberline" })) ??
      new Response(null, { status: 404 });
    const client = await connect({ baseUrl: "http://host.test", fetch: fetchFromHost, timeoutMs: 2_000 });
    const { id } = await client.start("waiter", {});
    const any = Object.getOwnPropertyDescriptor(AbortSignal, "any");
    Reflect.deleteProperty(AbortSignal, "any");
    try {
      const stop = new AbortController();
      const first = await client.events(id, { signal: stop.signal }).next();
      expect(first.value).toMatchObject({ seq: 1, type: "fiber.start" });
    } finally {
      if (any) Object.defineProperty(AbortSignal, "any", any);
      client.close();
    }
  });
});
