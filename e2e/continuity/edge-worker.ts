/**
 * The edge of the continuity e2e, run by `wrangler dev` (`wrangler.toml` here): one Durable
 * Object per fiber with continuity on (`LEASE_MS`), the same fibers as the page's Service Worker
 * (`fibers.ts`, reporting to `LEDGER_URL`), and CORS for any origin, since the worker's origin
 * (the page's) is not the edge's. No `authorize`: the edge host refuses it with continuity until
 * owners are checked, and this spec is about the handoffs.
 *
 * Fault hooks (faults.spec.ts), test-only and off unless `wrangler dev` got `FAULT_HOOKS=1`
 * (`startEdgeWorker({ faultHooks: true })`): `POST /__test/hold?fiber=<id>&at=<point>` arms a
 * hold in that fiber's object, and the next request or claim to reach the point waits there
 * until workerd is killed; `GET /__test/held?fiber=<id>` says whether it got there and what it
 * held. Points: `ship-before` (a shipment with entries reached the object and was not applied),
 * `ship-after` (it was applied, committed, and its answer is never sent), `ship-between` (the
 * arbiter applies a shipment in more than one store transaction when it carries an event, which
 * `enqueueEvent` writes alone, or creates the replica: the first of them committed, the next not
 * begun; a shipment applied in one transaction passes, and the next is tried), `claim` (the edge
 * runtime's first claim of the fiber after the arbiter's takeover: the epoch bump committed, the
 * claim not made). With `&chunks=1`, a `ship-*` hold waits for a shipment that carries stream
 * chunks (a commit that emits). Nothing else changes in the Worker.
 */

import { createRuntime } from "../../src/core/runtime";
import type { ClaimRequest, ClaimResult, Store } from "../../src/core/store";
import {
  createDurableObjectHost,
  type DurableObjectStateLike,
  routeToFiberObject,
} from "../../src/edge/index";
import type { SqliteStore } from "../../src/edge/sqlite-store";
import { decodeValue } from "../../src/edge/value-codec";
import { continuityFibers } from "./fibers";
import { readShipment } from "./shipment";

interface Env {
  FIBERS: Parameters<typeof routeToFiberObject>[1];
  LEASE_MS: string;
  LEDGER_URL: string;
  /** "1" turns the `/__test/` fault hooks on (faults.spec.ts). */
  FAULT_HOOKS?: string;
}

/** Where a fault hook holds (see the header). */
type HoldPoint = "ship-before" | "ship-after" | "ship-between" | "claim";

/** What a hold caught: the shipment's positions, or the claim. */
interface Held {
  at: HoldPoint;
  /** The held shipment's first position and how many it carried. */
  from?: number;
  count?: number;
  /** The held shipment's entry types (`create`, `commit`, `event`), in order. */
  types?: string[];
  /** The seqs of the stream chunks the held shipment carried. */
  seqs?: number[];
  /** `ship-after`: the answer that was never sent. */
  answer?: unknown;
  /** `ship-between`: the store writes the arbiter committed for the shipment, and the one held. */
  wrote?: string[];
  next?: string;
}

/** A `ship-between` hold under way: the held shipment and the writes made for it so far. */
interface Between {
  held: Held;
  wrote: string[];
}

/** Waits until the process is killed: a pending timer, so workerd never calls the request hung. */
async function holdForever(): Promise<never> {
  for (;;) await new Promise((resolve) => setTimeout(resolve, 1_000));
}

const REPLICATE = /^\/__fiberline\/fibers\/[^/]+\/replicate$/;

export class FiberObject {
  readonly host;
  readonly #faults: boolean;
  /** The armed fault hook, for one fiber, until it catches something. */
  #armed: { fiber: string; at: HoldPoint; chunks: boolean } | undefined;
  #held: Held | undefined;
  #between: Between | undefined;

  constructor(ctx: DurableObjectStateLike, env: Env) {
    const fibers = continuityFibers("edge", () => env.LEDGER_URL);
    this.#faults = env.FAULT_HOOKS === "1";
    this.host = createDurableObjectHost(ctx, {
      runtime: (parts) => {
        if (this.#faults) this.#holdClaims(parts.store);
        return createRuntime({ ...parts, fibers: [fibers.ticker, fibers.homer, fibers.agent, fibers.gate] });
      },
      continuity: { leaseMs: Number(env.LEASE_MS) },
      keepAliveMs: 500,
    });
    if (this.#faults) this.#holdSecondWrite(this.host.store);
  }

  async fetch(request: Request): Promise<Response> {
    if (!this.#faults) return this.host.fetch(request);
    const url = new URL(request.url);
    if (url.pathname === "/__test/hold" && request.method === "POST") {
      const fiber = url.searchParams.get("fiber") ?? "";
      const at = url.searchParams.get("at") as HoldPoint;
      this.#armed = { fiber, at, chunks: url.searchParams.get("chunks") === "1" };
      this.#held = undefined;
      return Response.json({ armed: this.#armed });
    }
    if (url.pathname === "/__test/held") return Response.json({ armed: this.#armed, held: this.#held });
    const armed = this.#armed;
    if (armed?.at !== "ship-before" && armed?.at !== "ship-after" && armed?.at !== "ship-between")
      return this.host.fetch(request);
    if (request.method !== "POST" || !REPLICATE.test(url.pathname)) return this.host.fetch(request);
    const { from, count, types, seqs } = readShipment(await request.clone().text());
    // Heartbeats (no entries) pass: the hold is for a shipment that carries commits.
    if (count === 0 || (armed.chunks && seqs.length === 0)) return this.host.fetch(request);
    this.#armed = undefined;
    const held: Held = { at: armed.at, from, count, types, seqs };
    if (armed.at === "ship-before") {
      this.#held = held;
      return holdForever();
    }
    if (armed.at === "ship-between") {
      this.#between = { held, wrote: [] };
      const response = await this.host.fetch(request);
      // Applied in one transaction (the second write never came): armed again for the next.
      this.#between = undefined;
      this.#armed = armed;
      return response;
    }
    const response = await this.host.fetch(request);
    // Applied: the arbiter's transactions ran. `held` is read by another request, whose answer
    // the object's output gate holds until these writes are durable.
    this.#held = { ...held, answer: decodeValue(await response.text()) };
    return holdForever();
  }

  /**
   * The `ship-between` hook, on the store the arbiter writes to (the runtime's writes go there
   * too, but the edge runtime writes no fiber a browser holds): while a held shipment is applied,
   * its first write goes through and the next waits until the process is killed.
   */
  #holdSecondWrite(store: SqliteStore): void {
    const { createFiber, commit, enqueueEvent } = store;
    store.createFiber = (record, chunks) =>
      this.#write("createFiber", () => createFiber.call(store, record, chunks));
    store.commit = (groups) => this.#write("commit", () => commit.call(store, groups));
    store.enqueueEvent = (event) => this.#write("enqueueEvent", () => enqueueEvent.call(store, event));
  }

  async #write<T>(name: string, write: () => Promise<T>): Promise<T> {
    const between = this.#between;
    if (between === undefined) return write();
    if (between.wrote.length > 0) {
      this.#between = undefined;
      // The first write resolved: `held` is read by another request, whose answer the object's
      // output gate holds until that write is durable.
      this.#held = { ...between.held, wrote: between.wrote, next: name };
      return holdForever();
    }
    const result = await write();
    between.wrote.push(name);
    return result;
  }

  /** The `claim` hook: the edge runtime's first claim of the armed fiber once the edge holds it. */
  #holdClaims(store: Store): void {
    const claim = store.claimFiber.bind(store);
    store.claimFiber = async (id: string, request: ClaimRequest): Promise<ClaimResult> => {
      const armed = this.#armed;
      if (armed?.at === "claim" && armed.fiber === id) {
        const record = await store.getFiber(id);
        if (record?.home?.home === "edge") {
          this.#armed = undefined;
          this.#held = { at: "claim" };
          return holdForever();
        }
      }
      return claim(id, request);
    };
  }

  alarm(): Promise<void> {
    return this.host.alarm();
  }
}

const CORS = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, OPTIONS",
  "access-control-allow-headers": "content-type, authorization, last-event-id",
  "access-control-max-age": "600",
};

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (request.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS });
    const url = new URL(request.url);
    if (env.FAULT_HOOKS === "1" && url.pathname.startsWith("/__test/")) {
      // One object per fiber, named by its id (routeToFiberObject without authorize).
      const fiber = url.searchParams.get("fiber") ?? "";
      return env.FIBERS.get(env.FIBERS.idFromName(fiber)).fetch(request);
    }
    const response =
      (await routeToFiberObject(request, env.FIBERS)) ?? new Response("not found", { status: 404 });
    const headers = new Headers(response.headers);
    for (const [name, value] of Object.entries(CORS)) headers.set(name, value);
    return new Response(response.body, { status: response.status, headers });
  },
};
