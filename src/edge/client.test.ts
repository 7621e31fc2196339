/**
 * `fiberline/client` pointed at the edge host with `connect({ baseUrl })`: the same client API as
 * with the Service Worker, over HTTP, against real Durable Objects in workerd; errors keep their
 * class and code, and the client's reader rides out a killed workerd by itself.
 */

import { afterAll, describe, expect, it } from "vitest";
import { connect } from "../client/index";
import { FiberNotFoundError, UnknownFiberError } from "../core/errors";
import type { FiberEvent } from "../core/records";
import { Ledger } from "./testing/ledger";
import { bundleWorker, TestWorker } from "./testing/workerd";

const ledger = new Ledger();
const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/host-worker.ts"),
  durableObjects: { FIBERS: "FiberObject" },
  persist: true,
  bindings: { KEEPALIVE_MS: "300" },
  serviceBindings: { LEDGER: ledger.binding },
});

afterAll(() => worker.dispose());

/** Sends the client's requests into workerd (which restarts on another port). */
const viaWorker: typeof fetch = (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  return worker.fetch(`${url.pathname}${url.search}`, init);
};

const client = await connect({ baseUrl: "http://edge.test", fetch: viaWorker, timeoutMs: 5_000 });

describe("connect({ baseUrl }) against the edge host", () => {
  it("starts, streams, inspects and returns the result of a fiber", async () => {
    const started = await client.start("steps", { count: 2, ms: 1 }, { id: "c-1" });
    expect(started).toEqual({ id: "c-1", name: "steps", status: "running", created: true });
    const events: FiberEvent[] = [];
    for await (const event of client.events("c-1")) events.push(event);
    expect(events.map((e) => e.type)).toEqual(["fiber.start", "progress", "progress", "fiber.end"]);
    expect(await client.result("c-1")).toMatchObject({ values: [10, 20] });
    expect((await client.inspect("c-1")).journal).toHaveLength(2);
    expect(await client.get("nobody")).toBeUndefined();
  });

  it("sends events, cancels, and keeps error classes and codes", async () => {
    await client.start("approval", undefined, { id: "c-approve" });
    await expect.poll(async () => (await client.get("c-approve"))?.status).toBe("waiting");
    await client.sendEvent("c-approve", "approval", { ok: true });
    expect(await client.result("c-approve")).toBe("approved");

    await client.start("approval", undefined, { id: "c-cancel" });
    expect(await client.cancel("c-cancel", "no longer needed")).toBe("cancelled");
    await expect(client.result("c-cancel")).rejects.toMatchObject({ code: "cancelled" });

    const unknown = await client.start("no-such-fiber", {}, { id: "c-x" }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(UnknownFiberError);
    const missing = await client.inspect("nobody").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(FiberNotFoundError);
    expect(missing).toMatchObject({ code: "fiber_not_found" });
  });

  it("reads every chunk exactly once across a workerd restart, reconnecting by itself", async () => {
    ledger.hold("c-crash", "step-2");
    await client.start("steps", { count: 3, ms: 10 }, { id: "c-crash" });
    const events: FiberEvent[] = [];
    const reading = (async () => {
      for await (const event of client.events("c-crash")) events.push(event);
    })();
    await ledger.arrived("c-crash", "step-2");
    await worker.restart();
    ledger.releaseAll();
    await reading;
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.map((e) => e.type)).toEqual([
      "fiber.start",
      "progress",
      "fiber.recovered",
      "progress",
      "progress",
      "fiber.end",
    ]);
  });
});
