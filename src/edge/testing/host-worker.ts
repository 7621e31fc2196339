/**
 * A test Worker for the edge host (bundled by `host.test.ts`): one Durable Object per fiber
 * through `routeToFiberObject`, and fibers that report each side effect to `env.LEDGER`, a
 * function in the Node test process. The ledger is how a test sees, from outside workerd, which
 * steps ran, how often, and that a timer fired with no request arriving.
 */

import { createRuntime, defineFiber } from "../../index";
import { createDurableObjectHost, type DurableObjectStateLike, routeToFiberObject } from "../index";

interface Env {
  FIBERS: Parameters<typeof routeToFiberObject>[1];
  LEDGER: { fetch(url: string): Promise<Response> };
  KEEPALIVE_MS?: string;
}

/** Tells the test process `what` happened in fiber `id`; the test may hold the answer back. */
async function record(env: Env, id: string, what: string, attempt = 1): Promise<void> {
  const url = `http://ledger/${encodeURIComponent(id)}/${encodeURIComponent(what)}?attempt=${attempt}`;
  const response = await env.LEDGER.fetch(url);
  await response.arrayBuffer();
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function fibers(env: Env, objectId: string) {
  /** `count` steps in a row, each recorded then `ms` long, each followed by a progress chunk. */
  const steps = defineFiber("steps", {
    async run(ctx, input: { count: number; ms: number }) {
      const values: number[] = [];
      for (let i = 1; i <= input.count; i++) {
        const value = await ctx.step("step", async ({ attempt }) => {
          await record(env, ctx.id, `step-${i}`, attempt);
          await sleep(input.ms);
          return i * 10;
        });
        ctx.emit("progress", { step: i, value });
        values.push(value);
      }
      return { values, object: objectId };
    },
  });

  /** A step, a durable sleep, a step. */
  const nap = defineFiber("nap", {
    async run(ctx, input: { ms: number }) {
      await ctx.step("before", () => record(env, ctx.id, "before"));
      await ctx.sleep("nap", input.ms);
      await ctx.step("after", () => record(env, ctx.id, "after"));
      return "rested";
    },
  });

  /** Waits for an "approval" event. */
  const approval = defineFiber("approval", {
    async run(ctx) {
      const answer = await ctx.waitForEvent<{ ok: boolean }>("approval");
      return answer.ok ? "approved" : "rejected";
    },
  });

  /**
   * A step whose result is within the default 1 MiB as UTF-16 counts it, but over the 2 MB row
   * as the edge stores it (text), or small as a view and 3 MB as the buffer it clones (binary).
   */
  const big = defineFiber("big", {
    async run(ctx, input: { kind: "text" | "view" }) {
      const value = await ctx.step("fetch-doc", async ({ attempt }) => {
        await record(env, ctx.id, "fetch-doc", attempt);
        return input.kind === "text" ? "\u4e2d".repeat(900_000) : new Uint8Array(3_000_000).subarray(0, 16);
      });
      return typeof value === "string" ? value.length : value.byteLength;
    },
  });

  return [steps, nap, approval, big];
}

/**
 * Makes the object's SQLite refuse every update of a fiber record while the test ledger says
 * `refuse("fiber-updates")` at the object's start: a claim (a pick-up) then keeps failing, as on
 * a storage error, and the runner can only retry in memory.
 */
function refuseFiberUpdates(ctx: DurableObjectStateLike, env: Env): void {
  let refusing = false;
  const state = ctx as unknown as {
    blockConcurrencyWhile(fn: () => Promise<void>): Promise<void>;
    storage: { sql: { exec(query: string, ...bindings: unknown[]): unknown } };
  };
  void state.blockConcurrencyWhile(async () => {
    refusing = (await (await env.LEDGER.fetch("http://ledger/_refused/fiber-updates")).text()) === "refused";
  });
  const sql = state.storage.sql;
  const exec = sql.exec.bind(sql);
  sql.exec = (query: string, ...bindings: unknown[]) => {
    if (refusing && query.startsWith("UPDATE fiberline_fibers"))
      throw new Error("The test ledger refuses updates of fiber records.");
    return exec(query, ...bindings);
  };
}

export class FiberObject {
  readonly host;

  constructor(ctx: DurableObjectStateLike & { id: { toString(): string } }, env: Env) {
    refuseFiberUpdates(ctx, env);
    this.host = createDurableObjectHost(ctx, {
      runtime: (parts) => createRuntime({ ...parts, fibers: fibers(env, ctx.id.toString()) }),
      keepAliveMs: Number(env.KEEPALIVE_MS ?? 30_000),
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
