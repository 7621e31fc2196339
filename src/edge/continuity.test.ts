/**
 * Continuity with a real edge home (issue #18): a browser runtime in this Node process (a
 * `ReplicatingStore` over a `MemoryStore`, an `Outbox`, a `Shipper` over HTTP) replicates a fiber
 * to its Durable Object in workerd. The browser dies mid-step; once its lease lapses the object's
 * alarm takes the fiber over and runs the cut step again with `interrupted: true` and the same
 * key, and the replica holds one contiguous stream; the relaunched browser is fenced. Each step's
 * effects are counted outside both homes.
 */

import { afterAll, describe, expect, it, vi } from "vitest";
import { Outbox } from "../continuity/outbox";
import { browserHome } from "../continuity/protocol";
import { ReplicatingStore } from "../continuity/replicating-store";
import { Shipper } from "../continuity/shipper";
import { defineFiber } from "../core/define";
import { createRuntime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { type ReplicaSnapshot, shipOverHttp } from "./replica-routes";
import { Ledger } from "./testing/ledger";
import { bundleWorker, TestWorker } from "./testing/workerd";
import { decodeValue } from "./value-codec";

const ledger = new Ledger();
const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/continuity-worker.ts"),
  durableObjects: { FIBERS: "FiberObject" },
  // Long enough that answers arrive before Rule C's deadline (the lease less 1 s) even while
  // other workerd suites load the machine; a shorter lease starves the browser of step starts.
  bindings: { LEASE_MS: "10000" },
  serviceBindings: { LEDGER: ledger.binding },
});
afterAll(() => worker.dispose());

const PREFIX = "/__fiberline";
const HOME = browserHome("node");

describe("continuity with a Durable Object as the second home", () => {
  it("takes a fiber over once the browser's lease lapses, runs the cut step again, and fences the browser", async () => {
    const browserRuns: Array<{ step: string; key: string; interrupted: boolean }> = [];
    const job = defineFiber("job", {
      async run(ctx) {
        for (const name of ["a", "b"]) {
          const value = await ctx.step(name, async ({ idempotencyKey, interrupted }) => {
            browserRuns.push({ step: name, key: idempotencyKey, interrupted });
            // The browser dies during step b: its function never returns.
            if (name === "b") await new Promise(() => {});
            return `${name}@browser`;
          });
          ctx.emit("progress", { step: name, value });
        }
        return "done";
      },
    });
    const outbox = new Outbox();
    const store = new ReplicatingStore(new MemoryStore(), { outbox, home: HOME, replicates: () => true });
    const browser = createRuntime({ store, fibers: [job], replication: outbox });
    const send = shipOverHttp(`http://edge.test${PREFIX}`, (url, init) =>
      worker.fetch(new URL(url).pathname, init),
    );
    const shipper = new Shipper({ outbox, home: HOME, send, heartbeatMs: 300 });
    shipper.start();

    await browser.start(job, null, { id: "hand-off" });
    await vi.waitFor(() => expect(browserRuns.map((r) => r.step)).toEqual(["a", "b"]), { timeout: 30_000 });
    // Every tab closed: the worker and its shipper stop with step b running.
    shipper.stop();
    await browser.close();

    await ledger.arrived("hand-off", "b", { attempt: 2, timeoutMs: 40_000 });
    await vi.waitFor(
      async () => {
        const record = (await (await worker.fetch(`${PREFIX}/fibers/hand-off`)).json()) as { status: string };
        expect(record.status).toBe("completed");
      },
      { timeout: 20_000 },
    );
    // Step a ran once, in the browser; step b once in each home, the second time interrupted.
    expect(browserRuns).toEqual([
      { step: "a", key: "hand-off:a#1", interrupted: false },
      { step: "b", key: "hand-off:b#1", interrupted: false },
    ]);
    expect(ledger.count("hand-off", "a")).toBe(0);
    expect(ledger.entries.filter((e) => e.fiber === "hand-off").map((e) => [e.what, e.attempt])).toEqual([
      ["b", 2],
    ]);

    const replica = decodeValue(
      await (await worker.fetch(`${PREFIX}/fibers/hand-off/replica?after=0`)).text(),
    ) as ReplicaSnapshot;
    expect(replica.chunks.map((c) => c.seq)).toEqual(replica.chunks.map((_, i) => i + 1));
    expect(replica.chunks.map((c) => c.type)).toEqual([
      "fiber.start",
      "progress",
      "fiber.recovered",
      "progress",
      "fiber.end",
    ]);
    expect(replica.chunks[1]?.data).toEqual({ step: "a", value: "a@browser" });
    expect(replica.chunks[3]?.data).toEqual({ step: "b", value: "b@edge-again" });
    expect(replica.record.home).toMatchObject({ home: "edge", epoch: 2, formerHome: HOME });

    // The browser comes back: its first shipment tells it the fiber lives at the edge now.
    const relaunched = new Shipper({ outbox, home: HOME, send });
    relaunched.kick("hand-off");
    await vi.waitFor(() => expect(outbox.where("hand-off")).toMatchObject({ status: "away", home: "edge" }));
    relaunched.stop();
  }, 120_000);

  it("takes over a fiber whose timer came due in the browser's lease, once that lease lapses", async () => {
    // The browser dies asleep: the replica's wake-up falls inside the browser's lease, when the
    // edge may not run it. The alarm that fires then must still wake the object at the lease's end.
    const browserRuns: string[] = [];
    const sleeper = defineFiber("sleeper", {
      async run(ctx, input: { ms: number }) {
        await ctx.step("a", async () => {
          browserRuns.push("a");
        });
        await ctx.sleep("nap", input.ms);
        await ctx.step("b", async () => {
          browserRuns.push("b");
        });
        return "slept";
      },
    });
    const outbox = new Outbox();
    const store = new ReplicatingStore(new MemoryStore(), { outbox, home: HOME, replicates: () => true });
    const browser = createRuntime({ store, fibers: [sleeper], replication: outbox });
    const send = shipOverHttp(`http://edge.test${PREFIX}`, (url, init) =>
      worker.fetch(new URL(url).pathname, init),
    );
    const shipper = new Shipper({ outbox, home: HOME, send, heartbeatMs: 300 });
    shipper.start();
    await browser.start(sleeper, { ms: 2_000 }, { id: "asleep" });
    await vi.waitFor(
      async () => {
        const record = (await (await worker.fetch(`${PREFIX}/fibers/asleep`)).json()) as { status: string };
        expect(record.status).toBe("sleeping");
      },
      { timeout: 30_000 },
    );
    shipper.stop();
    await browser.close();
    expect(browserRuns).toEqual(["a"]);

    await ledger.arrived("asleep", "b", { attempt: 1, timeoutMs: 40_000 });
    await vi.waitFor(
      async () => {
        const record = (await (await worker.fetch(`${PREFIX}/fibers/asleep`)).json()) as {
          status: string;
          home?: { home: string };
        };
        expect(record).toMatchObject({ status: "completed", home: { home: "edge" } });
      },
      { timeout: 20_000 },
    );
    expect(ledger.count("asleep", "a")).toBe(0);
  }, 120_000);
});
