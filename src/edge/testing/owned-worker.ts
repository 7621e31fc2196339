/**
 * A test Worker for ownership inside one Durable Object (bundled by `owned-routes.test.ts`): every
 * request goes to the same object, whose host authorises the caller by an `x-user` header (a
 * stand-in for a verified token; `examples/edge` shows a real check). So principals share one
 * object and only the host's owner rows keep their fibers apart.
 */

import { createRuntime, defineFiber, UnauthorizedError } from "../../index";
import { createDurableObjectHost, type DurableObjectStateLike } from "../index";

interface Env {
  SHARED: {
    idFromName(name: string): unknown;
    get(id: unknown): { fetch(request: Request): Promise<Response> };
  };
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

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    return env.SHARED.get(env.SHARED.idFromName("one")).fetch(request);
  },
};
