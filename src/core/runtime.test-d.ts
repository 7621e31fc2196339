/**
 * Type tests: a definition carries its input and output types into `start` and `result` with no
 * annotations (checked by `npm run typecheck`).
 */

import { expectTypeOf } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { defineFiber, type FiberContext } from "./define";
import { createRuntime, type StartResult } from "./runtime";

const research = defineFiber("research", {
  async run(ctx, input: { topic: string }) {
    expectTypeOf(ctx).toEqualTypeOf<FiberContext<{ topic: string }>>();
    const notes = await ctx.step("search", () => [`about ${input.topic}`]);
    expectTypeOf(notes).toEqualTypeOf<string[]>();
    return { notes, approved: true };
  },
});

const runtime = createRuntime({ store: new MemoryStore(), fibers: [research] });

export async function typed(): Promise<void> {
  const fiber = await runtime.start(research, { topic: "durable execution" });
  expectTypeOf(fiber).toEqualTypeOf<StartResult<{ notes: string[]; approved: boolean }>>();
  const value = await runtime.result(fiber);
  expectTypeOf(value).toEqualTypeOf<{ notes: string[]; approved: boolean }>();

  // @ts-expect-error the input must match the definition's input type
  await runtime.start(research, { subject: "wrong field" });

  // Starting by name (as the page client does) is untyped by design.
  const byName = await runtime.start("research", { topic: "x" });
  expectTypeOf(byName).toEqualTypeOf<StartResult<unknown>>();
}
