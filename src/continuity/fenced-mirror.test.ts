/**
 * What a home that does not run a fiber does with it, against an in-process edge (an `Arbiter`
 * and an edge runtime on a `MemoryStore`, behind a fetch the test can cut): a cancel it cannot
 * carry out is refused (`fenced`), not answered with the fiber's status as if done; and a fiber
 * this browser holds with no backlog (waiting for an event), fenced by a heartbeat's answer
 * after the edge took it over, is mirrored from then on, so a page reading its stream sees what
 * the edge does, not a stream stuck at what this home had.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import type { FiberEvent } from "../core/records";
import { createRuntime, type Runtime } from "../core/runtime";
import { handleFiberlineRequest } from "../edge/http-routes";
import { handleReplicaRequest } from "../edge/replica-routes";
import { MemoryStore } from "../store/memory-store";
import { Arbiter } from "./arbiter";
import { ArbitratedStore } from "./arbitrated-store";
import { createReplicatedRuntime } from "./browser-home";

const PREFIX = "/__fiberline";
const BASE = `http://edge.test${PREFIX}`;

const approval = defineFiber("approval", {
  async run(ctx) {
    const answer = await ctx.waitForEvent("approval");
    ctx.emit("approved", answer);
    return answer;
  },
});

const gate = { open: () => {} };
const gated = defineFiber("gated", {
  async run(ctx) {
    return ctx.step("answer", async () => {
      await new Promise<void>((resolve) => (gate.open = resolve));
      return "answer from the browser";
    });
  },
});

const tally = defineFiber("tally", {
  async run(ctx) {
    const votes: unknown[] = [];
    for (let i = 0; i < 2; i++) votes.push(await ctx.waitForEvent("vote"));
    return votes;
  },
});

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An in-process edge and a browser home replicating `approval` to it over a fetch that can be cut. */
async function homes() {
  const clock = { skew: 0 };
  const edgeStore = new MemoryStore();
  const arbiter = new Arbiter({ store: edgeStore, leaseMs: 30_000, clock: () => Date.now() + clock.skew });
  const edge: Runtime = createRuntime({
    store: new ArbitratedStore(edgeStore, arbiter),
    fibers: [approval, gated, tally],
    pollIntervalMs: 10,
  });
  cleanups.push(() => edge.close());
  const link = { online: true, loseNextAnswer: false };
  const edgeFetch: typeof fetch = async (input, init) => {
    if (!link.online) throw new TypeError("Failed to fetch");
    const request = new Request(input, init);
    const answer =
      (await handleReplicaRequest(request, { arbiter, store: edgeStore, prefix: PREFIX })) ??
      (await handleFiberlineRequest(request, { runtime: edge, prefix: PREFIX })) ??
      new Response("{}", { status: 404 });
    if (link.loseNextAnswer && request.url.endsWith("/replicate")) {
      // Applied at the edge, and the link goes down before the answer comes back.
      link.loseNextAnswer = false;
      link.online = false;
      throw new TypeError("Failed to fetch");
    }
    return answer;
  };
  const browser = createReplicatedRuntime({
    store: new MemoryStore(),
    fibers: [approval, gated, tally],
    pollIntervalMs: 10,
    edge: {
      baseUrl: BASE,
      fibers: ["approval", "gated", "tally"],
      fetch: edgeFetch,
      deviceId: "d1",
      leaseMs: 900,
      mirrorWaitMs: 0,
      mirrorPollMs: 50,
    },
  });
  cleanups.push(
    () => browser.runtime.close(),
    () => browser.continuity.stop(),
  );
  await browser.continuity.start();
  return { clock, edgeStore, arbiter, edge, link, edgeFetch, browser };
}

describe("a cancel that reaches a home which does not run the fiber", () => {
  it("is refused with fenced (409) instead of answered with the fiber's status; where it runs, it cancels", async () => {
    const { edgeStore, edgeFetch, browser } = await homes();
    await browser.runtime.start("approval", null, { id: "c1" });
    await vi.waitFor(async () => expect((await edgeStore.getFiber("c1"))?.status).toBe("waiting"));
    // Another device, or a server, asks the edge while this browser holds the fiber.
    const atEdge = await edgeFetch(`${BASE}/fibers/c1/cancel`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(atEdge.status).toBe(409);
    expect(await atEdge.json()).toMatchObject({ error: { code: "fenced" } });
    expect((await browser.runtime.get("c1"))?.status).toBe("waiting");
    expect(await browser.continuity.cancel("c1", "no longer needed")).toBe("cancelled");
    await vi.waitFor(async () => expect((await edgeStore.getFiber("c1"))?.status).toBe("cancelled"));
  });
});

describe("an event whose shipment was applied but whose answer was lost", () => {
  it("is consumed once, though the fiber changed home twice before the browser heard back", async () => {
    const { clock, edgeStore, arbiter, edge, link, browser } = await homes();
    await browser.runtime.start("tally", null, { id: "t1" });
    await vi.waitFor(async () => expect((await edgeStore.getFiber("t1"))?.status).toBe("waiting"));
    link.loseNextAnswer = true;
    const sent = browser.continuity.sendEvent("t1", "vote", "A").then(
      () => "sent",
      (error: unknown) => error,
    );
    await vi.waitFor(() => expect(link.online).toBe(false));
    // The edge takes over and consumes "A"; another device brings the fiber home, then lapses.
    clock.skew += 31_000;
    expect(await arbiter.takeOverLapsed()).toEqual(["t1"]);
    await edge.recover();
    await vi.waitFor(async () =>
      expect((await edgeStore.readInbox("t1")).map((e) => e.consumedBy !== undefined)).toEqual([true]),
    );
    await vi.waitFor(async () =>
      expect(await arbiter.comeHome("t1", "browser:d2")).toMatchObject({ status: "granted" }),
    );
    clock.skew += 31_000;
    expect(await arbiter.takeOverLapsed()).toEqual(["t1"]);
    await edge.recover();
    // Back online, this browser learns the fiber moved and sends "A" to the edge again.
    link.online = true;
    expect(await sent).toBe("sent");
    await edge.sendEvent("t1", "vote", "B");
    await vi.waitFor(async () => expect((await edgeStore.getFiber("t1"))?.status).toBe("completed"));
    expect((await edgeStore.getFiber("t1"))?.result).toEqual(["A", "B"]);
  });

  it("takes an event id only in a browser home's form on the edge's event route", async () => {
    const { edgeFetch } = await homes();
    const post = (body: unknown) =>
      edgeFetch(`${BASE}/fibers/nobody/events`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    for (const eventId of ["edge:1", "browser:d1:0", "browser:d1", 7]) {
      const answer = await post({ name: "vote", eventId });
      expect(answer.status).toBe(400);
    }
    expect((await post({ name: "vote", eventId: "browser:d1:3" })).status).toBe(404);
  });
});

describe("result() of a replicated fiber", () => {
  it("resolves once the end is shipped, not when it is only durable here (a takeover could replace it)", async () => {
    const { edgeStore, link, browser } = await homes();
    await browser.runtime.start("gated", null, { id: "g1" });
    // The step's start reached the edge (Rule A); then the link goes down and the step ends here.
    await vi.waitFor(async () => expect((await edgeStore.readJournal("g1")).length).toBe(1));
    link.online = false;
    let settled = false;
    const result = browser.runtime.result("g1").finally(() => {
      settled = true;
    });
    gate.open();
    await vi.waitFor(async () => expect((await browser.runtime.get("g1"))?.status).toBe("completed"));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(settled).toBe(false);
    link.online = true;
    expect(await result).toBe("answer from the browser");
    expect((await edgeStore.getFiber("g1"))?.status).toBe("completed");
  });
});

describe("a fiber fenced by a heartbeat", () => {
  it("is mirrored from then on: the page's stream goes on with what the edge does", async () => {
    const { clock, edgeStore, arbiter, edge, link, browser } = await homes();
    await browser.runtime.start("approval", null, { id: "f1" });
    await vi.waitFor(async () => expect((await edgeStore.getFiber("f1"))?.status).toBe("waiting"));
    const seen: FiberEvent[] = [];
    void (async () => {
      for await (const event of browser.runtime.events("f1")) seen.push(event);
    })().catch(() => {});

    // Cut off past the lease: the edge takes the fiber over, and a webhook answers it there.
    link.online = false;
    clock.skew += 31_000;
    expect(await arbiter.takeOverLapsed()).toEqual(["f1"]);
    await edge.recover();
    await edge.sendEvent("f1", "approval", { ok: true });
    await vi.waitFor(async () => expect((await edgeStore.getFiber("f1"))?.status).toBe("completed"));

    // Back online: the next heartbeat is fenced, and the copy here catches up with the replica.
    link.online = true;
    await vi.waitFor(async () => expect((await browser.runtime.get("f1"))?.status).toBe("completed"), {
      timeout: 5_000,
    });
    await vi.waitFor(
      () => expect(seen.map((e) => e.type)).toEqual(["fiber.start", "approved", "fiber.end"]),
      {
        timeout: 5_000,
      },
    );
  });
});
