/**
 * `ctx.step(name, fn, { awaitStart: false })`: the attempt starts while its `started` entry is
 * being written, the entry still lands before anything the attempt emits or returns, a failed
 * write stops the run (and aborts the attempt), and a replicated fiber waits as always.
 */

import { afterEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { defineFiber } from "./define";
import { NonRetryableError } from "./errors";
import type { JournalEntry } from "./records";
import type { Replication } from "./replication";
import { createRuntime, type Runtime } from "./runtime";
import type { CommitResult, WriteGroup } from "./store";

const opened: Runtime[] = [];
afterEach(async () => {
  for (const runtime of opened.splice(0)) await runtime.close().catch(() => {});
});

/** Holds (or fails) the commit that carries step `call`'s `started` entry until released. */
class GatedStore extends MemoryStore {
  readonly order: string[] = [];
  failStart = false;
  #release: () => void = () => {};
  readonly #gate = new Promise<void>((resolve) => {
    this.#release = resolve;
  });

  release(): void {
    this.#release();
  }

  override async commit(groups: WriteGroup[]): Promise<CommitResult> {
    const entries = groups.flatMap((g) => g.journal ?? []) as JournalEntry[];
    const starts = entries.some((e) => e.key === "call#1" && e.status === "started");
    if (starts) {
      this.order.push("start write issued");
      await this.#gate;
      if (this.failStart) throw new Error("simulated: the disk refused the write");
      this.order.push("start durable");
    }
    for (const g of groups) for (const c of g.chunks ?? []) this.order.push(`chunk ${c.type} durable`);
    return super.commit(groups);
  }
}

function caller(order: string[], awaitStart: boolean | undefined) {
  return defineFiber("caller", {
    async run(ctx) {
      return await ctx.step(
        "call",
        async ({ signal }) => {
          order.push("attempt runs");
          ctx.emit("token", "hello");
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(resolve, 20);
            signal.addEventListener("abort", () => {
              clearTimeout(timer);
              order.push("attempt aborted");
              reject(signal.reason);
            });
          });
          return "reply";
        },
        awaitStart === undefined ? {} : { awaitStart },
      );
    },
  });
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 2));
  expect(check()).toBe(true);
};

describe("ctx.step with awaitStart: false", () => {
  it("starts the attempt while its started entry is written, and that entry still lands before its chunks", async () => {
    const store = new GatedStore();
    const runtime = createRuntime({ store, fibers: [caller(store.order, false)] });
    opened.push(runtime);
    const { id } = await runtime.start("caller", null);
    await until(() => store.order.includes("attempt runs"));
    expect(store.order.slice(0, 2)).toEqual(["start write issued", "attempt runs"]);
    store.release();
    expect(await runtime.result(id)).toBe("reply");
    const durable = store.order.filter((o) => o.endsWith("durable"));
    expect(durable.indexOf("start durable")).toBeLessThan(durable.indexOf("chunk token durable"));
    const entry = (await store.readJournal(id)).find((e) => e.key === "call#1");
    expect(entry).toMatchObject({ status: "completed", result: "reply", attempt: 1 });
  });

  it("by default, runs the attempt only once its started entry is durable", async () => {
    const store = new GatedStore();
    const runtime = createRuntime({ store, fibers: [caller(store.order, undefined)] });
    opened.push(runtime);
    const { id } = await runtime.start("caller", null);
    await until(() => store.order.includes("start write issued"));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(store.order).not.toContain("attempt runs");
    store.release();
    expect(await runtime.result(id)).toBe("reply");
    expect(store.order.indexOf("start durable")).toBeLessThan(store.order.indexOf("attempt runs"));
  });

  it("stops the run and aborts the attempt when the started entry cannot be written; nothing of the attempt is journaled", async () => {
    const store = new GatedStore();
    store.failStart = true;
    const runtime = createRuntime({ store, fibers: [caller(store.order, false)] });
    opened.push(runtime);
    const { id } = await runtime.start("caller", null);
    await until(() => store.order.includes("attempt runs"));
    store.release();
    await until(() => store.order.includes("attempt aborted"));
    expect(store.order).not.toContain("chunk token durable");
    const journal = await store.readJournal(id);
    expect(journal.find((e) => e.key === "call#1")).toBeUndefined();
    expect((await store.getFiber(id))?.status).toBe("running");
  });

  it("hands a failed attempt's error to the handler only once its start is durable", async () => {
    const store = new GatedStore();
    const failing = defineFiber("caller", {
      async run(ctx) {
        try {
          return await ctx.step(
            "call",
            () => {
              store.order.push("attempt runs");
              throw new NonRetryableError("refused at once");
            },
            { awaitStart: false },
          );
        } catch {
          store.order.push("handler sees the failure");
          return "handled";
        }
      },
    });
    const runtime = createRuntime({ store, fibers: [failing] });
    opened.push(runtime);
    const { id } = await runtime.start("caller", null);
    await until(() => store.order.includes("attempt runs"));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(store.order).not.toContain("handler sees the failure");
    store.release();
    expect(await runtime.result(id)).toBe("handled");
    expect(store.order.indexOf("start durable")).toBeLessThan(
      store.order.indexOf("handler sees the failure"),
    );
  });

  it("waits as always for a replicated fiber (Rule A)", async () => {
    const store = new GatedStore();
    let ship: () => void = () => {};
    const shippedGate = new Promise<void>((resolve) => {
      ship = resolve;
    });
    const listeners = new Set<(fiberId: string) => void>();
    let shippedYet = false;
    const replication: Replication = {
      replicated: () => true,
      shipped: () => shippedGate,
      visibleHead: () => (shippedYet ? Number.POSITIVE_INFINITY : 0),
      onShipped: (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
    const runtime = createRuntime({ store, fibers: [caller(store.order, false)], replication });
    opened.push(runtime);
    const { id } = await runtime.start("caller", null);
    await until(() => store.order.includes("start write issued"));
    store.release();
    await until(() => store.order.includes("start durable"));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(store.order).not.toContain("attempt runs");
    ship();
    shippedYet = true;
    for (const listener of listeners) listener(id);
    expect(await runtime.result(id)).toBe("reply");
  });

  it("refuses an awaitStart that is not a boolean", async () => {
    const bad = defineFiber("bad", {
      async run(ctx) {
        return await ctx.step("s", () => 1, { awaitStart: "no" as unknown as boolean });
      },
    });
    const runtime = createRuntime({ store: new MemoryStore(), fibers: [bad] });
    opened.push(runtime);
    const { id } = await runtime.start("bad", null);
    await expect(runtime.result(id)).rejects.toMatchObject({ code: "invalid_argument" });
  });
});

/** Two `awaitStart: false` steps in a row; the first (`call`, gated) returns at once. */
function twoSteps(order: string[]) {
  return defineFiber("two", {
    async run(ctx) {
      const a = await ctx.step("call", () => "a", { awaitStart: false });
      order.push("handler got the first result");
      const b = await ctx.step(
        "second",
        () => {
          order.push("second runs");
          return "b";
        },
        { awaitStart: false },
      );
      return a + b;
    },
  });
}

describe("ctx.step with awaitStart: false, an attempt that returns", () => {
  it("hands its result to the handler only once its started entry is durable", async () => {
    const store = new GatedStore();
    const runtime = createRuntime({ store, fibers: [twoSteps(store.order)] });
    opened.push(runtime);
    const { id } = await runtime.start("two", null);
    await until(() => store.order.includes("start write issued"));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(store.order).not.toContain("handler got the first result");
    store.release();
    expect(await runtime.result(id)).toBe("ab");
  });

  it("never lets the next step run when its started entry could not be written", async () => {
    const store = new GatedStore();
    store.failStart = true;
    const runtime = createRuntime({ store, fibers: [twoSteps(store.order)] });
    opened.push(runtime);
    await runtime.start("two", null);
    await until(() => store.order.includes("start write issued"));
    store.release();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(store.order).not.toContain("handler got the first result");
    expect(store.order).not.toContain("second runs");
  });
});
