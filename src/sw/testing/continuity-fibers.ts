/**
 * The fibers of the Service Worker host's continuity tests (`continuity-host.test.ts`), defined
 * once for both homes: the test's "browser" runtime in Node and the Durable Object in workerd
 * (`continuity-edge-worker.ts`). Each step reports itself through `report`, which the edge sends
 * to the test's ledger and the browser records in memory (and can leave hanging, as a step cut
 * by a kill).
 */

import { defineFiber } from "../../core/define";

/** Reports one execution of a step; what it resolves with is the step's result. */
export type Report = (
  fiberId: string,
  step: string,
  attempt: number,
  interrupted: boolean,
) => Promise<string>;

/** The test fibers, reporting through `report`. */
export function continuityFibers(report: Report) {
  /** Two steps, a chunk after each. */
  const job = defineFiber("job", {
    async run(ctx) {
      for (const name of ["a", "b"]) {
        const value = await ctx.step(name, ({ attempt, interrupted }) =>
          report(ctx.id, name, attempt, interrupted),
        );
        ctx.emit("progress", { step: name, value });
      }
      return "done";
    },
  });
  /** Waits for event "go", then runs one step with its payload. */
  const waiter = defineFiber("waiter", {
    async run(ctx) {
      ctx.emit("waiting");
      const payload = await ctx.waitForEvent<{ n: number }>("go");
      const value = await ctx.step("after", ({ attempt, interrupted }) =>
        report(ctx.id, "after", attempt, interrupted),
      );
      ctx.emit("got", { payload, value });
      return payload;
    },
  });
  /** Waits for event "go" twice, emitting each payload: a fiber that takes two events. */
  const pair = defineFiber("pair", {
    async run(ctx) {
      ctx.emit("waiting");
      const payloads: unknown[] = [];
      for (let i = 0; i < 2; i++) {
        payloads.push(await ctx.waitForEvent<{ n: number }>("go"));
        ctx.emit("got", { payload: payloads.at(-1) });
      }
      return payloads;
    },
  });
  return { job, waiter, pair };
}
