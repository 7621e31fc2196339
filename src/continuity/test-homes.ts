/**
 * Two homes of one fiber in one process, on `MemoryStore`s, for the continuity tests: an edge (an
 * `Arbiter` over its store and a runtime over the `ArbitratedStore`) and a browser (a runtime over
 * a `ReplicatingStore` and its `Outbox`, whose `Shipper` sends straight to the arbiter and
 * heartbeats every 20 ms). The arbiter's clock stands still until `lapse()` moves it past the
 * 30 s lease. And an edge alone (`edgeInProcess`) that real `BrowserContinuity`s ship to
 * (`linkTo`). Test code only.
 */

import type { FiberDefinition } from "../core/define";
import type { FiberRecord, StreamChunk } from "../core/records";
import { createRuntime, type Runtime } from "../core/runtime";
import { type ReplicaReadOptions, readReplica } from "../edge/replica-read";
import { MemoryStore } from "../store/memory-store";
import { Arbiter } from "./arbiter";
import { ArbitratedStore } from "./arbitrated-store";
import type { BrowserContinuity } from "./browser-home";
import { Outbox } from "./outbox";
import { browserHome, type Shipment } from "./protocol";
import { ReplicatingStore } from "./replicating-store";
import { Shipper, type ShipperOptions } from "./shipper";

/** The browser's home name in these tests. */
export const TEST_HOME = browserHome("d1");

/** What `inProcessHomes` takes. */
export interface InProcessHomesOptions {
  /** The definition each home runs, by home (`"edge"`, `"browser"`). */
  fiber(where: "edge" | "browser"): FiberDefinition;
  /** Options of the browser's `Shipper` over the defaults (`send` included). */
  shipper?(parts: { arbiter: Arbiter; browser: Runtime }): Partial<ShipperOptions>;
}

/** Builds the two homes and starts the browser's shipper; `dispose()` stops and closes them. */
export function inProcessHomes({ fiber, shipper: extra }: InProcessHomesOptions) {
  let arbiterNow = Date.now();
  const edgeStore = new MemoryStore();
  const arbiter = new Arbiter({ store: edgeStore, clock: () => arbiterNow, leaseMs: 30_000 });
  const edge = createRuntime({
    store: new ArbitratedStore(edgeStore, arbiter),
    fibers: [fiber("edge")],
    pollIntervalMs: 10,
  });
  const local = new MemoryStore();
  const outbox = new Outbox();
  const browser = createRuntime({
    store: new ReplicatingStore(local, { outbox, home: TEST_HOME, replicates: () => true }),
    fibers: [fiber("browser")],
    replication: outbox,
    pollIntervalMs: 10,
  });
  const shipper = new Shipper({
    outbox,
    home: TEST_HOME,
    heartbeatMs: 20,
    send: (fiberId, shipment) => arbiter.receive(fiberId, shipment),
    ...extra?.({ arbiter, browser }),
  });
  shipper.start();
  return {
    arbiter,
    edge,
    edgeStore,
    browser,
    local,
    outbox,
    shipper,
    /** Moves the arbiter's clock past the browser's lease. */
    lapse() {
      arbiterNow += 31_000;
    },
    async dispose() {
      shipper.stop();
      for (const runtime of [edge, browser]) await runtime.close().catch(() => {});
    },
  };
}

/**
 * An edge in this process for browsers' `BrowserContinuity`s: an `Arbiter` (60 s lease, its clock
 * standing still until `takeOver`) over a replica `MemoryStore`, and no runtime.
 */
export function edgeInProcess() {
  let now = Date.now();
  const store = new MemoryStore();
  const arbiter = new Arbiter({ store, leaseMs: 60_000, clock: () => now });
  return {
    store,
    arbiter,
    /**
     * The browser's lease lapses and the edge takes fiber `id` over; it waits there, unclaimed,
     * having emitted `chunks` (none by default).
     */
    async takeOver(id: string, chunks: Array<Omit<StreamChunk, "fiberId" | "at">> = []) {
      now += 61_000;
      const moved = await arbiter.takeOverLapsed();
      if (moved.length !== 1 || moved[0] !== id)
        throw new Error(`The edge took over ${JSON.stringify(moved)}, not just ${id}.`);
      const record = (await store.getFiber(id)) as FiberRecord;
      await store.commit([
        {
          fiberId: id,
          generation: record.generation,
          fiber: { owner: undefined, leaseUntil: undefined },
          ...(chunks.length > 0 ? { chunks: chunks.map((c) => ({ ...c, fiberId: id, at: now })) } : {}),
        },
      ]);
    },
  };
}

/**
 * Points `continuity`'s edge link at `edge` in this process: shipments to its arbiter, replica
 * reads answered as the edge's route answers them (`readReplica`, cursors included).
 */
export function linkTo(continuity: BrowserContinuity, edge: { arbiter: Arbiter; store: MemoryStore }): void {
  const link = continuity.link as unknown as Record<string, unknown>;
  link.ship = (id: string, shipment: Shipment) => edge.arbiter.receive(id, shipment);
  link.readReplica = (id: string, after: number, options?: ReplicaReadOptions) =>
    readReplica(edge.store, id, after, options?.cursor);
}
