/**
 * The fibers the benchmarks run, shared by the dedicated bench worker and the bench Service
 * Worker. Each is the smallest handler that exercises one path of the engine; timings are taken
 * inside the handler with `performance.now()` so that harness overhead stays out of them.
 */

import { defineAgent, openAICompatible } from "../../src/agent/index";
import { defineFiber } from "../../src/index";
import { MOCK_MODEL_BASE, now } from "./clock";
import { randomText } from "./raw-idb";

export { MOCK_MODEL_BASE, now };

/** Yields to the event loop (a macrotask, without the 4 ms clamp of nested `setTimeout`). */
export function nextTask(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * In-memory hooks a workload sets before starting fibers: a gate every stepping fiber waits on,
 * a hook run between blocks of steps (where the job measures a block of the raw baseline, so both
 * sides see the same moment of a noisy machine), a callback when a replayed fiber reaches new
 * work, and a promise that parks a fiber.
 */
export const probe: {
  gate: Promise<void>;
  between: () => Promise<void>;
  resumed: (at: number) => void;
  park: Promise<void>;
  stop: boolean;
} = {
  gate: Promise.resolve(),
  between: async () => {},
  resumed: () => {},
  park: new Promise(() => {}),
  stop: false,
};

/**
 * B1, B2: `n` sequential trivial steps in blocks of `block`, with `probe.between()` after each
 * block; returns the time spent in the steps alone.
 */
export const stepper = defineFiber("bench.stepper", {
  async run(ctx, input: { n: number; block: number }) {
    await probe.gate;
    let ms = 0;
    for (let i = 0; i < input.n; i += input.block) {
      const t0 = performance.now();
      for (let j = i; j < Math.min(input.n, i + input.block); j++) await ctx.step("s", () => j);
      ms += performance.now() - t0;
      await probe.between();
    }
    return { ms };
  },
});

/** B1: `n` sequential stashes of a `bytes`-sized state, in blocks like `stepper`. */
export const stasher = defineFiber("bench.stasher", {
  async run(ctx, input: { n: number; block: number; pad: string }) {
    let ms = 0;
    for (let i = 0; i < input.n; i += input.block) {
      const t0 = performance.now();
      for (let j = i; j < Math.min(input.n, i + input.block); j++) await ctx.stash({ i: j, pad: input.pad });
      ms += performance.now() - t0;
      await probe.between();
    }
    return { ms };
  },
});

/**
 * B6: `n` completed steps (issued `batch` at a time, so the setup is quick), then parks; a
 * replay that gets past them calls `probe.resumed`.
 */
export const longJournal = defineFiber("bench.long-journal", {
  async run(ctx, input: { n: number; batch: number }) {
    for (let i = 0; i < input.n; i += input.batch) {
      const size = Math.min(input.batch, input.n - i);
      await Promise.all(Array.from({ length: size }, (_, j) => ctx.step("s", () => i + j)));
    }
    probe.resumed(performance.now());
    await probe.park;
    return null;
  },
});

/** B7: waits for an event (suspended and unloaded while it waits). */
export const waiter = defineFiber("bench.waiter", {
  async run(ctx) {
    return await ctx.waitForEvent("go");
  },
});

/** B12: ends at once (a fiber kept until its retention ends). */
export const finisher = defineFiber("bench.finisher", {
  async run() {
    return null;
  },
});

/**
 * B4, B5, B7: a step every `interval` ms that emits one chunk (a model streaming slowly); runs
 * until `n` ticks or `probe.stop`.
 */
export const ticker = defineFiber("bench.ticker", {
  async run(ctx, input: { n: number; interval: number; emit: boolean }) {
    for (let i = 0; i < input.n && !probe.stop; i++) {
      await ctx.step("tick", async ({ emit }) => {
        await delay(input.interval);
        if (input.emit) emit("tick", { i, t: now() });
        return i;
      });
    }
    return null;
  },
});

/** B3 throughput: `n` chunks as fast as possible, yielding to the event loop every `burst`. */
export const emitter = defineFiber("bench.emitter", {
  async run(ctx, input: { n: number; burst: number; text: string }) {
    for (let i = 0; i < input.n; i++) {
      ctx.emit("token", { i, t: now(), text: input.text });
      if (i % input.burst === input.burst - 1) await nextTask();
    }
    return null;
  },
});

/** B3 latency: one chunk every `interval` ms. */
export const pacedEmitter = defineFiber("bench.paced-emitter", {
  async run(ctx, input: { n: number; interval: number; text: string }) {
    for (let i = 0; i < input.n; i++) {
      await delay(input.interval);
      ctx.emit("token", { i, t: now(), text: input.text });
    }
    return null;
  },
});

/** B8: `n` steps each returning `size` random characters. */
export const diskStepper = defineFiber("bench.disk-stepper", {
  async run(ctx, input: { n: number; size: number; batch: number }) {
    for (let i = 0; i < input.n; i += input.batch) {
      const size = Math.min(input.batch, input.n - i);
      await Promise.all(Array.from({ length: size }, () => ctx.step("s", () => randomText(input.size))));
    }
    return null;
  },
});

/** B8: `n` chunks of `size` random characters. */
export const diskEmitter = defineFiber("bench.disk-emitter", {
  async run(ctx, input: { n: number; size: number; burst: number }) {
    for (let i = 0; i < input.n; i++) {
      ctx.emit("token", randomText(input.size));
      if (i % input.burst === input.burst - 1) await nextTask();
    }
    return null;
  },
});

/** Per-token delay of the mock model in B9: a fast model, about 200 tokens/s. */
export const B9_TOKEN_DELAY_MS = 5;

/** B9: the demo's agent loop (one model call, no tools) on the mock model served over HTTP. */
export const benchAgent = defineAgent({
  name: "bench.agent",
  model: openAICompatible({
    baseUrl: MOCK_MODEL_BASE,
    model: "mock",
    continuation: "assistant-prefix",
    headers: { "x-mock-delay-ms": String(B9_TOKEN_DELAY_MS) },
  }),
  maxTurns: 1,
});

export const benchFibers = [
  benchAgent,
  stepper,
  stasher,
  longJournal,
  waiter,
  finisher,
  ticker,
  emitter,
  pacedEmitter,
  diskStepper,
  diskEmitter,
];
