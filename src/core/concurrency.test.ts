/**
 * One runner per fiber and group commit: two runtimes on one store never both get their writes
 * in (the stale one is fenced and stops), and many fibers share transactions.
 */

import { afterEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { defineFiber } from "./define";
import { createRuntime, type Runtime } from "./runtime";
import type { Store, WriteGroup } from "./store";

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

/** Counts the transactions a runtime issues. */
function countingStore(inner: Store): Store & { commits: number; chunksWritten: number } {
  const counts = { commits: 0, chunksWritten: 0 };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === "commits" || prop === "chunksWritten") return counts[prop];
      if (prop === "commit") {
        return (groups: WriteGroup[]) => {
          counts.commits++;
          for (const g of groups) counts.chunksWritten += g.chunks?.length ?? 0;
          return target.commit(groups);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as Store & { commits: number; chunksWritten: number };
}

describe("fencing", () => {
  it("lets a second runtime take over an expired lease and fences the first one's writes", async () => {
    const store = new MemoryStore();
    const log: Array<{ runner: string; key: string }> = [];
    const ticker = (runner: string) =>
      defineFiber("ticker", {
        async run(ctx, input: { count: number }) {
          for (let i = 0; i < input.count; i++) {
            await ctx.step("tick", async ({ idempotencyKey }) => {
              log.push({ runner, key: idempotencyKey });
              await new Promise((r) => setTimeout(r, 4));
              return i;
            });
            ctx.emit("tick", { i });
          }
          return "done";
        },
      });
    // A lease shorter than the renewal period (10 ms at least): the first runtime looks dead to
    // the second.
    const a = createRuntime({ store, fibers: [ticker("A")], runnerId: "A", leaseMs: 4 });
    const b = createRuntime({ store, fibers: [ticker("B")], runnerId: "B", leaseMs: 30_000 });
    runtimes.push(a, b);
    const fiber = await a.start("ticker", { count: 40 }, { id: "shared" });
    await expect.poll(() => log.length).toBeGreaterThan(2);
    await expect
      .poll(
        async () => {
          await b.recover();
          return log.some((e) => e.runner === "B");
        },
        { timeout: 5_000, interval: 10 },
      )
      .toBe(true);
    expect(await b.result(fiber.id)).toBe("done");
    // The first runtime stopped at its first write after the takeover.
    await expect.poll(() => a.activeCount).toBe(0);
    const record = await store.getFiber("shared");
    expect(record?.owner).toBeUndefined();
    expect(record?.generation).toBeGreaterThan(1);
    // Nothing of the stale runner landed after the takeover: each tick exactly once, in order.
    const chunks = await store.readStream("shared", 0);
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i + 1));
    const ticks = chunks.filter((c) => c.type === "tick").map((c) => (c.data as { i: number }).i);
    expect(ticks).toEqual(Array.from({ length: 40 }, (_, i) => i));
    // Each step ran in one runner, except the one step that was in flight at the takeover.
    const perKey = new Map<string, Set<string>>();
    for (const e of log) perKey.set(e.key, (perKey.get(e.key) ?? new Set()).add(e.runner));
    expect([...perKey.values()].filter((runners) => runners.size > 1).length).toBeLessThanOrEqual(1);
  });

  it("does not take over a fiber whose owner keeps its lease alive", async () => {
    const store = new MemoryStore();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const runs: string[] = [];
    const waiter = (runner: string) =>
      defineFiber("gated", {
        async run(ctx) {
          await ctx.step("wait", async () => {
            runs.push(runner);
            await gate;
          });
          return runner;
        },
      });
    const a = createRuntime({ store, fibers: [waiter("A")], runnerId: "A", leaseMs: 200 });
    const b = createRuntime({ store, fibers: [waiter("B")], runnerId: "B", leaseMs: 200 });
    runtimes.push(a, b);
    const fiber = await a.start("gated", {});
    await expect.poll(() => runs.length).toBe(1);
    for (let i = 0; i < 5; i++) {
      await b.recover();
      await new Promise((r) => setTimeout(r, 80));
    }
    release();
    expect(await a.result(fiber.id)).toBe("A");
    expect(runs).toEqual(["A"]);
  });
});

describe("group commit", () => {
  it("runs 100 fibers concurrently with far fewer transactions than chunks", async () => {
    const store = countingStore(new MemoryStore());
    const chatty = defineFiber("chatty", {
      async run(ctx, input: { n: number }) {
        for (let i = 0; i < 20; i++) {
          ctx.emit("token", { i });
          if (i % 5 === 4) await ctx.step("think", () => i);
        }
        return input.n;
      },
    });
    const rt = createRuntime({ store, fibers: [chatty] });
    runtimes.push(rt);
    const fibers = await Promise.all(Array.from({ length: 100 }, (_, n) => rt.start(chatty, { n })));
    const results = await Promise.all(fibers.map((f) => rt.result(f)));
    expect(results).toEqual(Array.from({ length: 100 }, (_, n) => n));
    for (const f of fibers) {
      const chunks = await store.readStream(f.id, 0);
      expect(chunks.filter((c) => c.type === "token").map((c) => (c.data as { i: number }).i)).toEqual(
        Array.from({ length: 20 }, (_, i) => i),
      );
    }
    expect(store.chunksWritten).toBeGreaterThanOrEqual(100 * 21);
    expect(store.commits).toBeLessThan(store.chunksWritten / 10);
  });
});
