/**
 * The edge of the continuity e2e, run by `wrangler dev` (`wrangler.toml` here): one Durable
 * Object per fiber with continuity on (`LEASE_MS`), the same fibers as the page's Service Worker
 * (`fibers.ts`, reporting to `LEDGER_URL`), and CORS for any origin, since the worker's origin
 * (the page's) is not the edge's. No `authorize`: the edge host refuses it with continuity until
 * owners are checked, and this spec is about the handoffs.
 */

import { createRuntime } from "../../src/core/runtime";
import {
  createDurableObjectHost,
  type DurableObjectStateLike,
  routeToFiberObject,
} from "../../src/edge/index";
import { continuityFibers } from "./fibers";

interface Env {
  FIBERS: Parameters<typeof routeToFiberObject>[1];
  LEASE_MS: string;
  LEDGER_URL: string;
}

export class FiberObject {
  readonly host;

  constructor(ctx: DurableObjectStateLike, env: Env) {
    const fibers = continuityFibers("edge", () => env.LEDGER_URL);
    this.host = createDurableObjectHost(ctx, {
      runtime: (parts) => createRuntime({ ...parts, fibers: [fibers.ticker, fibers.agent] }),
      continuity: { leaseMs: Number(env.LEASE_MS) },
      keepAliveMs: 500,
    });
  }

  fetch(request: Request): Promise<Response> {
    return this.host.fetch(request);
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
    const response =
      (await routeToFiberObject(request, env.FIBERS)) ?? new Response("not found", { status: 404 });
    const headers = new Headers(response.headers);
    for (const [name, value] of Object.entries(CORS)) headers.set(name, value);
    return new Response(response.body, { status: response.status, headers });
  },
};
