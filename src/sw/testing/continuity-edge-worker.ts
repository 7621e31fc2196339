/**
 * The edge of the Service Worker host's continuity tests (bundled by `continuity-host.test.ts`):
 * one Durable Object per fiber with continuity on (`LEASE_MS`), running the same fibers as the
 * test's browser runtime; each step it runs is reported to `env.LEDGER`, outside both homes.
 */

import { createRuntime } from "../../core/runtime";
import { createDurableObjectHost, type DurableObjectStateLike, routeToFiberObject } from "../../edge/index";
import { continuityFibers } from "./continuity-fibers";

interface Env {
  FIBERS: Parameters<typeof routeToFiberObject>[1];
  LEDGER: { fetch(url: string): Promise<Response> };
  LEASE_MS: string;
}

export class FiberObject {
  readonly host;

  constructor(ctx: DurableObjectStateLike, env: Env) {
    const fibers = continuityFibers(async (id, step, attempt, interrupted) => {
      const url = `http://ledger/${encodeURIComponent(id)}/${encodeURIComponent(step)}?attempt=${attempt}`;
      await (await env.LEDGER.fetch(url)).arrayBuffer();
      return `${step}@edge${interrupted ? "-again" : ""}`;
    });
    this.host = createDurableObjectHost(ctx, {
      runtime: (parts) => createRuntime({ ...parts, fibers: Object.values(fibers) }),
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

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    return (await routeToFiberObject(request, env.FIBERS)) ?? new Response("not found", { status: 404 });
  },
};
