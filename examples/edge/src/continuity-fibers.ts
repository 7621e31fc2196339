/**
 * The fibers the example replicates from a browser (continuity, issue #18): a fiber of one of
 * these kinds starts in a page's Service Worker, ships its history here, and runs on here once
 * the browser's lease lapses. Both homes must run the same definitions, so a browser host imports
 * this module too and passes its own `where` ("browser"); the edge passes "edge"
 * (`continuityFibers("browser", defineFiber)`). Each step's
 * result says where it ran, so a test can tell which home ran what.
 *
 * - `steps` `{ steps, stepMs }`: `steps` journaled steps of `stepMs` each, a `progress` chunk after
 *   each, then returns how many ran where.
 * - `approval`: waits for an `approval` event (a page, a webhook, another device) and returns its
 *   payload.
 */

import type { defineFiber as DefineFiber } from "fiberline";

/**
 * The example's replicated kinds, running in `where` ("browser" or "edge"). `defineFiber` is
 * passed in, so this module imports nothing at run time: a browser fixture that reaches the
 * library by a path of its own (not the `fiberline` package name) can use it unchanged.
 */
export function continuityFibers(where: string, defineFiber: typeof DefineFiber) {
  const steps = defineFiber("steps", {
    async run(ctx, input: { steps: number; stepMs?: number }) {
      const ran: string[] = [];
      for (let i = 1; i <= input.steps; i++) {
        const result = await ctx.step(`step-${i}`, async ({ interrupted }) => {
          await new Promise((resolve) => setTimeout(resolve, input.stepMs ?? 100));
          return { i, where, interrupted };
        });
        ran.push(result.where);
        ctx.emit("progress", result);
      }
      return { ran };
    },
  });
  const approval = defineFiber("approval", {
    async run(ctx) {
      const answer = await ctx.waitForEvent<unknown>("approval");
      ctx.emit("approved", { answer, where });
      return { answer, where };
    },
  });
  return [steps, approval] as const;
}
