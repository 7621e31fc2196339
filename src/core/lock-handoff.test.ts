/**
 * Handing a fiber over between two runtimes that share Web Locks (a Service Worker and its next
 * version): the second one waits while the first holds the lock and picks the fiber up when it
 * lets go, and no step runs in both.
 */

import { afterEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { defineFiber } from "./define";
import { type WebLockManager, webLocks } from "./locks";
import { createRuntime, type Runtime } from "./runtime";

/** An in-process Web Locks manager with the semantics the runtime relies on (exclusive, ifAvailable, queueing). */
function fakeLockManager(): WebLockManager {
  const held = new Set<string>();
  const queues = new Map<string, Array<() => void>>();
  const grantNext = (name: string) => {
    const next = queues.get(name)?.shift();
    if (next) next();
  };
  return {
    async request(name, options, callback) {
      if (held.has(name)) {
        if (options.ifAvailable) return callback(null);
        await new Promise<void>((resolve) => {
          const queue = queues.get(name) ?? [];
          queue.push(resolve);
          queues.set(name, queue);
        });
      }
      held.add(name);
      try {
        return await callback({ name });
      } finally {
        held.delete(name);
        grantNext(name);
      }
    },
  };
}

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

describe("lock handoff", () => {
  it("resumes a fiber held by another runtime once that runtime lets go, never running a step in both", async () => {
    const store = new MemoryStore();
    const locks = webLocks(fakeLockManager());
    const log: Array<{ runner: string; key: string; phase: "start" | "end" }> = [];
    const ticker = (runner: string) =>
      defineFiber("ticker", {
        async run(ctx, input: { count: number }) {
          for (let i = 0; i < input.count; i++) {
            await ctx.step("tick", async ({ idempotencyKey }) => {
              log.push({ runner, key: idempotencyKey, phase: "start" });
              await new Promise((r) => setTimeout(r, 5));
              log.push({ runner, key: idempotencyKey, phase: "end" });
              return i;
            });
          }
          return "done";
        },
      });
    const a = createRuntime({ store, locks, fibers: [ticker("A")], runnerId: "A" });
    const b = createRuntime({ store, locks, fibers: [ticker("B")], runnerId: "B" });
    runtimes.push(a, b);
    const fiber = await a.start("ticker", { count: 30 }, { id: "handoff" });
    await expect.poll(() => log.length).toBeGreaterThan(4);

    // B finds the fiber running under A's lock: it must not run it now.
    await b.recover();
    expect((await b.inspect(fiber.id)).active).toBe(false);

    // A goes away (a Service Worker stopped): its lock is released and B takes over.
    await a.close();
    const handedOverAt = log.length;
    expect(await b.result(fiber.id)).toBe("done");

    const bStarts = log.filter((e) => e.runner === "B" && e.phase === "start");
    expect(bStarts.length).toBeGreaterThan(0);
    expect(log.slice(0, handedOverAt).every((e) => e.runner === "A")).toBe(true);
    // A step A completed never runs again; at most the one A was cut off in runs in both.
    const completedByA = new Set(
      log
        .slice(0, handedOverAt)
        .filter((e) => e.phase === "end")
        .map((e) => e.key),
    );
    expect(bStarts.filter((e) => completedByA.has(e.key))).toEqual([]);
    expect(new Set(log.filter((e) => e.phase === "end").map((e) => e.key)).size).toBe(30);
  });
});
