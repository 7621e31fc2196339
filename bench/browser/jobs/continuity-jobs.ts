/**
 * B10 (continuity, issue #18), run in the dedicated bench worker: the same sequential-steps fiber
 * on a plain runtime and on two runtimes that replicate it to the bench edge (Rule A, and
 * `awaitStart: false`), alternating blocks; and a slowly stepping replicated fiber whose worker
 * the harness terminates, for the edge's takeover.
 *
 * A dedicated worker rather than the bench Service Worker: B1, the row this one extends, runs
 * here, each run gets a fresh worker (fresh heap, fresh connections), and terminating the worker
 * stops the browser home at once and for good (no more shipments, no heartbeat), which a Service
 * Worker the page controls does not promise (the browser may start it again for a fetch).
 */

import { createReplicatedRuntime } from "../../../src/continuity/browser-home";
import { ForwardingStore } from "../../../src/continuity/forwarding-store";
import { Outbox } from "../../../src/continuity/outbox";
import { createRuntime, IdbStore } from "../../../src/index";
import { laneStepper, lanes, slowStepper } from "../continuity-fibers";
import type { JobContext } from "../protocol";
import { deleteDatabase } from "../raw-idb";
import { uniqueName } from "./step-jobs";

/** The lanes of the first row, in turn order. */
const LANES = ["plain", "ruleA", "noAwait"] as const;

/**
 * B10 steps: `n` sequential trivial steps in blocks of `block` on each lane; returns ms per step
 * of each, the first step's time, and the time each replicated lane waited after its blocks for
 * the arbiter to acknowledge them (not in the per-step figure).
 */
export async function b10Steps(
  ctx: JobContext,
  params: {
    n: number;
    block: number;
    edgeUrl: string;
    leaseMs: number;
    ack?: "edge" | "local" | "get" | "get-origin";
    outbox?: "idb" | "memory";
    /** Each step awaits this long (a tool's request) instead of returning at once. */
    workMs?: number;
  },
) {
  const names = LANES.map((lane) => uniqueName(`b10-${lane}`));
  const stores = names.map((name) => new IdbStore({ name, durability: ctx.durability }));
  const [plainStore, ruleAStore, noAwaitStore] = stores as [IdbStore, IdbStore, IdbStore];
  const plain = createRuntime({ store: plainStore, fibers: [laneStepper] });
  // Every shipment's round trip (a POST the arbiter answers once its writes are durable), by lane.
  const shipmentMs: Record<"ruleA" | "noAwait", number[]> = { ruleA: [], noAwait: [] };
  const timed =
    (lane: "ruleA" | "noAwait") =>
    async (url: string, init: RequestInit): Promise<Response> => {
      const t0 = performance.now();
      const response = await fetch(url, init);
      const body = await response.arrayBuffer();
      if (url.endsWith("/replicate")) shipmentMs[lane].push(performance.now() - t0);
      return new Response(body, { status: response.status, headers: response.headers });
    };
  const edge = (awaitStart: boolean) => ({
    baseUrl: params.edgeUrl,
    fibers: [{ name: laneStepper.name, awaitStart }],
    leaseMs: params.leaseMs,
    fetch:
      params.ack === "local"
        ? acknowledgeLocally(params.leaseMs)
        : params.ack === "get"
          ? acknowledgeLocally(params.leaseMs, `${params.edgeUrl}/fibers/warm/replica`)
          : params.ack === "get-origin"
            ? acknowledgeLocally(params.leaseMs, `${self.location.origin}/b10-no-such-file`)
            : timed(awaitStart ? "ruleA" : "noAwait"),
  });
  // The diagnostic `outbox: "memory"`: the replicated lanes' IdbStore is hidden behind a plain
  // forwarding store, so the outbox lives in memory and no commit writes outbox rows.
  const memory = params.outbox === "memory";
  const replicated = (store: IdbStore, awaitStart: boolean) =>
    createReplicatedRuntime({
      store: memory ? new ForwardingStore(store) : store,
      fibers: [laneStepper],
      edge: edge(awaitStart),
      ...(memory ? { outbox: new Outbox() } : {}),
    });
  const ruleA = replicated(ruleAStore, true);
  const noAwait = replicated(noAwaitStore, false);
  const errors: string[] = [];
  try {
    await Promise.all([ruleA.continuity.start(), noAwait.continuity.start()]);
    const { outbox: ruleAOutbox, shipper: ruleAShipper } = await ruleA.continuity.opened;
    const { outbox: noAwaitOutbox, shipper: noAwaitShipper } = await noAwait.continuity.opened;
    // Warm every connection, and the edge's Worker (not the fiber's object: that is the fiber's).
    await Promise.all(stores.map((store) => store.getFiber("warm")));
    // The edge's round trip from this worker (a small GET through the Worker to an object), the
    // floor of what Rule A adds to each step.
    const trips: number[] = [];
    for (let i = 0; i < 21; i++) {
      const t0 = performance.now();
      await (await fetch(`${params.edgeUrl}/fibers/warm/replica`)).arrayBuffer();
      trips.push(performance.now() - t0);
    }
    trips.sort((x, y) => x - y);

    lanes.turn = 0;
    lanes.count = LANES.length;
    lanes.settle = [undefined, (id) => ruleAOutbox.acknowledged(id), (id) => noAwaitOutbox.acknowledged(id)];
    const input = (lane: number) => ({ n: params.n, block: params.block, lane, workMs: params.workMs });
    const [plainFiber, ruleAFiber, noAwaitFiber] = await Promise.all([
      plain.start(laneStepper, input(0)),
      ruleA.runtime.start(laneStepper, input(1)),
      noAwait.runtime.start(laneStepper, input(2)),
    ]);
    const [p, a, b] = await Promise.all([
      plain.result(plainFiber),
      ruleA.runtime.result(ruleAFiber),
      noAwait.runtime.result(noAwaitFiber),
    ]);
    await ruleAOutbox.acknowledged(ruleAFiber.id).catch((e: unknown) => errors.push(String(e)));
    await noAwaitOutbox.acknowledged(noAwaitFiber.id).catch((e: unknown) => errors.push(String(e)));
    const perStep = (ms: number) => ms / params.n;
    return {
      plainMs: perStep(p.ms),
      ruleAMs: perStep(a.ms),
      noAwaitMs: perStep(b.ms),
      ruleARatio: a.ms / p.ms,
      noAwaitRatio: b.ms / p.ms,
      firstStepMs: { plain: p.firstMs, ruleA: a.firstMs, noAwait: b.firstMs },
      settleMsPerStep: { ruleA: perStep(a.settleMs), noAwait: perStep(b.settleMs) },
      fiberIds: [plainFiber.id, ruleAFiber.id, noAwaitFiber.id],
      edgeRoundTripMs: trips[10] ?? Number.NaN,
      shipmentRoundTripMs: {
        ruleA: median(shipmentMs.ruleA),
        noAwait: median(shipmentMs.noAwait),
      },
      shipmentsPerStep: {
        ruleA: ruleAShipper.stats.shipments / params.n,
        noAwait: noAwaitShipper.stats.shipments / params.n,
      },
      errors,
    };
  } finally {
    lanes.settle = [];
    ruleA.continuity.stop();
    noAwait.continuity.stop();
    await Promise.all([plain.close(), ruleA.runtime.close(), noAwait.runtime.close()]);
    await Promise.all(stores.map((store) => store.close()));
    await Promise.all(names.map((name) => deleteDatabase(name)));
  }
}

/**
 * B10 handoff: starts a replicated fiber stepping every `stepMs`, waits until the arbiter holds
 * `before` of its steps, tells the harness (checkpoint `stepping` with the fiber's id), and keeps
 * running until the harness terminates this worker.
 */
export async function b10Handoff(
  ctx: JobContext,
  params: { steps: number; stepMs: number; before: number; edgeUrl: string; leaseMs: number },
) {
  const name = uniqueName("b10-handoff");
  const store = new IdbStore({ name, durability: ctx.durability });
  const { runtime, continuity } = createReplicatedRuntime({
    store,
    fibers: [slowStepper],
    edge: { baseUrl: params.edgeUrl, fibers: [slowStepper.name], leaseMs: params.leaseMs },
  });
  await continuity.start();
  const { outbox } = await continuity.opened;
  const fiber = await runtime.start(slowStepper, { steps: params.steps, stepMs: params.stepMs });
  // Each step writes at least its journal entry and its chunk: wait until a few are acknowledged.
  while (outbox.acked(fiber.id) < params.before * 2) await new Promise((r) => setTimeout(r, 20));
  await ctx.checkpoint("stepping", { fiberId: fiber.id });
  // The harness terminates the worker after the checkpoint; the reply never comes.
  await new Promise(() => {});
  return {};
}

/**
 * The diagnostic `ack: "local"` (`B10_ACK=local npm run bench -- --only=b10`; with
 * `B10_OUTBOX=memory` too, the outbox is also kept in memory instead of IndexedDB): shipments are
 * answered in the worker itself, at once, as the arbiter would answer them (everything applied),
 * so the replicated lanes pay for the outbox and the shipper but not for the network or the edge.
 * `B10_ACK=get` first sends a small GET to the edge per shipment (the network and workerd's
 * request handling, not the arbiter's writes), `B10_ACK=get-origin` one to the bench's own Node
 * server (a 404: the browser's fetch alone). Not a row: it tells where the replicated steps' time
 * goes.
 */
function acknowledgeLocally(leaseMs: number, roundTrip?: string) {
  return async (url: string, init: RequestInit): Promise<Response> => {
    if (init.method !== "POST" || !url.endsWith("/replicate")) return await fetch(url, init);
    // `B10_ACK=get`: a small GET to the edge per shipment first (the network, not the arbiter).
    if (roundTrip !== undefined) await (await fetch(roundTrip)).arrayBuffer();
    const shipment = JSON.parse(String(init.body)) as { from: number; entries: unknown[] };
    const answer = { status: "ok", appliedPos: shipment.from + shipment.entries.length - 1, leaseMs };
    return new Response(JSON.stringify(answer), { headers: { "content-type": "application/json" } });
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}
