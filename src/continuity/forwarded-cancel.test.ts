/**
 * A cancel that reaches the edge (`POST .../cancel`, `cancelReplicated`) while a browser runs the
 * fiber, in one process on `MemoryStore`s: the arbiter keeps it on the lease and sends it in its
 * answers; the browser cancels the fiber there (its step's signal aborts) and ships the end. If
 * the browser is gone, the takeover ends the fiber as `cancelled` and the edge never runs it.
 * Effects are counted outside both homes.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import { FencedError, FiberNotFoundError } from "../core/errors";
import { isTerminal } from "../core/records";
import type { Runtime } from "../core/runtime";
import type { Arbiter, CancelDecision } from "./arbiter";
import { cancelReplicated, cancelShipped } from "./cancel";
import { EDGE_HOME } from "./protocol";
import { TEST_HOME as HOME, inProcessHomes } from "./test-homes";

const disposers: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const dispose of disposers.splice(0)) await dispose();
});

/** A long step (a model call) that ends only when its signal aborts; records where it ran. */
function longCall(effects: string[], where: string) {
  return defineFiber("long-call", {
    async run(ctx) {
      return await ctx.step("call", async ({ signal }) => {
        effects.push(`${where}: started`);
        await new Promise<void>((_, reject) =>
          signal.addEventListener("abort", () => {
            effects.push(`${where}: aborted`);
            reject(signal.reason);
          }),
        );
      });
    },
  });
}

function wait(check: () => unknown): Promise<void> {
  return vi.waitFor(async () => expect(await check()).toBe(true), { timeout: 10_000, interval: 10 });
}

function homes() {
  const effects: string[] = [];
  const cancels: string[] = [];
  const link = { cut: false };
  const h = inProcessHomes({
    fiber: (where) => longCall(effects, where),
    shipper: ({ arbiter, browser }) => ({
      retry: { initialMs: 10, maxMs: 20 },
      send: (fiberId, shipment) =>
        link.cut ? Promise.reject(new TypeError("Failed to fetch")) : arbiter.receive(fiberId, shipment),
      onCancel: (fiberId, reason) => {
        cancels.push(reason);
        return browser.cancel(fiberId, reason);
      },
    }),
  });
  disposers.push(h.dispose);
  /** What the Durable Object host waits with: the replica's end, polled here. */
  const waitForEnd = async (fiberId: string) => {
    for (let i = 0; i < 500; i++) {
      const status = (await h.edgeStore.getFiber(fiberId))?.status;
      if (status !== undefined && isTerminal(status)) return status;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return undefined;
  };
  return { ...h, effects, cancels, link, waitForEnd };
}

describe("a cancel that reaches the edge while a browser runs the fiber", () => {
  it("is carried out in the browser: the step's signal aborts, the end is shipped, and the edge answers cancelled", async () => {
    const h = homes();
    await h.browser.start("long-call", null, { id: "c1" });
    await wait(() => h.effects.includes("browser: started"));
    // Before, the edge's cancel was refused (409 fenced): the browser holds the fiber.
    await expect(h.edge.cancel("c1", "stop")).rejects.toMatchObject({ code: "fenced" });

    const reply = await cancelReplicated(
      { runtime: h.edge, arbiter: h.arbiter, waitForEnd: h.waitForEnd },
      "c1",
      "stopped at the edge",
    );
    expect(reply).toEqual({ status: "cancelled" });
    expect(h.effects).toEqual(["browser: started", "browser: aborted"]);
    expect(h.cancels[0]).toBe("stopped at the edge");
    const replica = await h.edgeStore.getFiber("c1");
    expect(replica).toMatchObject({ status: "cancelled", error: { message: "stopped at the edge" } });
    expect(replica?.home).toMatchObject({ home: HOME, epoch: 1 });
    expect(replica?.home?.cancel).toBeUndefined();
    const stream = await h.edgeStore.readStream("c1", 0);
    expect(stream.at(-1)).toMatchObject({ type: "fiber.end", data: { status: "cancelled" } });
    expect(stream.filter((c) => c.type === "fiber.end")).toHaveLength(1);
    expect((await h.browser.get("c1"))?.status).toBe("cancelled");
  });

  it("is answered forwarded (202) when the fiber has not ended within the wait, and carried out all the same", async () => {
    const h = homes();
    await h.browser.start("long-call", null, { id: "c2" });
    await wait(async () => (await h.edgeStore.getFiber("c2"))?.status === "running");
    const reply = await cancelReplicated(
      { runtime: h.edge, arbiter: h.arbiter, waitForEnd: async () => undefined },
      "c2",
    );
    expect(reply).toEqual({ status: "running", forwarded: true });
    await wait(async () => (await h.edgeStore.getFiber("c2"))?.status === "cancelled");
    expect(new Set(h.cancels)).toEqual(new Set(["Cancelled by request."]));
    expect(h.effects).toEqual(["browser: started", "browser: aborted"]);
  });

  it("is carried out by the takeover when the browser is gone: the fiber ends cancelled and the edge never runs it", async () => {
    const h = homes();
    await h.browser.start("long-call", null, { id: "c3" });
    await wait(async () => (await h.edgeStore.getFiber("c3"))?.status === "running");
    await wait(() => h.effects.includes("browser: started"));
    // The browser dies (its shipper and runtime gone) before an answer brings the cancel.
    h.shipper.stop();
    await h.browser.close();

    const reply = await cancelReplicated({ runtime: h.edge, arbiter: h.arbiter }, "c3", "stop");
    expect(reply).toEqual({ status: "running", forwarded: true });
    expect(await h.arbiter.state("c3")).toMatchObject({ home: HOME, cancel: { reason: "stop" } });

    h.lapse();
    expect(await h.arbiter.takeOverLapsed()).toEqual(["c3"]);
    await h.edge.recover();
    const replica = await h.edgeStore.getFiber("c3");
    expect(replica).toMatchObject({ status: "cancelled", error: { code: "cancelled", message: "stop" } });
    expect(replica?.home).toMatchObject({ home: EDGE_HOME, epoch: 2 });
    const stream = await h.edgeStore.readStream("c3", 0);
    expect(stream.at(-1)).toMatchObject({ type: "fiber.end", data: { status: "cancelled" } });
    expect(h.effects.filter((e) => e.startsWith("edge"))).toEqual([]);
    // A cancel after that answers the end.
    expect(await cancelReplicated({ runtime: h.edge, arbiter: h.arbiter }, "c3")).toEqual({
      status: "cancelled",
    });
  });

  it("is carried out at the edge once the edge holds the fiber, and goes to the browser again after a handoff back", async () => {
    const h = homes();
    await h.browser.start("long-call", null, { id: "c4" });
    await wait(() => h.effects.includes("browser: started"));
    h.shipper.stop();
    await h.browser.close();
    h.lapse();
    await h.arbiter.takeOverLapsed();
    await h.edge.recover();
    await wait(() => h.effects.includes("edge: started"));
    // The step the browser had started runs again at the edge (interrupted), and is cancelled there.
    const reply = await cancelReplicated({ runtime: h.edge, arbiter: h.arbiter }, "c4", "stop");
    expect(reply).toEqual({ status: "cancelled" });
    await wait(() => h.effects.includes("edge: aborted"));
    expect((await h.edgeStore.getFiber("c4"))?.status).toBe("cancelled");
  });
});

describe("a cancel in the browser that runs the fiber (cancelShipped)", () => {
  it("is answered once the replica holds the end", async () => {
    const h = homes();
    await h.browser.start("long-call", null, { id: "s1" });
    await wait(() => h.effects.includes("browser: started"));
    expect(await cancelShipped({ runtime: h.browser, outbox: h.outbox }, "s1", "stop")).toBe("cancelled");
    // Answered after the arbiter acknowledged it: the replica has ended already.
    expect((await h.edgeStore.getFiber("s1"))?.status).toBe("cancelled");
  });

  it("is refused (fenced) when the edge took the fiber over before the end was shipped, and then cancelled there", async () => {
    const h = homes();
    await h.browser.start("long-call", null, { id: "s2" });
    await wait(async () => (await h.edgeStore.getFiber("s2"))?.status === "running");
    await wait(() => h.effects.includes("browser: started"));
    h.link.cut = true;
    const answered = cancelShipped({ runtime: h.browser, outbox: h.outbox }, "s2", "stop");
    let settled = false;
    void answered.then(
      () => (settled = true),
      () => (settled = true),
    );
    // Cancelled here (a bare runtime.cancel would answer now), not yet at the replica.
    await wait(async () => (await h.browser.get("s2"))?.status === "cancelled");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(settled).toBe(false);

    // The lease lapses while the link is cut: the edge takes over and would run the fiber on.
    h.lapse();
    expect(await h.arbiter.takeOverLapsed()).toEqual(["s2"]);
    h.link.cut = false;
    await expect(answered).rejects.toMatchObject({ code: "fenced" });
    expect((await h.edgeStore.getFiber("s2"))?.status).toBe("running");
    // What BrowserContinuity.cancel does next: cancel it where it runs now.
    expect(await cancelReplicated({ runtime: h.edge, arbiter: h.arbiter }, "s2", "stop")).toEqual({
      status: "cancelled",
    });
    expect((await h.edgeStore.getFiber("s2"))?.status).toBe("cancelled");
  });
});

describe("cancelReplicated when the fiber changes home between the decision and the claim", () => {
  /** `cancelReplicated` with stand-ins for the edge's runtime (its `cancel`) and its arbiter. */
  const cancelWith = (runtime: Pick<Runtime, "cancel">, arbiter: Pick<Arbiter, "cancel">, reason?: string) =>
    cancelReplicated({ runtime: runtime as Runtime, arbiter: arbiter as Arbiter }, "f", reason);

  it("decides again when the edge's claim is refused (a come-home won), and forwards the cancel", async () => {
    const decisions: CancelDecision[] = [
      { status: "here" },
      { status: "forwarded", fiberStatus: "sleeping", home: HOME },
    ];
    const arbiter = { cancel: vi.fn(async () => decisions.shift() as CancelDecision) };
    const runtime = {
      cancel: vi.fn(async () => {
        throw new FencedError("fenced", "Fiber f runs at browser:d1 right now and was not cancelled.");
      }),
    };
    const reply = await cancelWith(runtime, arbiter, "stop");
    expect(reply).toEqual({ status: "sleeping", forwarded: true });
    expect(runtime.cancel).toHaveBeenCalledTimes(1);
    expect(arbiter.cancel).toHaveBeenCalledTimes(2);
  });

  it("gives up with the fence after a few tries, and passes other errors on at once", async () => {
    const arbiter = { cancel: vi.fn(async (): Promise<CancelDecision> => ({ status: "here" })) };
    const fenced = { cancel: vi.fn(async () => Promise.reject(new FencedError("fenced", "moved"))) };
    await expect(cancelWith(fenced, arbiter)).rejects.toMatchObject({ code: "fenced" });
    expect(fenced.cancel).toHaveBeenCalledTimes(4);
    const missing = { cancel: vi.fn(async () => Promise.reject(new FiberNotFoundError("f"))) };
    await expect(cancelWith(missing, arbiter)).rejects.toMatchObject({ code: "fiber_not_found" });
    expect(missing.cancel).toHaveBeenCalledTimes(1);
  });
});
