/**
 * Concurrent steps (`Promise.all`) settle one macrotask apart (`RunJournal`), on the platform's
 * next turn. In Node that turn is a `setImmediate`, which must keep the event loop awake: an
 * unref'd one waited for the next timer, the journal's 1 s valve, on every concurrent settle
 * (8 batches of 5 steps took 12 s instead of milliseconds).
 */

import { afterEach, expect, it, vi } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { defineFiber } from "./define";
import { createRuntime } from "./runtime";

afterEach(() => {
  vi.useRealTimers();
});

it("runs batches of concurrent steps to the end without any timer firing", async () => {
  // Timers frozen, `setImmediate` real: a run that needed the valve (or any timer) never ends,
  // and the test fails on its timeout.
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
  const batches = defineFiber("batches", {
    async run(ctx, input: { batches: number; width: number }) {
      const sums: number[] = [];
      for (let b = 0; b < input.batches; b++) {
        const values = await Promise.all(
          Array.from({ length: input.width }, (_, i) => ctx.step("part", () => b * input.width + i)),
        );
        sums.push(values.reduce((x, y) => x + y, 0));
      }
      return sums;
    },
  });
  const runtime = createRuntime({ store: new MemoryStore(), fibers: [batches] });
  const fiber = await runtime.start(batches, { batches: 8, width: 5 });
  expect(await runtime.result(fiber)).toEqual([10, 35, 60, 85, 110, 135, 160, 185]);
  vi.useRealTimers();
  await runtime.close();
}, 5_000);
