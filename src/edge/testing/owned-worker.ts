/**
 * A test Worker for ownership inside one Durable Object (bundled by `owned-routes.test.ts`): every
 * request goes to the same object, whose host authorises the caller by an `x-user` header (a
 * stand-in for a verified token; `examples/edge` shows a real check). So principals share one
 * object and only the host's owner rows keep their fibers apart.
 */

import { createRuntime, defineFiber, UnauthorizedError } from "../../index";
import { createDurableObjectHost, type DurableObjectStateLike } from "../index";

interface Namespace {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(request: Request): Promise<Response> };
}

interface Env {
  SHARED: Namespace;
  SHORT: Namespace;
}

/** Waits for an "approval" event. */
const approval = defineFiber("approval", {
  async run(ctx) {
    const answer = await ctx.waitForEvent<{ ok: boolean }>("approval");
    return answer.ok ? "approved" : "rejected";
  },
});

export class SharedObject {
  readonly host;

  constructor(ctx: DurableObjectStateLike) {
    this.host = createDurableObjectHost(ctx, {
      runtime: (parts) => createRuntime({ ...parts, fibers: [approval] }),
      authorize: (request) => {
        const user = request.headers.get("x-user");
        if (!user) throw new UnauthorizedError("unauthorized", "Send x-user.");
        if (user === "crash") throw new Error("a verifier's internal detail");
        return user;
      },
      limits: { maxUnfinishedFibers: 2, maxBodyBytes: 1_024 },
    });
  }

  fetch(request: Request): Promise<Response> {
    return this.host.fetch(request);
  }

  alarm(): Promise<void> {
    return this.host.alarm();
  }
}

/** Ends at once. */
const quick = defineFiber("quick", { run: async () => "done" });

/**
 * The same ownership with ended fibers collected at once (`retentionMs: 0`), and a test-only
 * `GET /debug/rows` that collects and counts the object's fiber and owner rows.
 */
export class ShortRetentionObject {
  readonly host;
  readonly #sql;

  constructor(ctx: DurableObjectStateLike) {
    this.#sql = ctx.storage.sql;
    this.host = createDurableObjectHost(ctx, {
      runtime: (parts) => createRuntime({ ...parts, fibers: [quick], retentionMs: 0 }),
      authorize: (request) => request.headers.get("x-user") ?? "anon",
    });
  }

  async fetch(request: Request): Promise<Response> {
    if (new URL(request.url).pathname !== "/debug/rows") return this.host.fetch(request);
    await this.host.ready;
    await this.host.runtime.collect();
    const count = (table: string) =>
      Number(this.#sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`).toArray()[0]?.n);
    return Response.json({ fibers: count("fiberline_fibers"), owners: count("fiberline_owners") });
  }

  alarm(): Promise<void> {
    return this.host.alarm();
  }
}

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    const objects = request.headers.get("x-object") === "short-retention" ? env.SHORT : env.SHARED;
    return objects.get(objects.idFromName("one")).fetch(request);
  },
};
