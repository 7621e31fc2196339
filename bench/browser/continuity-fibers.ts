/**
 * B10's fibers (continuity, issue #18), defined once for both homes: the bench's dedicated worker
 * runs them on a replicated runtime, and the bench edge worker (`bench/edge/worker.ts`) has the
 * same definitions, because a fiber's two homes must run the same code. `defineFiber` is the only
 * import, so the edge bundle does not pull in the browser bench's other fibers.
 */

import { defineFiber } from "../../src/index";

/**
 * Turn-taking between the three lanes of B10's first row (unreplicated, Rule A, `awaitStart:
 * false`), all stepping in one worker: a lane runs a block of steps only while it holds the turn
 * and passes it on after the block, so each block has the worker to itself and the three sides
 * see the same moments of a loaded machine (B1 alternates the same way with its raw side).
 */
export const lanes: {
  turn: number;
  count: number;
  waiters: Array<() => void>;
  /**
   * Per lane, what it waits for after a block before passing the turn (a replicated lane: until
   * the arbiter acknowledged everything so far), so no lane's shipping runs into another lane's
   * block; timed apart from the steps.
   */
  settle: Array<((fiberId: string) => Promise<void>) | undefined>;
} = {
  turn: 0,
  count: 3,
  waiters: [],
  settle: [],
};

async function myTurn(lane: number): Promise<void> {
  while (lanes.turn !== lane) await new Promise<void>((resolve) => lanes.waiters.push(resolve));
}

function passTurn(): void {
  lanes.turn = (lanes.turn + 1) % lanes.count;
  const waiting = lanes.waiters.splice(0);
  for (const wake of waiting) wake();
}

/**
 * `n` sequential trivial steps (B1's `stepper`; with `workMs`, each awaits that long), in blocks of `block` run while `lane` holds the
 * turn; returns the time spent inside the blocks (and in the first step alone: a replicated
 * fiber's first step waits for its start to reach the edge under Rule A), and after them in
 * `lanes.settle`. The same kind is used by every lane: which
 * runtime runs it decides whether it is replicated.
 */
export const laneStepper = defineFiber("bench.b10.steps", {
  async run(ctx, input: { n: number; block: number; lane: number; workMs?: number }) {
    const work = input.workMs ?? 0;
    let ms = 0;
    let settleMs = 0;
    let firstMs = 0;
    for (let i = 0; i < input.n; i += input.block) {
      await myTurn(input.lane);
      const t0 = performance.now();
      for (let j = i; j < Math.min(input.n, i + input.block); j++) {
        await ctx.step("s", async () => {
          // A step that waits on something (a tool's request) for `workMs`; none: a trivial step.
          if (work > 0) await new Promise((resolve) => setTimeout(resolve, work));
          return j;
        });
        if (j === 0) firstMs = performance.now() - t0;
      }
      const t1 = performance.now();
      ms += t1 - t0;
      await lanes.settle[input.lane]?.(ctx.id);
      settleMs += performance.now() - t1;
      passTurn();
    }
    return { ms, settleMs, firstMs };
  },
});

/**
 * A fiber that steps slowly (one step every `stepMs`, a `progress` chunk after each), for the
 * handoff row: the browser runs it until its worker is terminated, then the edge takes it over
 * once the lease lapses and carries on; `where` says which home ran a step.
 */
export const slowStepper = defineFiber("bench.b10.slow", {
  async run(ctx, input: { steps: number; stepMs: number }) {
    // workerd names itself in `navigator.userAgent`; a browser does not.
    const where = globalThis.navigator?.userAgent === "Cloudflare-Workers" ? "edge" : "browser";
    for (let i = 1; i <= input.steps; i++) {
      const result = await ctx.step(`step-${i}`, async () => {
        await new Promise((resolve) => setTimeout(resolve, input.stepMs));
        return { i, where };
      });
      ctx.emit("progress", result);
    }
    return { steps: input.steps };
  },
});

/**
 * The edge-cost row's fiber: `n` sequential trivial steps in a Durable Object, on the edge host's
 * `SqliteStore` (the row's raw side is `n` single-row SQLite inserts in the same object).
 */
export const edgeStepper = defineFiber("bench.b10.edge-steps", {
  async run(ctx, input: { n: number }) {
    for (let j = 0; j < input.n; j++) await ctx.step("s", () => j);
    return { n: input.n };
  },
});
