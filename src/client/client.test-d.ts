/**
 * Type tests: `connect<Map>()` types `start()` by fiber name, its input and its result, and the
 * React hooks carry the same map (checked by `npm run typecheck`).
 */

import { expectTypeOf } from "vitest";
import { defineFiber } from "../core/define";
import type { StartResult } from "../core/runtime";
import { useStartFiber } from "../react/use-start-fiber";
import { connect, type FiberlineClient } from "./client";

const research = defineFiber("research", {
  async run(_ctx, input: { topic: string }) {
    return { notes: [input.topic] };
  },
});
type Fibers = { research: typeof research };

export async function typed(): Promise<void> {
  const fl = await connect<Fibers>();
  expectTypeOf(fl).toEqualTypeOf<FiberlineClient<Fibers>>();
  const fiber = await fl.start("research", { topic: "durable execution" }, { idempotencyKey: "k" });
  expectTypeOf(fiber).toEqualTypeOf<StartResult<{ notes: string[] }>>();
  expectTypeOf(await fl.result(fiber)).toEqualTypeOf<{ notes: string[] }>();

  // @ts-expect-error "draft" is not a fiber of the map
  await fl.start("draft", { topic: "x" });
  // @ts-expect-error the input must match the definition's input type
  await fl.start("research", { subject: "wrong field" });

  // Without a map, any name and input are accepted.
  const untyped = await connect();
  expectTypeOf(await untyped.start("anything", 42)).toEqualTypeOf<StartResult<unknown>>();
}

export function Component(): null {
  const { start } = useStartFiber<Fibers>();
  // @ts-expect-error the hook checks input types by name too
  void start("research", { topic: 1 });
  return null;
}
