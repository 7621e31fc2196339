/**
 * The engine's behaviour as a user sees it, on `MemoryStore`: start and join, steps and retries,
 * streams, stashes, timers, events, cancellation, results, inspection and retention.
 */

import { afterEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { defineFiber } from "./define";
import {
  CancelledError,
  FiberNotFoundError,
  NonRetryableError,
  type StepFailedError,
  TimeoutError,
  UnknownFiberError,
} from "./errors";
import type { FiberEvent } from "./records";
import { createRuntime, type Runtime } from "./runtime";

const runtimes: Runtime[] = [];
function runtime(
  options: Partial<Parameters<typeof createRuntime>[0]> & {
    fibers: Parameters<typeof createRuntime>[0]["fibers"];
  },
) {
  const rt = createRuntime({ store: new MemoryStore(), pollIntervalMs: 20, ...options });
  runtimes.push(rt);
  return rt;
}
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

async function collect(rt: Runtime, id: string, after = 0): Promise<FiberEvent[]> {
  const out: FiberEvent[] = [];
  for await (const ev of rt.events(id, { after })) out.push(ev);
  return out;
}

describe("start, steps and result", () => {
  it("runs a fiber to completion and types its result", async () => {
    const greet = defineFiber("greet", {
      async run(ctx, input: { name: string }) {
        const text = await ctx.step("compose", () => `Hello, ${input.name}!`);
        ctx.emit("greeting", { text });
        return { text };
      },
    });
    const rt = runtime({ fibers: [greet] });
    const fiber = await rt.start(greet, { name: "Ada" });
    expect(fiber.created).toBe(true);
    const value = await rt.result(fiber);
    expect(value.text).toBe("Hello, Ada!");
    const events = await collect(rt, fiber.id);
    expect(events.map((e) => e.type)).toEqual(["fiber.start", "greeting", "fiber.end"]);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(events[2]?.data).toEqual({ status: "completed", result: { text: "Hello, Ada!" } });
  });

  it("joins an existing fiber by id or idempotency key and runs nothing twice", async () => {
    let runs = 0;
    const once = defineFiber("once", {
      async run(ctx) {
        await ctx.step("count", () => ++runs);
        return runs;
      },
    });
    const rt = runtime({ fibers: [once] });
    const a = await rt.start(once, {}, { idempotencyKey: "order-42" });
    const b = await rt.start(once, {}, { idempotencyKey: "order-42" });
    const c = await rt.start(once, {}, { id: a.id });
    expect(b).toMatchObject({ id: a.id, created: false });
    expect(c).toMatchObject({ id: a.id, created: false });
    await rt.result(a);
    expect(runs).toBe(1);
    expect(await rt.list()).toHaveLength(1);
  });

  it("result() resolves when the fiber ends while result() reads its record (no wait for the poll)", async () => {
    const gated = defineFiber("gated", {
      run: async (ctx) => (await ctx.waitForEvent<number>("go")) + 1,
    });
    // The record read result() makes first is held, and returns what it read before the end.
    let armed = false;
    let held: (() => void) | undefined;
    let reading!: () => void;
    const read = new Promise<void>((resolve) => {
      reading = resolve;
    });
    const disk = new (class extends MemoryStore {
      override async getFiber(id: string) {
        const record = await super.getFiber(id);
        if (armed && held === undefined && record?.status === "waiting") {
          reading();
          await new Promise<void>((resolve) => {
            held = resolve;
          });
        }
        return record;
      }
    })();
    // A poll so long that only the fiber's own end can wake result() in time.
    const rt = runtime({ store: disk, fibers: [gated], pollIntervalMs: 60_000 });
    const fiber = await rt.start(gated, {});
    await expect.poll(async () => (await disk.getFiber(fiber.id))?.status).toBe("waiting");
    armed = true;
    const result = rt.result(fiber);
    await read;
    await rt.sendEvent(fiber.id, "go", 41);
    await expect.poll(async () => (await rt.store.readStream(fiber.id, 0)).at(-1)?.type).toBe("fiber.end");
    held?.();
    expect(await result).toBe(42);
  }, 10_000);

  it("starts by name, as the Service Worker client does", async () => {
    const echo = defineFiber("echo", { run: async (_ctx, input: string) => input });
    const rt = runtime({ fibers: [echo] });
    const fiber = await rt.start("echo", "hi");
    expect(await rt.result(fiber.id)).toBe("hi");
    await expect(rt.start("nope", {})).rejects.toBeInstanceOf(UnknownFiberError);
  });

  it("retries a failing step with its policy, then completes", async () => {
    const attempts: number[] = [];
    const flaky = defineFiber("flaky", {
      async run(ctx) {
        return ctx.step(
          "call",
          ({ attempt }) => {
            attempts.push(attempt);
            if (attempt < 3) throw new Error("503 from upstream");
            return "ok";
          },
          { retry: { maxAttempts: 5, initialDelayMs: 1 } },
        );
      },
    });
    const rt = runtime({ fibers: [flaky] });
    expect(await rt.result(await rt.start(flaky, {}))).toBe("ok");
    expect(attempts).toEqual([1, 2, 3]);
  });

  it("stops retrying at NonRetryableError and fails the fiber with it", async () => {
    let calls = 0;
    const bad = defineFiber("bad", {
      async run(ctx) {
        await ctx.step("call", () => {
          calls++;
          throw new NonRetryableError("The API rejected the request (400).");
        });
      },
    });
    const rt = runtime({ fibers: [bad] });
    const fiber = await rt.start(bad, {});
    const error = await rt.result(fiber).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NonRetryableError);
    expect((error as NonRetryableError).code).toBe("non_retryable");
    expect(calls).toBe(1);
    expect((await rt.get(fiber.id))?.status).toBe("failed");
  });

  it("fails a step with step_failed after maxAttempts and lets the handler catch it", async () => {
    const tolerant = defineFiber("tolerant", {
      async run(ctx) {
        try {
          await ctx.step("always", () => Promise.reject(new Error("boom")), {
            retry: { maxAttempts: 2, initialDelayMs: 1 },
          });
          return "unreachable";
        } catch (error) {
          return `${(error as StepFailedError).code}: ${(error as Error).message}`;
        }
      },
    });
    const rt = runtime({ fibers: [tolerant] });
    const text = await rt.result(await rt.start(tolerant, {}));
    expect(text).toMatch(/^step_failed: Step "always#1" .* failed after 2 attempt\(s\): Error: boom$/);
  });

  it("times out an attempt with timeoutMs and retries it", async () => {
    const slow = defineFiber("slow", {
      async run(ctx) {
        return ctx.step(
          "maybe-slow",
          ({ attempt, signal }) =>
            attempt === 1
              ? new Promise<string>((_, reject) =>
                  signal.addEventListener("abort", () => reject(signal.reason)),
                )
              : "fast",
          { timeoutMs: 20, retry: { initialDelayMs: 1 } },
        );
      },
    });
    const rt = runtime({ fibers: [slow] });
    expect(await rt.result(await rt.start(slow, {}))).toBe("fast");
  });

  it("journals Promise.all steps by call order and gives each a stable idempotency key", async () => {
    const keys: string[] = [];
    const fan = defineFiber("fan", {
      async run(ctx) {
        const parts = await Promise.all(
          [3, 1, 2].map((n) =>
            ctx.step("part", async ({ idempotencyKey }) => {
              keys.push(idempotencyKey);
              await new Promise((r) => setTimeout(r, n * 3));
              return n;
            }),
          ),
        );
        return parts;
      },
    });
    const rt = runtime({ fibers: [fan] });
    const fiber = await rt.start(fan, {}, { id: "fan-1" });
    expect(await rt.result(fiber)).toEqual([3, 1, 2]);
    expect(keys.sort()).toEqual(["fan-1:part#1", "fan-1:part#2", "fan-1:part#3"]);
    const { journal } = await rt.inspect(fiber.id);
    expect(journal.map((e) => [e.pos, e.key, e.status])).toEqual([
      [0, "part#1", "completed"],
      [1, "part#2", "completed"],
      [2, "part#3", "completed"],
    ]);
  });
});

describe("stash and snapshot", () => {
  it("keeps the last stash as the snapshot", async () => {
    const draft = defineFiber("draft", {
      async run(ctx) {
        await ctx.stash({ phase: "outline" });
        await ctx.stash({ phase: "drafting", words: 120 });
        return ctx.snapshot;
      },
    });
    const rt = runtime({ fibers: [draft] });
    const fiber = await rt.start(draft, {});
    expect(await rt.result(fiber)).toEqual({ phase: "drafting", words: 120 });
    expect((await rt.inspect(fiber.id)).snapshot).toEqual({ phase: "drafting", words: 120 });
  });
});

describe("durable timers and events", () => {
  it("unloads a sleeping fiber and wakes it when due", async () => {
    const nap = defineFiber("nap", {
      async run(ctx) {
        const before = await ctx.now();
        await ctx.sleep("nap", 60);
        return (await ctx.now()) - before;
      },
    });
    const rt = runtime({ fibers: [nap], unloadAfterMs: 10 });
    const fiber = await rt.start(nap, {});
    await expect.poll(async () => (await rt.get(fiber.id))?.status).toBe("sleeping");
    expect(rt.activeCount).toBe(0);
    expect(await rt.result(fiber)).toBeGreaterThanOrEqual(55);
  });

  it("buffers an event sent before the wait and delivers it", async () => {
    const approve = defineFiber("approve", {
      async run(ctx) {
        await ctx.step("prepare", () => "ready");
        await ctx.sleep("settle", 30);
        const decision = await ctx.waitForEvent<{ approved: boolean }>("approval");
        return decision.approved;
      },
    });
    const rt = runtime({ fibers: [approve], unloadAfterMs: 5 });
    const fiber = await rt.start(approve, {});
    await rt.sendEvent(fiber.id, "approval", { approved: true });
    expect(await rt.result(fiber)).toBe(true);
  });

  it("wakes a waiting fiber that was unloaded when its event arrives", async () => {
    const approve = defineFiber("approve2", {
      async run(ctx) {
        return (await ctx.waitForEvent<{ approved: boolean }>("approval")).approved;
      },
    });
    const rt = runtime({ fibers: [approve] });
    const fiber = await rt.start(approve, {});
    await expect.poll(async () => (await rt.get(fiber.id))?.status).toBe("waiting");
    expect((await rt.get(fiber.id))?.waitingFor).toEqual(["approval"]);
    await rt.sendEvent(fiber.id, "approval", { approved: false });
    expect(await rt.result(fiber)).toBe(false);
  });

  it("wakes a fiber that suspended between sendEvent reading it and storing the event", async () => {
    const approve = defineFiber("approve3", {
      async run(ctx) {
        return (await ctx.waitForEvent<{ approved: boolean }>("approval")).approved;
      },
    });
    // The event is stored only once the fiber's suspension is durable: sendEvent read the record
    // while it was still running, and the run has left the runtime by the time the event lands.
    class SlowInbox extends MemoryStore {
      override async enqueueEvent(event: Parameters<MemoryStore["enqueueEvent"]>[0]) {
        await expect.poll(async () => (await this.getFiber(event.fiberId))?.status).toBe("waiting");
        return super.enqueueEvent(event);
      }
    }
    const store = new SlowInbox();
    const rt = runtime({ store, fibers: [approve], unloadAfterMs: 20 });
    const fiber = await rt.start(approve, {});
    expect((await rt.get(fiber.id))?.status).toBe("running");
    await rt.sendEvent(fiber.id, "approval", { approved: true });
    expect(await rt.result(fiber)).toBe(true);
  });

  it("throws TimeoutError from a wait past its timeout", async () => {
    const impatient = defineFiber("impatient", {
      async run(ctx) {
        try {
          await ctx.waitForEvent("never", { timeoutMs: 20 });
          return "got it";
        } catch (error) {
          return error instanceof TimeoutError ? `timeout:${error.code}` : "other";
        }
      },
    });
    const rt = runtime({ fibers: [impatient] });
    expect(await rt.result(await rt.start(impatient, {}))).toBe("timeout:timeout");
  });

  it("rejects events for unknown or ended fibers", async () => {
    const quick = defineFiber("quick", { run: async () => 1 });
    const rt = runtime({ fibers: [quick] });
    await expect(rt.sendEvent("missing", "x")).rejects.toBeInstanceOf(FiberNotFoundError);
    const fiber = await rt.start(quick, {});
    await rt.result(fiber);
    await expect(rt.sendEvent(fiber.id, "x")).rejects.toMatchObject({ code: "fiber_ended" });
  });
});

describe("cancel", () => {
  it("aborts ctx.signal, ends as cancelled and rejects result() with CancelledError", async () => {
    let aborted = false;
    const long = defineFiber("long", {
      async run(ctx) {
        await ctx.step("forever", ({ signal }) => {
          return new Promise((_, reject) =>
            signal.addEventListener("abort", () => {
              aborted = true;
              reject(signal.reason);
            }),
          );
        });
      },
    });
    const rt = runtime({ fibers: [long] });
    const fiber = await rt.start(long, {});
    await expect.poll(async () => (await rt.inspect(fiber.id)).journal.length).toBe(1);
    expect(await rt.cancel(fiber.id, "stopped by user")).toBe("cancelled");
    const error = await rt.result(fiber).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CancelledError);
    expect((error as Error).message).toBe("stopped by user");
    expect(aborted).toBe(true);
    const events = await collect(rt, fiber.id);
    expect(events.at(-1)).toMatchObject({ type: "fiber.end", data: { status: "cancelled" } });
  });

  it("cancels a sleeping fiber that is not in memory", async () => {
    const nap = defineFiber("nap2", {
      async run(ctx) {
        await ctx.sleep("long", 60_000);
      },
    });
    const rt = runtime({ fibers: [nap] });
    const fiber = await rt.start(nap, {});
    await expect.poll(async () => (await rt.get(fiber.id))?.status).toBe("sleeping");
    await rt.cancel(fiber.id);
    expect((await rt.get(fiber.id))?.status).toBe("cancelled");
  });
});

describe("streams", () => {
  it("replays after a cursor, then streams live, and ends after fiber.end", async () => {
    const ticker = defineFiber("ticker", {
      async run(ctx, input: { count: number }) {
        for (let i = 0; i < input.count; i++) {
          await ctx.step("tick", () => i);
          ctx.emit("tick", { i });
        }
        return input.count;
      },
    });
    const rt = runtime({ fibers: [ticker] });
    const fiber = await rt.start(ticker, { count: 20 });
    const all = await collect(rt, fiber.id);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
    const tail = await collect(rt, fiber.id, 15);
    expect(tail.map((e) => e.seq)).toEqual([16, 17, 18, 19, 20, 21, 22]);
    await expect(collect(rt, "unknown-fiber")).rejects.toBeInstanceOf(FiberNotFoundError);
  });

  it("serves the same stream in batches of what is available at once", async () => {
    const burst = defineFiber("burst", {
      async run(ctx) {
        for (let i = 0; i < 50; i++) ctx.emit("token", { i });
        await ctx.step("after", () => "done");
        return "ok";
      },
    });
    const rt = runtime({ fibers: [burst] });
    const fiber = await rt.start(burst, {});
    await rt.result(fiber);
    const batches: FiberEvent[][] = [];
    for await (const batch of rt.eventBatches(fiber.id, { after: 0 })) batches.push(batch);
    expect(batches.flat()).toEqual(await collect(rt, fiber.id));
    expect(batches.length).toBeLessThan(batches.flat().length);
    expect(batches.at(-1)?.at(-1)?.type).toBe("fiber.end");
    const tail: FiberEvent[][] = [];
    for await (const batch of rt.eventBatches(fiber.id, { after: 50 })) tail.push(batch);
    expect(tail.flat().map((e) => e.seq)).toEqual([51, 52]);
  });

  it("opens a stream with one read of the record, taken with the first chunks (openEventBatches)", async () => {
    const steps = defineFiber("two-steps", {
      async run(ctx) {
        await ctx.step("a", () => 1);
        ctx.emit("token", { i: 1 });
        return "ok";
      },
    });
    let recordReads = 0;
    const store = new (class extends MemoryStore {
      override async getFiber(id: string) {
        recordReads += 1;
        return super.getFiber(id);
      }
    })();
    const rt = runtime({ fibers: [steps], store });
    const fiber = await rt.start(steps, {});
    await rt.result(fiber);
    const plain: FiberEvent[] = [];
    recordReads = 0;
    for await (const batch of rt.eventBatches(fiber.id)) plain.push(...batch);
    const plainReads = recordReads;
    const handed: FiberEvent[] = [];
    recordReads = 0;
    const opened = await rt.openEventBatches(fiber.id);
    expect(opened.record).toMatchObject({ id: fiber.id, status: "completed" });
    for await (const batch of opened.batches) handed.push(...batch);
    expect(handed).toEqual(plain);
    expect(recordReads).toBe(plainReads - 1);
    // An unknown fiber: no record, and closing the unread reader is all there is to do.
    const missing = await rt.openEventBatches("no-such-fiber");
    expect(missing.record).toBeUndefined();
    missing.close();
  });

  it("catches a live reader up from memory when a big commit lands during its storage read", async () => {
    const flood = defineFiber("flood", {
      async run(ctx) {
        await ctx.waitForEvent("go");
        for (let i = 0; i < 3_000; i++) ctx.emit("token", { i });
        return "ok";
      },
    });
    // Storage whose stream reads wait at a gate, so one is in flight while the flood commits.
    let gate: Promise<void> = Promise.resolve();
    let reads = 0;
    const store = new (class extends MemoryStore {
      override async readStreamAndRecord(id: string, after: number, limit?: number) {
        reads += 1;
        await gate;
        return super.readStreamAndRecord(id, after, limit);
      }
    })();
    const rt = runtime({ store, fibers: [flood], pollIntervalMs: 5 });
    const fiber = await rt.start(flood, {});
    const received: FiberEvent[] = [];
    const reading = (async () => {
      for await (const event of rt.events(fiber.id)) received.push(event);
    })();
    await expect.poll(() => received.length).toBe(1);
    let open!: () => void;
    gate = new Promise<void>((resolve) => (open = resolve));
    // The reader's poll finds nothing live and goes to storage, where it waits at the gate.
    const readsBeforeGate = reads;
    await expect.poll(() => reads).toBe(readsBeforeGate + 1);
    const readsBeforeFlood = reads;
    await rt.sendEvent(fiber.id, "go", null);
    await rt.result(fiber);
    open();
    await reading;

    expect(received.map((event) => event.seq)).toEqual(Array.from({ length: 3_002 }, (_, i) => i + 1));
    // The gated read returns one page; the other ~2,500 chunks come from what the commit published
    // (page by page from storage, they took five more reads).
    expect(reads).toBe(readsBeforeFlood);
  });

  it("rejects reserved chunk types", async () => {
    const sneaky = defineFiber("sneaky", {
      async run(ctx) {
        ctx.emit("fiber.end", {});
      },
    });
    const rt = runtime({ fibers: [sneaky] });
    await expect(rt.result(await rt.start(sneaky, {}))).rejects.toMatchObject({ code: "invalid_argument" });
  });
});

describe("retention", () => {
  it("collects terminal fibers after retentionMs and keeps them before", async () => {
    let now = 1_000_000;
    const quick = defineFiber("quick2", { run: async () => "done" });
    const rt = runtime({ fibers: [quick], retentionMs: 60_000, clock: () => now });
    const fiber = await rt.start(quick, {});
    await rt.result(fiber);
    expect(await rt.collect()).toEqual([]);
    expect((await collect(rt, fiber.id)).length).toBe(2);
    now += 60_001;
    expect(await rt.collect()).toEqual([fiber.id]);
    expect(await rt.get(fiber.id)).toBeUndefined();
    expect(await rt.store.readStream(fiber.id, 0)).toEqual([]);
  });

  it("collects each definition at its own retention, reading only fibers ended long enough ago", async () => {
    let now = 1_000_000;
    const brief = defineFiber("brief", { retentionMs: 1_000, run: async () => "brief" });
    const kept = defineFiber("kept", { retentionMs: 120_000, run: async () => "kept" });
    const plain = defineFiber("plain", { run: async () => "plain" });
    const listings: unknown[] = [];
    const disk = new (class extends MemoryStore {
      override async listFibers(...args: Parameters<MemoryStore["listFibers"]>) {
        listings.push(args[0]);
        return super.listFibers(...args);
      }
    })();
    const rt = runtime({ store: disk, fibers: [brief, kept, plain], retentionMs: 60_000, clock: () => now });
    const ids = [];
    for (const def of [brief, kept, plain]) {
      const fiber = await rt.start(def, {});
      await rt.result(fiber);
      ids.push(fiber.id);
    }
    const [briefId, keptId, plainId] = ids;
    now += 1_000;
    expect(await rt.collect()).toEqual([briefId]);
    // The store is asked only for fibers ended at least the shortest retention ago.
    expect(listings.at(-1)).toMatchObject({ endedBefore: now - 1_000 });
    now += 59_000;
    expect(await rt.collect()).toEqual([plainId]);
    now += 60_000;
    expect(await rt.collect()).toEqual([keptId]);
    expect(await rt.list()).toEqual([]);
  });

  it("rejects a retention that is not a number of ms >= 0, naming where it came from", () => {
    const odd = defineFiber("odd", { retentionMs: -1, run: async () => null });
    expect(() => runtime({ fibers: [odd] })).toThrow(
      expect.objectContaining({
        code: "invalid_argument",
        message: expect.stringContaining('defineFiber("odd"'),
      }),
    );
    expect(() => runtime({ fibers: [], retentionMs: Number.NaN })).toThrow(
      expect.objectContaining({
        code: "invalid_argument",
        message: expect.stringContaining("createRuntime"),
      }),
    );
    expect(() => runtime({ fibers: [], retentionMs: "1h" as unknown as number })).toThrow(
      expect.objectContaining({ code: "invalid_argument" }),
    );
    expect(() => runtime({ fibers: [], retentionMs: Number.POSITIVE_INFINITY })).not.toThrow();
  });

  it("leaves alone a fiber started again under an id it was about to collect", async () => {
    let now = 1_000_000;
    const clock = () => now;
    const job = defineFiber("job", {
      run: async (ctx, input: { life: number }) => {
        if (input.life > 1) await ctx.waitForEvent("go");
        return input.life;
      },
    });
    // This runtime's deletes wait at a gate, as if its collector were slow.
    let gate: Promise<void> = Promise.resolve();
    let deletes = 0;
    const disk = new (class extends MemoryStore {
      override async deleteFibers(...args: Parameters<MemoryStore["deleteFibers"]>) {
        deletes += 1;
        await gate;
        return super.deleteFibers(...args);
      }
    })();
    const slow = runtime({ store: disk, fibers: [job], retentionMs: 60_000, clock });
    const other = runtime({ store: disk, fibers: [job], retentionMs: 60_000, clock });
    await slow.result(await slow.start(job, { life: 1 }, { id: "job-1" }));
    now += 60_001;

    let open!: () => void;
    gate = new Promise<void>((resolve) => (open = resolve));
    const slowCollect = slow.collect();
    await expect.poll(() => deletes).toBe(1); // it listed job-1 as expired and waits at the gate
    // Meanwhile another context collects job-1 and starts the id again.
    gate = Promise.resolve();
    expect(await other.collect()).toEqual(["job-1"]);
    await other.start(job, { life: 2 }, { id: "job-1" });
    open();
    await slowCollect;
    expect(await other.get("job-1")).toMatchObject({ input: { life: 2 } });
    await other.sendEvent("job-1", "go", null);
    expect(await other.result("job-1")).toBe(2);
  });
});
