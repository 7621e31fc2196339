// Fiberline quick start, runnable in Node after `npm run build:lib`:
//   node examples/quickstart.mjs
// The same code runs in a Service Worker with `new IdbStore()` instead of `new MemoryStore()`.
import { createRuntime, defineFiber, MemoryStore } from "fiberline";

const research = defineFiber("research", {
  version: "1",
  async run(ctx, input) {
    const notes = await ctx.step(
      "search",
      async ({ attempt, idempotencyKey }) => {
        // A real step would call an API, passing idempotencyKey so retries are deduplicated.
        return [`${input.topic}: notes (attempt ${attempt}, key ${idempotencyKey})`];
      },
      { retry: { maxAttempts: 5, backoff: "exponential", initialDelayMs: 500 }, timeoutMs: 60_000 },
    );
    ctx.emit("progress", { pct: 50 });
    await ctx.stash({ phase: "drafting", notes });
    await ctx.sleep("cooldown", 100);
    const decision = await ctx.waitForEvent("approval", { timeoutMs: 86_400_000 });
    return { notes, approved: decision.approved };
  },
});

const runtime = createRuntime({ store: new MemoryStore(), fibers: [research] });
await runtime.recover();
const fiber = await runtime.start(research, { topic: "durable execution" }, { idempotencyKey: "demo-1" });
setTimeout(() => runtime.sendEvent(fiber.id, "approval", { approved: true }), 200);
for await (const ev of runtime.events(fiber.id, { after: 0 })) {
  console.log(ev.seq, ev.type, JSON.stringify(ev.data));
}
console.log("result:", await runtime.result(fiber));
await runtime.close();
