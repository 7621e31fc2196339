/**
 * A test Worker for continuity at the edge (bundled by `continuity.test.ts`): one Durable Object
 * per fiber, each the arbiter of the fibers a Node-side "browser" replicates to it, with a short
 * lease (`LEASE_MS`). The fiber reports each step it runs to `env.LEDGER`, so the test counts
 * effects outside both homes. `approval` waits for an event and then reports, in a step, that the
 * edge consumed it.
 */

import { createRuntime, defineFiber } from "../../index";
import { createDurableObjectHost, type DurableObjectStateLike, routeToFiberObject } from "../index";

interface Env {
  FIBERS: Parameters<typeof routeToFiberObject>[1];
  LEDGER: { fetch(url: string): Promise<Response> };
  LEASE_MS: string;
  /** How long a cancel forwarded to the browser waits for the fiber's end (the host's default without it). */
  CANCEL_WAIT_MS?: string;
}

async function record(env: Env, id: string, what: string, attempt: number): Promise<void> {
  const url = `http://ledger/${encodeURIComponent(id)}/${encodeURIComponent(what)}?attempt=${attempt}`;
  await (await env.LEDGER.fetch(url)).arrayBuffer();
}

/** The same definition the test's browser runtime has: two steps, a chunk after each. */
function job(env: Env) {
  return defineFiber("job", {
    async run(ctx) {
      for (const name of ["a", "b"]) {
        const value = await ctx.step(name, async ({ attempt, interrupted }) => {
          await record(env, ctx.id, name, attempt);
          return `${name}@edge${interrupted ? "-again" : ""}`;
        });
        ctx.emit("progress", { step: name, value });
      }
      return "done";
    },
  });
}

/** A step, a durable sleep of `ms`, a step: the home that runs the second one reports it. */
function sleeper(env: Env) {
  return defineFiber("sleeper", {
    async run(ctx, input: { ms: number }) {
      await ctx.step("a", async ({ attempt }) => record(env, ctx.id, "a", attempt));
      await ctx.sleep("nap", input.ms);
      await ctx.step("b", async ({ attempt }) => record(env, ctx.id, "b", attempt));
      return "slept";
    },
  });
}

/** Waits for "approval", then reports in a step that the edge consumed it. */
function approval(env: Env) {
  return defineFiber("approval", {
    async run(ctx) {
      const answer = await ctx.waitForEvent<unknown>("approval");
      return await ctx.step("after", async ({ attempt }) => {
        await record(env, ctx.id, "after", attempt);
        return { answer, where: "edge" };
      });
    },
  });
}

export class FiberObject {
  readonly host;

  constructor(ctx: DurableObjectStateLike, env: Env) {
    this.host = createDurableObjectHost(ctx, {
      runtime: (parts) => createRuntime({ ...parts, fibers: [job(env), approval(env), sleeper(env)] }),
      continuity: {
        leaseMs: Number(env.LEASE_MS),
        ...(env.CANCEL_WAIT_MS === undefined ? {} : { cancelWaitMs: Number(env.CANCEL_WAIT_MS) }),
      },
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
