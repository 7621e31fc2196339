/**
 * Type tests of `connect({ fallback })` (checked by `npm run typecheck`): the fallback needs a
 * runtime factory, sync or async, and the client it gives is typed by the same fiber map.
 */

import { expectTypeOf } from "vitest";
import { connect } from "../client/client";
import { defineFiber } from "../core/define";
import { createRuntime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";

const research = defineFiber("research", {
  async run(_ctx, input: { topic: string }) {
    return { notes: [input.topic] };
  },
});

export async function typed(): Promise<void> {
  const runtime = () => createRuntime({ store: new MemoryStore(), fibers: [research] });
  const fl = await connect<{ research: typeof research }>({ fallback: { runtime } });
  expectTypeOf(fl.leading).toEqualTypeOf<boolean>();
  expectTypeOf((await fl.start("research", { topic: "x" })).id).toEqualTypeOf<string>();
  await connect({ fallback: { runtime: async () => runtime(), when: "always", name: "my-app" } });
  // @ts-expect-error: the leader tab must be told how to build the runtime (the fibers live in app code)
  await connect({ fallback: {} });
  // @ts-expect-error: `when` is "no-service-worker" or "always"
  await connect({ fallback: { runtime, when: "sometimes" } });
}
