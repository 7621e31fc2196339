/**
 * A test Worker for continuity behind `authorize` (bundled by `continuity-owned.test.ts`). The
 * caller is the `x-user` header (a stand-in for a verified token). Requests with
 * `x-object: shared` all reach one object, so only the host's owner rows keep principals'
 * replicas apart; any other request goes through `routeToFiberObject` with the same hook, which
 * gives each principal's ids objects of their own. Both allow CORS from `http://app.test` only.
 */

import { createRuntime, defineFiber, UnauthorizedError } from "../../index";
import {
  type Authorize,
  createDurableObjectHost,
  type DurableObjectStateLike,
  routeToFiberObject,
} from "../index";

interface Env {
  FIBERS: Parameters<typeof routeToFiberObject>[1];
}

/** Waits for an "approval" event; the test's browser runtime has the same definition. */
const approval = defineFiber("approval", {
  async run(ctx) {
    const answer = await ctx.waitForEvent<{ ok: boolean }>("approval");
    return answer.ok ? "approved" : "rejected";
  },
});

/** The one origin whose pages may call across origins (CORS). */
const APP_ORIGIN = "http://app.test";

const authorize: Authorize = (request) => {
  const user = request.headers.get("x-user");
  if (!user) throw new UnauthorizedError("unauthorized", "Send x-user.");
  return user;
};

export class FiberObject {
  readonly host;

  constructor(ctx: DurableObjectStateLike) {
    this.host = createDurableObjectHost(ctx, {
      runtime: (parts) => createRuntime({ ...parts, fibers: [approval] }),
      continuity: { leaseMs: 10_000 },
      authorize,
      limits: { maxUnfinishedFibers: 3 },
      allowedOrigins: [APP_ORIGIN],
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
    if (request.headers.get("x-object") === "shared")
      return env.FIBERS.get(env.FIBERS.idFromName("shared")).fetch(request);
    return (
      (await routeToFiberObject(request, env.FIBERS, { authorize, allowedOrigins: [APP_ORIGIN] })) ??
      new Response("not found", { status: 404 })
    );
  },
};
