/**
 * The engine under races and faults that are not crashes: a write that fails, events racing a
 * pick-up, a cancel racing a wake-up, an event stored by another runtime, readers of ended,
 * collected and replaced fibers, attempts that outlive their timeout. Each test reproduces one
 * way the no-gap / no-duplicate / exactly-once promise was broken (engine-correctness issue,
 * items 1-11) with `MemoryStore` and small real timers.
 */

import { afterEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { fiber } from "../store/store-contract";
import { crashableStore } from "../testing/crash-store";
import { CommitQueue } from "./commit-queue";
import { defineFiber } from "./define";
import { FencedError } from "./errors";
import type { FiberEvent, StreamChunk } from "./records";
import { createRuntime, type Runtime } from "./runtime";
import { readStreamAndRecord, type Store, type WriteGroup } from "./store";
import { ChunkInbox, INBOX_BYTES, INBOX_LIMIT } from "./stream-hub";

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(
    runtimes.splice(0).map((r) => Promise.race([r.close(), new Promise((res) => setTimeout(res, 10))])),
  );
});

function track(runtime: Runtime): Runtime {
  runtimes.push(runtime);
  return runtime;
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `inner` with some methods replaced; the others pass through. */
function intercept(inner: Store, overrides: Partial<Store>): Store {
  return new Proxy(inner, {
    get(target, prop) {
      const own = (overrides as Record<PropertyKey, unknown>)[prop];
      if (own !== undefined) return own;
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function readAll(runtime: Runtime, id: string, after = 0): Promise<FiberEvent[]> {
  const out: FiberEvent[] = [];
  for await (const event of runtime.events(id, { after })) out.push(event);
  return out;
}

async function storedTypes(store: Store, id: string): Promise<string[]> {
  const chunks = await store.readStream(id, 0);
  chunks.forEach((chunk, i) => {
    expect(chunk.seq).toBe(i + 1);
  });
  return chunks.map((chunk) => chunk.type);
}

/**
 * A fiber consumes an "approval" event, then its runtime dies inside the next step; another
 * runtime recovers it, its `onRecovered` restarts it from scratch, and the new run waits for the
 * event again. With `unloadBeforeWait`, the new run sleeps first under `unloadAfterMs: 0`, so it
 * reads its inbox back from storage. Resolves with the fiber's result.
 */
async function restartAfterConsumingAnEvent(options: { unloadBeforeWait: boolean }): Promise<unknown> {
  const disk = new MemoryStore();
  let life = 1;
  const job = defineFiber("job", {
    async run(ctx) {
      if (options.unloadBeforeWait && life === 2) await ctx.sleep("pause", 30);
      const approval = await ctx.waitForEvent<{ ok: boolean }>("approval");
      await ctx.step("act", () => (life === 1 ? new Promise<never>(() => {}) : "acted"));
      return approval;
    },
    onRecovered: () => "restart",
  });
  const dying = crashableStore(disk);
  const first = track(createRuntime({ store: dying, fibers: [job], leaseMs: 20 }));
  const fiber = await first.start(job, {}, { id: "restart" });
  await first.sendEvent(fiber.id, "approval", { ok: true });
  await expect
    .poll(async () => (await disk.readJournal(fiber.id)).find((e) => e.key === "act#1")?.status)
    .toBe("started");
  dying.crash();
  await delay(30);
  life = 2;
  const unload = options.unloadBeforeWait ? { unloadAfterMs: 0 } : {};
  const second = track(createRuntime({ store: disk, fibers: [job], leaseMs: 20, ...unload }));
  await second.recover();
  return await second.result(fiber);
}

const transient = () => new DOMException("The disk hiccuped.", "UnknownError");

describe("a write that fails (items 1 and 8)", () => {
  it("never commits a later chunk of the same run: no hole, and the fiber resumes by itself", async () => {
    const disk = new MemoryStore();
    let failed = false;
    const store = intercept(disk, {
      async commit(groups: WriteGroup[]) {
        if (!failed && groups.some((g) => g.chunks?.some((c) => c.type === "b"))) {
          failed = true;
          await delay(20); // "c" is queued behind this batch while it is in flight
          throw transient();
        }
        return disk.commit(groups);
      },
    });
    const job = defineFiber("job", {
      async run(ctx) {
        await ctx.step("stream", async ({ emit }) => {
          emit("a", null);
          await delay(5);
          emit("b", null);
          await delay(5);
          emit("c", null);
          await delay(40);
        });
        return "done";
      },
    });
    const runtime = track(createRuntime({ store, fibers: [job], leaseMs: 1_000 }));
    const fiber = await runtime.start(job, {}, { id: "hole" });
    const seen = readAll(runtime, fiber.id);
    // No recover(): the runner resumes the fiber itself after the store error.
    expect(await runtime.result(fiber)).toBe("done");
    const expected = ["fiber.start", "a", "fiber.recovered", "a", "b", "c", "fiber.end"];
    expect(await storedTypes(disk, fiber.id)).toEqual(expected);
    expect((await seen).map((e) => e.type)).toEqual(expected);
  });

  it("refuses a hole at the store even if a writer tries to make one", async () => {
    const store = new MemoryStore();
    const job = defineFiber("job", { run: () => new Promise<never>(() => {}) });
    const runtime = track(createRuntime({ store, fibers: [job] }));
    await runtime.start(job, {}, { id: "f" });
    const record = await store.getFiber("f");
    const gap: WriteGroup = {
      fiberId: "f",
      generation: record?.generation ?? 0,
      chunks: [{ fiberId: "f", seq: 3, type: "x", data: null, at: 0 }],
    };
    await expect(store.commit([gap])).rejects.toMatchObject({ code: "stream_gap" });
    expect(await storedTypes(store, "f")).toEqual(["fiber.start"]);
  });

  it("resumes a fiber whose step's start could not be written", async () => {
    const disk = new MemoryStore();
    let failures = 1;
    const store = intercept(disk, {
      async commit(groups: WriteGroup[]) {
        if (failures > 0 && groups.some((g) => g.journal?.some((e) => e.key === "work#1"))) {
          failures--;
          throw transient();
        }
        return disk.commit(groups);
      },
    });
    let runs = 0;
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step("work", () => ++runs);
      },
    });
    const runtime = track(createRuntime({ store, fibers: [job], leaseMs: 5_000 }));
    const fiber = await runtime.start(job, {}, { id: "stranded" });
    expect(await runtime.result(fiber)).toBe(1);
    expect(runs).toBe(1);
  });
});

describe("a read that fails inside a run", () => {
  it("stops the run for a retry rather than failing the fiber with the store's error", async () => {
    const disk = new MemoryStore();
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step("stream", async ({ emit, interrupted }) => {
          emit("token", "t");
          if (!interrupted) await new Promise<never>(() => {}); // the first life dies here
          return "done";
        });
      },
    });
    const dying = crashableStore(disk);
    const first = track(createRuntime({ store: dying, fibers: [job], leaseMs: 20 }));
    const fiber = await first.start(job, {}, { id: "reads" });
    await expect.poll(async () => (await disk.readStream(fiber.id, 0)).length).toBe(2);
    dying.crash();
    await delay(30);
    // The recovered step reads the chunks it emitted (its `emitted`): that read fails once.
    let failed = false;
    const store = intercept(disk, {
      async readStream(id: string, after: number, limit?: number) {
        if (!failed && after > 0) {
          failed = true;
          throw transient();
        }
        return disk.readStream(id, after, limit);
      },
    });
    const second = track(createRuntime({ store, fibers: [job], leaseMs: 20 }));
    await second.recover();
    expect(await second.result(fiber)).toBe("done");
    expect(failed).toBe(true);
  });
});

describe("a pick-up whose write fails", () => {
  // awaitStart: false (every agent model call) runs an attempt beside its own started write, but
  // not beside the pick-up's: each failed pick-up would otherwise send the request once more.
  it.each([
    ["a step", undefined],
    ["a step that runs beside its started write (awaitStart: false)", false],
  ] as const)(
    "runs nothing live before its fiber.recovered is durable, and resumes the fiber later: %s",
    async (_, awaitStart) => {
      const disk = new MemoryStore();
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const runs = { a: 0, b: 0 };
      const job = defineFiber("job", {
        async run(ctx) {
          await ctx.step("a", () => ++runs.a);
          await ctx.step(
            "b",
            async () => {
              runs.b++;
              await gate;
            },
            { awaitStart },
          );
          return ctx.step("c", () => "done");
        },
      });
      // The first runtime stops inside b (its start durable, so b is interrupted and runs again).
      const first = createRuntime({ store: disk, fibers: [job], leaseMs: 50 });
      const fiber = await first.start(job, {}, { id: "picked" });
      while (runs.b === 0) await delay(2);
      await first.close();
      release();
      // The second one's first pick-ups' writes fail; the runs they launched must not run b meanwhile.
      let failures = 3;
      let bWhileFailing = -1;
      const store = intercept(disk, {
        async commit(groups: WriteGroup[]) {
          if (failures > 0 && groups.some((g) => g.chunks?.some((c) => c.type === "fiber.recovered"))) {
            failures--;
            await delay(5);
            bWhileFailing = runs.b;
            throw transient();
          }
          return disk.commit(groups);
        },
      });
      await delay(60);
      const second = track(createRuntime({ store, fibers: [job], leaseMs: 50 }));
      await second.recover();
      expect(await second.result(fiber)).toBe("done");
      expect(bWhileFailing).toBe(1);
      expect(runs).toEqual({ a: 1, b: 2 });
      const types = await storedTypes(disk, fiber.id);
      expect(types.filter((t) => t === "fiber.recovered")).toHaveLength(1);
      expect(types.at(-1)).toBe("fiber.end");
    },
  );
});

describe("a runner that dies after the others started (item 8)", () => {
  it("is replaced by a live runtime once its lease lapses, with no recover() call", async () => {
    const disk = new MemoryStore();
    const runners: string[] = [];
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step("work", ({ interrupted }) => {
          runners.push(interrupted ? "replacement" : "first");
          return interrupted ? "done" : new Promise<never>(() => {});
        });
      },
    });
    const survivor = track(createRuntime({ store: disk, fibers: [job], leaseMs: 150 }));
    await survivor.recover(); // before the fiber exists: it finds nothing
    const dying = crashableStore(disk);
    const doomed = track(createRuntime({ store: dying, fibers: [job], leaseMs: 150 }));
    const fiber = await doomed.start(job, {}, { id: "orphan" });
    await expect.poll(() => runners.length).toBe(1);
    await delay(200); // its live runner keeps the lease: nobody takes the fiber over
    expect(runners).toEqual(["first"]);
    dying.crash();
    expect(await survivor.result(fiber)).toBe("done");
    expect(runners).toEqual(["first", "replacement"]);
  });
});

describe("a timer whose runtime died after the others started (item 8)", () => {
  it("fires from a live runtime once it is a lease period overdue", async () => {
    const disk = new MemoryStore();
    const napper = defineFiber("napper", {
      async run(ctx) {
        await ctx.sleep("nap", 300);
        return "awake";
      },
    });
    const survivor = track(createRuntime({ store: disk, fibers: [napper], leaseMs: 100, unloadAfterMs: 0 }));
    await survivor.recover();
    const dying = crashableStore(disk);
    const doomed = track(createRuntime({ store: dying, fibers: [napper], leaseMs: 100, unloadAfterMs: 0 }));
    const fiber = await doomed.start(napper, {}, { id: "napper" });
    await expect.poll(async () => (await disk.getFiber(fiber.id))?.status).toBe("sleeping");
    dying.crash(); // its wake timer dies with it
    expect(await survivor.result(fiber)).toBe("awake");
  });
});

describe("a claim whose runtime died before it ran the fiber (item 8)", () => {
  it("is taken over once its lease lapses, and the buffered event is consumed", async () => {
    const store = new MemoryStore();
    const job = defineFiber("job", { run: (ctx) => ctx.waitForEvent<string>("go") });
    const survivor = track(createRuntime({ store, fibers: [job], leaseMs: 100, unloadAfterMs: 0 }));
    await survivor.recover();
    const first = createRuntime({ store, fibers: [job], unloadAfterMs: 0 });
    const fiber = await first.start(job, {}, { id: "claimed" });
    await expect.poll(async () => (await store.getFiber(fiber.id))?.status).toBe("waiting");
    await first.close();
    // Another runtime stored the event and claimed the fiber to run it, then died.
    await store.enqueueEvent({ fiberId: fiber.id, name: "go", payload: "went", at: Date.now() });
    await store.claimFiber(fiber.id, { owner: "ghost", now: Date.now(), leaseMs: 100, force: true });
    expect(await survivor.result(fiber)).toBe("went");
  });
});

describe("an event whose runtime died before it delivered it (simulator seed 93244)", () => {
  it("wakes the waiting fiber from a live runtime once it is a lease period old", async () => {
    const store = new MemoryStore();
    const job = defineFiber("job", { run: (ctx) => ctx.waitForEvent<string>("go") });
    const survivor = track(createRuntime({ store, fibers: [job], leaseMs: 100, unloadAfterMs: 0 }));
    await survivor.recover();
    const first = createRuntime({ store, fibers: [job], unloadAfterMs: 0 });
    const fiber = await first.start(job, {}, { id: "stranded" });
    await expect.poll(async () => (await store.getFiber(fiber.id))?.status).toBe("waiting");
    await first.close();
    // Another runtime stored the event and died before it claimed the fiber: no lease, no timer,
    // nothing but the stored event says the fiber has work.
    await store.enqueueEvent({ fiberId: fiber.id, name: "go", payload: "went", at: Date.now() });
    // The survivor sweeps every 100 ms; without the event making the fiber due, it never wakes.
    await expect
      .poll(async () => (await store.getFiber(fiber.id))?.status, { timeout: 3_000 })
      .toBe("completed");
    expect(await survivor.result(fiber)).toBe("went");
  });
});

describe("events (items 2, 3 and 7)", () => {
  const threeWaits = defineFiber("three-waits", {
    async run(ctx) {
      const got: unknown[] = [];
      for (let i = 0; i < 3; i++) {
        try {
          got.push(await ctx.waitForEvent("e", { timeoutMs: 300 }));
        } catch (error) {
          got.push((error as { code?: string }).code);
        }
      }
      return got;
    },
  });

  it("hands one event to one wait when it is sent while the fiber is being picked up", async () => {
    const disk = new MemoryStore();
    const store = intercept(disk, {
      async claimFiber(id, request) {
        await delay(30); // the second event is stored while the first one's pick-up claims
        return disk.claimFiber(id, request);
      },
    });
    const runtime = track(createRuntime({ store, fibers: [threeWaits], unloadAfterMs: 0 }));
    const fiber = await runtime.start(threeWaits, {}, { id: "waits" });
    await expect.poll(async () => (await disk.getFiber(fiber.id))?.status).toBe("waiting");
    const first = runtime.sendEvent(fiber.id, "e", 1);
    await delay(10);
    await runtime.sendEvent(fiber.id, "e", 2);
    await first;
    expect(await runtime.result(fiber)).toEqual([1, 2, "timeout"]);
  });

  it("times a wait out when its event was sent after the deadline, even if the fiber was unloaded", async () => {
    const store = new MemoryStore();
    const once = defineFiber("once", {
      async run(ctx) {
        try {
          return await ctx.waitForEvent("e", { timeoutMs: 100 });
        } catch (error) {
          return (error as { code?: string }).code;
        }
      },
    });
    const first = createRuntime({ store, fibers: [once], unloadAfterMs: 0 });
    const fiber = await first.start(once, {}, { id: "late" });
    await expect.poll(async () => (await store.getFiber(fiber.id))?.status).toBe("waiting");
    await first.close(); // the worker stops: nothing fires the timer
    await delay(250);
    const second = track(createRuntime({ store, fibers: [once], unloadAfterMs: 0 }));
    await second.sendEvent(fiber.id, "e", "too late");
    expect(await second.result(fiber)).toBe("timeout");
    // The event stays unconsumed: it was never the wait's.
    expect((await store.readInbox(fiber.id)).map((e) => e.consumedBy)).toEqual([undefined]);
  });

  /** Runs a 60 ms step, then waits for "go": an event sent meanwhile comes while it runs. */
  const slowThenWait = defineFiber("job", {
    async run(ctx) {
      await ctx.step("slow", () => delay(60));
      return ctx.waitForEvent("go");
    },
  });

  it("wakes a fiber for an event another runtime stored while it was running", async () => {
    const store = new MemoryStore();
    const job = slowThenWait;
    const running = track(createRuntime({ store, fibers: [job], unloadAfterMs: 0 }));
    const other = track(createRuntime({ store, fibers: [job], unloadAfterMs: 0 }));
    const fiber = await running.start(job, {}, { id: "handover" });
    await delay(10);
    await other.sendEvent(fiber.id, "go", "from the new worker");
    expect(await running.result(fiber)).toBe("from the new worker");
  });

  it("resumes at recover() a fiber whose runtime died before looking for an event stored while it ran", async () => {
    const store = new MemoryStore();
    const job = slowThenWait;
    // The first runtime dies right after the suspension is durable: its look at the inbox never answers.
    const dying = new Proxy(store, {
      get: (target, property) => {
        if (property === "readInbox") return () => new Promise(() => {});
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const running = createRuntime({ store: dying, fibers: [job], unloadAfterMs: 0 });
    // Its clock an hour fast: the event's stamp must not put the wake-up an hour off.
    const fast = () => Date.now() + 3_600_000;
    const other = track(createRuntime({ store, fibers: [job], unloadAfterMs: 0, clock: fast }));
    const fiber = await running.start(job, {}, { id: "handover" });
    await delay(10);
    await other.sendEvent(fiber.id, "go", "from the new worker");
    await expect.poll(async () => (await store.getFiber(fiber.id))?.status).toBe("waiting");
    await running.close();
    // The suspension made the fiber due (the store's dueForInbox): recover() reads no inbox to find it.
    expect((await store.getFiber(fiber.id))?.wakeAt).toBeDefined();
    const next = track(createRuntime({ store, fibers: [job], unloadAfterMs: 0 }));
    expect((await next.recover()).resumed).toEqual([fiber.id]);
    expect(await next.result(fiber)).toBe("from the new worker");
  });

  it("wakes a waiting fiber once for an event stamped past its deadline by a fast clock, not over and over", async () => {
    const store = new MemoryStore();
    const late = defineFiber("late", {
      async run(ctx) {
        return ctx.waitForEvent("go", { timeoutMs: 600 }).catch(() => "timed out");
      },
    });
    let claims = 0;
    const counting = new Proxy(store, {
      get: (target, property) => {
        if (property === "claimFiber") claims++;
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const runner = track(createRuntime({ store: counting, fibers: [late], unloadAfterMs: 0, leaseMs: 30 }));
    await runner.recover();
    const fiber = await runner.start(late, {}, { id: "late" });
    await expect.poll(async () => (await store.getFiber(fiber.id))?.status).toBe("waiting");
    // Stored by a context whose clock is an hour fast (a page, another worker): stamped after the
    // wait's deadline, which it can never satisfy, while the store's own clock makes the fiber due.
    await store.enqueueEvent({
      fiberId: fiber.id,
      name: "go",
      payload: "stamped too late",
      at: Date.now() + 3_600_000,
    });
    await delay(300);
    // One pick-up to look at the event, then the fiber waits out its deadline.
    expect(claims).toBeLessThanOrEqual(2);
    expect(await runner.result(fiber)).toBe("timed out");
  });
});

describe("versions and the recovery budget (items 4 and 5)", () => {
  it("checks the version when a sleeping fiber is woken", async () => {
    const store = new MemoryStore();
    const effects: string[] = [];
    const v1 = defineFiber("nap", {
      version: "1",
      async run(ctx) {
        await ctx.sleep("nap", 100);
        effects.push("v1 after nap");
      },
    });
    const v2 = defineFiber("nap", {
      version: "2",
      async run(ctx) {
        await ctx.sleep("nap", 100);
        effects.push("v2 side effect");
      },
    });
    const old = createRuntime({ store, fibers: [v1], unloadAfterMs: 0 });
    const fiber = await old.start(v1, undefined, { id: "napper" });
    await expect.poll(async () => (await store.getFiber(fiber.id))?.status).toBe("sleeping");
    await old.close();
    const next = track(createRuntime({ store, fibers: [v2], unloadAfterMs: 0 }));
    await next.recover();
    await expect(next.result(fiber.id)).rejects.toMatchObject({ code: "version_mismatch" });
    expect(effects).toEqual([]);
  });

  /** Runs `job` life after life, crashing each life once `crashWhen` holds. */
  async function lives(
    disk: MemoryStore,
    job: ReturnType<typeof defineFiber>,
    count: number,
    crashWhen: (life: number) => Promise<boolean>,
  ): Promise<void> {
    for (let life = 1; life <= count; life++) {
      const record = await disk.getFiber("loop");
      if (record && ["completed", "failed", "cancelled"].includes(record.status)) return;
      const dying = crashableStore(disk);
      const runtime = track(createRuntime({ store: dying, fibers: [job], maxRecoveries: 2, leaseMs: 20 }));
      if (life === 1) await runtime.start(job, {}, { id: "loop" });
      else await runtime.recover();
      await expect.poll(() => crashWhen(life)).toBe(true);
      dying.crash();
      await delay(30); // past the lease
    }
  }

  it("stops a crash loop even when the handler stashes before the step that never finishes", async () => {
    const disk = new MemoryStore();
    let calls = 0;
    const job = defineFiber("job", {
      async run(ctx) {
        await ctx.stash({ phase: "billing" });
        await ctx.step("bill", () => {
          calls++;
          return new Promise<never>(() => {});
        });
      },
    });
    await lives(disk, job, 6, async (life) => {
      const record = await disk.getFiber("loop");
      return calls === life || record?.status === "failed";
    });
    const last = createRuntime({ store: disk, fibers: [job], maxRecoveries: 2 });
    track(last);
    await last.recover();
    await expect(last.result("loop")).rejects.toMatchObject({ code: "recovery_exhausted" });
    expect(calls).toBe(3);
  });

  it("counts chunks a step emits as progress: a streaming step that continues is not exhausted", async () => {
    const disk = new MemoryStore();
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step("stream", ({ emitted, emit }) => {
          if (emitted.length >= 5) return emitted.length;
          emit("token", emitted.length);
          return new Promise<never>(() => {}); // cut off mid-stream, one token further each life
        });
      },
    });
    await lives(disk, job, 5, async (life) => {
      const chunks = await disk.readStream("loop", 0);
      return chunks.filter((c) => c.type === "token").length === life;
    });
    const last = track(createRuntime({ store: disk, fibers: [job], maxRecoveries: 2 }));
    await last.recover();
    expect(await last.result("loop")).toBe(5);
  });
});

describe("cancel (items 6 and 11)", () => {
  it("cancels a fiber whose wake-up is under way: one outcome, nothing left running", async () => {
    const disk = new MemoryStore();
    let claims = 0;
    const store = intercept(disk, {
      async claimFiber(id, request) {
        // The wake-up's claim is slow; the cancel's, issued later, lands first.
        if (++claims === 1) await delay(30);
        return disk.claimFiber(id, request);
      },
      async commit(groups: WriteGroup[]) {
        // ... and the cancel's end is still being written when the wake-up claims.
        if (groups.some((g) => g.chunks?.some((c) => c.type === "fiber.end"))) await delay(40);
        return disk.commit(groups);
      },
    });
    const job = defineFiber("job", {
      async run(ctx) {
        await ctx.waitForEvent("go");
        await ctx.step("after", () => delay(50));
        return "finished";
      },
    });
    const runtime = track(createRuntime({ store, fibers: [job], unloadAfterMs: 0 }));
    const fiber = await runtime.start(job, {}, { id: "racer" });
    await expect.poll(async () => (await disk.getFiber(fiber.id))?.status).toBe("waiting");
    const wake = runtime.sendEvent(fiber.id, "go");
    await delay(5);
    const status = await runtime.cancel(fiber.id, "stop");
    await wake;
    expect(status).toBe("cancelled");
    await expect(runtime.result(fiber)).rejects.toMatchObject({ code: "cancelled" });
    await delay(80);
    expect(runtime.activeCount).toBe(0);
    const record = await disk.getFiber(fiber.id);
    expect(record).toMatchObject({ status: "cancelled" });
    expect((await storedTypes(disk, fiber.id)).at(-1)).toBe("fiber.end");
  });

  it("reports fencing per write group: a batch holding two generations of one fiber", async () => {
    const store = new MemoryStore();
    const job = defineFiber("job", { run: () => new Promise<never>(() => {}) });
    const runtime = track(createRuntime({ store, fibers: [job] }));
    await runtime.start(job, {}, { id: "f" });
    const old = (await store.getFiber("f"))?.generation ?? 0;
    const claim = await store.claimFiber("f", {
      owner: "other",
      now: Date.now(),
      leaseMs: 1_000,
      force: true,
    });
    const current = claim.status === "claimed" ? claim.record.generation : -1;
    const queue = new CommitQueue(store, () => {});
    const stale = queue.write({ fiberId: "f", generation: old, fiber: { updatedAt: 1 } });
    const fresh = queue.write({ fiberId: "f", generation: current, fiber: { updatedAt: 2 } });
    await expect(stale).rejects.toBeInstanceOf(FencedError);
    await expect(fresh).resolves.toBeUndefined();
    expect((await store.getFiber("f"))?.updatedAt).toBe(2);
  });

  it("answers the status a fiber ended with when it completed as the cancel arrived", async () => {
    const disk = new MemoryStore();
    const store = intercept(disk, {
      async commit(groups: WriteGroup[]) {
        if (groups.some((g) => g.chunks?.some((c) => c.type === "fiber.end"))) await delay(30);
        return disk.commit(groups);
      },
    });
    const quick = defineFiber("quick", { run: async () => "done" });
    const runtime = track(createRuntime({ store, fibers: [quick] }));
    const fiber = await runtime.start(quick, {}, { id: "quick" });
    await delay(5); // the handler returned; its end is being written
    expect(await runtime.cancel(fiber.id)).toBe("completed");
    expect(await runtime.result(fiber)).toBe("done");
    expect(await runtime.cancel(fiber.id)).toBe("completed");
  });
});

describe("readers end (item 9)", () => {
  const waiter = defineFiber("waiter", { run: (ctx) => ctx.waitForEvent("never") });
  const quick = defineFiber("quick", { run: async () => "done" });

  it("ends at once for a cursor at or past the end of an ended fiber", async () => {
    const runtime = track(createRuntime({ store: new MemoryStore(), fibers: [quick] }));
    const fiber = await runtime.start(quick, {}, { id: "ended" });
    await runtime.result(fiber);
    const all = await readAll(runtime, fiber.id);
    const end = all.at(-1)?.seq ?? 0;
    expect(await readAll(runtime, fiber.id, end)).toEqual([]);
    expect(await readAll(runtime, fiber.id, end + 10)).toEqual([]);
  });

  it("rejects with fiber_not_found when the fiber is collected mid-read", async () => {
    const store = new MemoryStore();
    const runtime = track(createRuntime({ store, fibers: [waiter], pollIntervalMs: 20 }));
    const fiber = await runtime.start(waiter, {}, { id: "doomed" });
    const reading = readAll(runtime, fiber.id);
    await delay(30);
    await store.deleteFibers([fiber.id]);
    await expect(reading).rejects.toMatchObject({ code: "fiber_not_found" });
  });

  it("never yields the chunks of a new fiber started under the same id", async () => {
    const store = new MemoryStore();
    const runtime = track(createRuntime({ store, fibers: [waiter, quick], pollIntervalMs: 20 }));
    const first = await runtime.start(waiter, {}, { id: "reused" });
    const seen: FiberEvent[] = [];
    const reading = (async () => {
      for await (const event of runtime.events(first.id)) seen.push(event);
    })();
    await delay(30);
    await store.deleteFibers([first.id]);
    await runtime.start(quick, {}, { id: "reused" });
    await expect(reading).rejects.toMatchObject({ code: "fiber_not_found" });
    expect(seen.map((e) => e.type)).toEqual(["fiber.start"]);
  });

  it("keeps a bounded queue for a reader that stopped reading, and loses nothing when it reads again", async () => {
    const store = new MemoryStore();
    const chatter = defineFiber("chatter", {
      async run(ctx, input: { n: number }) {
        for (let i = 0; i < input.n; i++) {
          ctx.emit("token", i);
          if (i % 100 === 99) await delay(0); // commits of 100 chunks, each published
        }
      },
    });
    const runtime = track(createRuntime({ store, fibers: [chatter] }));
    const fiber = await runtime.start(chatter, { n: 3 * INBOX_LIMIT }, { id: "chatty" });
    const batches = runtime.eventBatches(fiber.id)[Symbol.asyncIterator]();
    const seqs: number[] = [];
    const first = await batches.next();
    for (const event of first.done ? [] : first.value) seqs.push(event.seq);
    // The page stops reading while the fiber emits three queues' worth; then it reads on.
    await runtime.result(fiber);
    for (let next = await batches.next(); !next.done; next = await batches.next()) {
      expect(next.value.length).toBeLessThanOrEqual(INBOX_LIMIT);
      for (const event of next.value) seqs.push(event.seq);
    }
    const end = (await store.getFiber(fiber.id))?.streamHead ?? 0;
    expect(seqs).toEqual(Array.from({ length: end }, (_, i) => i + 1));
    // What it drops, it drops but for a fiber's first chunk, by which readers tell a fiber
    // started again under its id (the test above).
    const inbox = new ChunkInbox();
    const chunk = (seq: number, type = "token"): StreamChunk => ({
      fiberId: "x",
      seq,
      type,
      data: seq,
      at: seq,
    });
    inbox.push([chunk(1, "fiber.start")]);
    inbox.push(Array.from({ length: 2 * INBOX_LIMIT }, (_, i) => chunk(i + 2)));
    const kept = inbox.take();
    expect(kept.length).toBeLessThanOrEqual(INBOX_LIMIT + 1);
    expect(kept[0]?.type).toBe("fiber.start");
    expect(kept.at(-1)?.seq).toBe(2 * INBOX_LIMIT + 1);
    // Bounded in bytes too, at every moment: chunks of 1 MB are not kept for a reader that
    // stopped reading, be they few or many.
    const big = "x".repeat(1_000_000);
    for (let seq = 1; seq <= 100; seq++) {
      inbox.push([{ ...chunk(seq), data: big }]);
      expect(inbox.size * big.length).toBeLessThanOrEqual(INBOX_BYTES);
    }
    expect(inbox.take().at(-1)?.seq).toBe(100);
  });

  it("reads chunks and record of one fiber from a store without readStreamAndRecord", async () => {
    const memory = new MemoryStore();
    const chunk = (seq: number, data: string): StreamChunk => ({
      fiberId: "r",
      seq,
      type: "token",
      data,
      at: seq,
    });
    await memory.createFiber(fiber("r", { createdAt: 1 }), [chunk(1, "old"), chunk(2, "old")]);
    // A store of one's own with the required reads only: between its chunks and its record, the
    // fiber is collected and another one started under the id, once.
    let churn = true;
    const plain = new Proxy(memory, {
      get: (target, property) => {
        if (property === "readStreamAndRecord") return undefined;
        if (property === "readStream") {
          return async (id: string, after: number, limit?: number) => {
            const chunks = await target.readStream(id, after, limit);
            if (churn) {
              churn = false;
              await target.deleteFibers([id]);
              await target.createFiber(fiber("r", { createdAt: 2 }), [chunk(1, "new")]);
            }
            return chunks;
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) as Store;
    const read = await readStreamAndRecord(plain, "r", 0);
    expect(read.record?.createdAt).toBe(2);
    expect(read.chunks.map((c) => c.data)).toEqual(["new"]);
  });

  it("never carries a reader paused mid-stream into a new fiber started under the same id", async () => {
    const store = new MemoryStore();
    const chatter = defineFiber("chatter", {
      async run(ctx, input: { n: number; text: string }) {
        for (let i = 0; i < input.n; i++) ctx.emit("token", `${input.text} ${i}`);
      },
    });
    const runtime = track(createRuntime({ store, fibers: [chatter] }));
    const first = await runtime.start(chatter, { n: 600, text: "old" }, { id: "reused" });
    await runtime.result(first);
    // A page that read the first page of the stream (512 chunks) and went quiet.
    const batches = runtime.eventBatches(first.id)[Symbol.asyncIterator]();
    const page = await batches.next();
    expect(page.done).toBe(false);
    // Meanwhile the fiber is collected and another starts under its id, with more chunks than a
    // page, all published to the still-subscribed reader.
    await store.deleteFibers([first.id]);
    const second = await runtime.start(chatter, { n: 600, text: "new" }, { id: "reused" });
    await runtime.result(second);
    const after: string[] = [];
    const rest = (async () => {
      for (let next = await batches.next(); !next.done; next = await batches.next())
        for (const event of next.value) after.push(String(event.data));
    })();
    await expect(rest).rejects.toMatchObject({ code: "fiber_not_found" });
    expect(after.filter((data) => data.startsWith("new"))).toEqual([]);
  });
});

describe("step attempts (item 10)", () => {
  it("keeps a retry's backoff, and its new chain, across a crash during the backoff", async () => {
    const disk = new MemoryStore();
    const seen: Array<{ attempt: number; interrupted: boolean; emitted: unknown[] }> = [];
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step(
          "answer",
          async ({ attempt, interrupted, emit, emitted }) => {
            seen.push({ attempt, interrupted, emitted: emitted.map((e) => e.data) });
            if (attempt === 1) {
              emit("token", "from the failed attempt");
              throw new Error("rate limited");
            }
            return "ok";
          },
          { retry: { maxAttempts: 3, initialDelayMs: 400 } },
        );
      },
    });
    const dying = crashableStore(disk);
    const first = track(createRuntime({ store: dying, fibers: [job], leaseMs: 20 }));
    const fiber = await first.start(job, {}, { id: "backoff" });
    // The failed attempt is durable with when its retry is due: the crash lands in the backoff.
    await expect.poll(async () => (await disk.readJournal(fiber.id))[0]?.error).toBeDefined();
    const failed = (await disk.readJournal(fiber.id))[0];
    expect(failed).toMatchObject({ status: "started", attempt: 1, dueAt: (failed?.endedAt ?? 0) + 400 });
    dying.crash();
    await delay(30);
    const second = track(createRuntime({ store: disk, fibers: [job], leaseMs: 20 }));
    await second.recover();
    expect(await second.result(fiber)).toBe("ok");
    // A retry after an error, not an interrupted attempt: no chunks of the failed one.
    expect(seen).toEqual([
      { attempt: 1, interrupted: false, emitted: [] },
      { attempt: 2, interrupted: false, emitted: [] },
    ]);
    // And not before its backoff was over, though the process that set it died.
    const done = (await disk.readJournal(fiber.id))[0];
    expect(done).toMatchObject({ status: "completed", attempt: 2 });
    expect(done?.startedAt).toBeGreaterThanOrEqual(failed?.dueAt ?? Number.POSITIVE_INFINITY);
  });

  it("tells the attempt after a timed-out one that it is interrupted, live and across a crash in the backoff", async () => {
    const disk = new MemoryStore();
    const seen: Array<{ attempt: number; interrupted: boolean; emitted: number }> = [];
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step(
          "charge",
          async ({ attempt, interrupted, emitted }) => {
            seen.push({ attempt, interrupted, emitted: emitted.length });
            // Ignores its signal: past its timeout it goes on, and may have had its effect.
            if (attempt <= 2) await delay(60);
            return "charged";
          },
          { timeoutMs: 20, retry: { maxAttempts: 3, initialDelayMs: 300 } },
        );
      },
    });
    const dying = crashableStore(disk);
    const first = track(createRuntime({ store: dying, fibers: [job], leaseMs: 20 }));
    const fiber = await first.start(job, {}, { id: "timeouts" });
    // The second attempt timed out too: the crash lands in the backoff before the third.
    await expect.poll(async () => (await disk.readJournal(fiber.id))[0]?.attempt, { timeout: 3_000 }).toBe(2);
    await expect.poll(async () => (await disk.readJournal(fiber.id))[0]?.error?.code).toBe("timeout");
    dying.crash();
    await delay(30);
    const second = track(createRuntime({ store: disk, fibers: [job], leaseMs: 20 }));
    await second.recover();
    expect(await second.result(fiber)).toBe("charged");
    expect(seen).toEqual([
      { attempt: 1, interrupted: false, emitted: 0 },
      { attempt: 2, interrupted: true, emitted: 0 },
      { attempt: 3, interrupted: true, emitted: 0 },
    ]);
  });

  it("tells the retry after an error coded timeout (an upstream's) it is interrupted, live and after a crash", async () => {
    const job = (seen: boolean[]) =>
      defineFiber("job", {
        async run(ctx) {
          return ctx.step(
            "call",
            async ({ attempt, interrupted }) => {
              seen.push(interrupted);
              // Whether the upstream acted is unknown: the retry must be told.
              if (attempt === 1) throw Object.assign(new Error("upstream timed out"), { code: "timeout" });
              return "ok";
            },
            { retry: { maxAttempts: 2, initialDelayMs: 300 } },
          );
        },
      });
    const live: boolean[] = [];
    const rt = track(createRuntime({ store: new MemoryStore(), fibers: [job(live)], leaseMs: 20 }));
    await rt.result(await rt.start(job(live), {}, { id: "live" }));
    expect(live).toEqual([false, true]);
    const replayed: boolean[] = [];
    const disk = new MemoryStore();
    const dying = crashableStore(disk);
    const first = track(createRuntime({ store: dying, fibers: [job(replayed)], leaseMs: 20 }));
    const fiber = await first.start(job(replayed), {}, { id: "crash" });
    await expect.poll(async () => (await disk.readJournal(fiber.id))[0]?.error?.code).toBe("timeout");
    dying.crash();
    await delay(30);
    const second = track(createRuntime({ store: disk, fibers: [job(replayed)], leaseMs: 20 }));
    await second.recover();
    await second.result(fiber);
    expect(replayed).toEqual([false, true]);
  });

  it("drops the chunks of an attempt that timed out and is still running", async () => {
    const store = new MemoryStore();
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step(
          "answer",
          async ({ attempt, emit }) => {
            if (attempt === 1) {
              emit("token", "first");
              await delay(45);
              emit("token", "late"); // a zombie: its attempt timed out at 30 ms
              return "never used";
            }
            emit("token", "second");
            await delay(25); // attempt 1, still running, emits in between
            emit("token", "second, more");
            return "ok";
          },
          { timeoutMs: 30, retry: { maxAttempts: 2, initialDelayMs: 1 } },
        );
      },
    });
    const runtime = track(createRuntime({ store, fibers: [job] }));
    const fiber = await runtime.start(job, {}, { id: "zombie" });
    expect(await runtime.result(fiber)).toBe("ok");
    const tokens = (await store.readStream(fiber.id, 0)).filter((c) => c.type === "token");
    expect(tokens.map((c) => c.data)).toEqual(["first", "second", "second, more"]);
  });

  it("gives an interrupted attempt only its own chain's chunks, not those of a failed attempt", async () => {
    const disk = new MemoryStore();
    const emittedSeen: unknown[][] = [];
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step(
          "answer",
          async ({ attempt, emit, emitted }) => {
            emittedSeen.push(emitted.map((e) => e.data));
            if (attempt === 1) {
              emit("token", "from the failed attempt");
              throw new Error("rate limited");
            }
            if (attempt === 2) {
              emit("token", "from the cut attempt");
              return new Promise<never>(() => {});
            }
            return "ok";
          },
          { retry: { maxAttempts: 3, initialDelayMs: 1 } },
        );
      },
    });
    const dying = crashableStore(disk);
    const first = track(createRuntime({ store: dying, fibers: [job], leaseMs: 20 }));
    const fiber = await first.start(job, {}, { id: "chain" });
    await expect.poll(async () => (await disk.readStream(fiber.id, 0)).length).toBe(3);
    dying.crash();
    await delay(30);
    const second = track(createRuntime({ store: disk, fibers: [job], leaseMs: 20 }));
    await second.recover();
    expect(await second.result(fiber)).toBe("ok");
    expect(emittedSeen).toEqual([[], [], ["from the cut attempt"]]);
  });
});

describe("argued from the code (item 12)", () => {
  it("refuses an event for a fiber that ends while the event is being stored", async () => {
    const disk = new MemoryStore();
    const store = intercept(disk, {
      async enqueueEvent(event) {
        await delay(40); // the fiber completes meanwhile
        return disk.enqueueEvent(event);
      },
    });
    const brief = defineFiber("brief", {
      async run(ctx) {
        await ctx.step("work", () => delay(10));
        return "done";
      },
    });
    const runtime = track(createRuntime({ store, fibers: [brief] }));
    const fiber = await runtime.start(brief, {}, { id: "brief" });
    await expect(runtime.sendEvent(fiber.id, "late", 1)).rejects.toMatchObject({ code: "fiber_ended" });
    expect(await runtime.result(fiber)).toBe("done");
    expect(await disk.readInbox(fiber.id)).toEqual([]);
  });

  it('gives a run restarted by onRecovered "restart" the events the discarded run consumed', async () => {
    expect(await restartAfterConsumingAnEvent({ unloadBeforeWait: false })).toEqual({ ok: true });
  });

  it('gives the steps of a run restarted by onRecovered "restart" keys of their own', async () => {
    const disk = new MemoryStore();
    const keys: string[] = [];
    let life = 1;
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step("charge", ({ idempotencyKey }) => {
          keys.push(idempotencyKey);
          return life === 1 ? new Promise<never>(() => {}) : "charged";
        });
      },
      onRecovered: () => "restart",
    });
    const dying = crashableStore(disk);
    const first = track(createRuntime({ store: dying, fibers: [job], leaseMs: 20 }));
    const fiber = await first.start(job, {}, { id: "again" });
    await expect.poll(() => keys.length).toBe(1);
    dying.crash();
    await delay(30);
    life = 2;
    const second = track(createRuntime({ store: disk, fibers: [job], leaseMs: 20 }));
    await second.recover();
    expect(await second.result(fiber)).toBe("charged");
    expect(keys).toEqual(["again:charge#1", "again~1:charge#1"]);
  });

  it("does not recover a fiber that start() has just created when recover() runs at the same time", async () => {
    const disk = new MemoryStore();
    const store = intercept(disk, {
      async createFiber(record, chunks) {
        const created = await disk.createFiber(record, chunks);
        await delay(30); // recover() lists the new record before start() hears back
        return created;
      },
    });
    const job = defineFiber("job", { run: async () => "done" });
    const runtime = track(createRuntime({ store, fibers: [job] }));
    const starting = runtime.start(job, {}, { id: "fresh" });
    await delay(10);
    const summary = await runtime.recover();
    await starting;
    expect(summary.resumed).toEqual([]);
    expect(await runtime.result("fresh")).toBe("done");
    expect(await storedTypes(disk, "fresh")).toEqual(["fiber.start", "fiber.end"]);
  });
});

describe("emits outside steps under Promise.all (item 12)", () => {
  /**
   * Two branches whose steps finish in another order live than the order replay resolves them
   * in (replay returns recorded steps at once, in call order). A crash at every write, applied
   * or not, then a recovery: each emit must be in the stream exactly once.
   */
  const branches = defineFiber("branches", {
    async run(ctx) {
      const branch = async (name: string, ms: number, count: number) => {
        for (let i = 0; i < count; i++) {
          await ctx.step(name, () => delay(ms));
          ctx.emit("mark", `${name}${i}`);
        }
      };
      await Promise.all([branch("slow", 9, 3), branch("fast", 2, 4)]);
      ctx.emit("mark", "done");
      return "ok";
    },
  });
  const labels = ["slow0", "slow1", "slow2", "fast0", "fast1", "fast2", "fast3", "done"];

  for (const applyCrashingWrite of [false, true]) {
    it(`keeps every emit exactly once after a crash at any write (crashing write ${applyCrashingWrite ? "applied" : "lost"})`, async () => {
      for (let crashAtWrite = 2; crashAtWrite <= 16; crashAtWrite++) {
        const disk = new MemoryStore();
        const dying = crashableStore(disk, { crashAtWrite, applyCrashingWrite });
        const first = track(createRuntime({ store: dying, fibers: [branches], leaseMs: 20 }));
        await first.start(branches, {}, { id: "b" }).catch(() => undefined);
        const ended = async () => (await disk.getFiber("b"))?.status === "completed";
        await expect.poll(async () => dying.crashed || (await ended())).toBe(true);
        await delay(30);
        const second = track(createRuntime({ store: disk, fibers: [branches], leaseMs: 20 }));
        await second.recover();
        if (!(await disk.getFiber("b"))) continue; // crashed before the fiber was created
        expect(await second.result("b")).toBe("ok");
        const marks = (await disk.readStream("b", 0)).filter((c) => c.type === "mark").map((c) => c.data);
        expect([...marks].sort(), `crash at write ${crashAtWrite}`).toEqual([...labels].sort());
      }
    }, 30_000);
  }
});

describe("a step still executing when its run stops (item 12)", () => {
  it("is not executed again beside itself: the fiber's lock waits for the abandoned attempt", async () => {
    const disk = new MemoryStore();
    let failed = false;
    const store = intercept(disk, {
      async commit(groups: WriteGroup[]) {
        if (!failed && groups.some((g) => g.chunks?.some((c) => c.type === "progress"))) {
          failed = true;
          throw transient(); // the run stops while its step function keeps going
        }
        return disk.commit(groups);
      },
    });
    let running = 0;
    let overlapped = false;
    let executions = 0;
    const job = defineFiber("job", {
      async run(ctx) {
        return ctx.step("slow", async ({ emit }) => {
          executions++;
          running++;
          if (running > 1) overlapped = true;
          try {
            emit("progress", executions);
            await delay(250);
            return "done";
          } finally {
            running--;
          }
        });
      },
    });
    const runtime = track(createRuntime({ store, fibers: [job], leaseMs: 400 }));
    const fiber = await runtime.start(job, {}, { id: "zombie-lock" });
    expect(await runtime.result(fiber)).toBe("done");
    expect(executions).toBe(2);
    expect(overlapped).toBe(false);
  });

  it("does not hold up a second cancel of the fiber it was cancelled with", async () => {
    let finish = () => {};
    const stuck = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let entered = () => {};
    const inStep = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const job = defineFiber("job", {
      async run(ctx) {
        await ctx.step("deaf", async () => {
          entered();
          await stuck; // ignores step.signal, as a fetch without it does
        });
        return "done";
      },
    });
    // A lease longer than the test's patience: a second cancel waiting for the step would hang.
    const runtime = track(createRuntime({ store: new MemoryStore(), fibers: [job], leaseMs: 60_000 }));
    const fiber = await runtime.start(job, {}, { id: "double-stop" });
    await inStep;
    expect(await runtime.cancel(fiber.id)).toBe("cancelled");
    // A double click on "stop": answered from the record, while the step function still runs.
    expect(await runtime.cancel(fiber.id)).toBe("cancelled");
    finish();
  });

  it("keeps a wake-up that waited for it off a new fiber started under its id after a cancel", async () => {
    const disk = new MemoryStore();
    let failed = false;
    const store = intercept(disk, {
      async commit(groups: WriteGroup[]) {
        if (!failed && groups.some((g) => g.chunks?.some((c) => c.type === "boom"))) {
          failed = true;
          throw transient(); // the run stops; its step function goes on
        }
        return disk.commit(groups);
      },
    });
    let finish = () => {};
    const stuck = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const old = defineFiber("old", {
      async run(ctx) {
        await ctx.step("deaf", async ({ emit }) => {
          await delay(10);
          emit("boom", null);
          await stuck;
        });
        return "old";
      },
    });
    // Were it picked up as interrupted, its hook would end it before it ran.
    const fresh = defineFiber("fresh", { run: async () => "fresh", onRecovered: () => "abort" });
    const runtime = track(createRuntime({ store, fibers: [old, fresh], leaseMs: 1_500, retentionMs: 0 }));
    await runtime.start(old, {}, { id: "x" });
    await expect.poll(() => failed).toBe(true);
    await delay(300); // the retry's wake-up (after 100 ms) now waits for the step function
    expect(await runtime.cancel("x")).toBe("cancelled");
    await delay(5);
    expect(await runtime.collect()).toEqual(["x"]);
    const starting = runtime.start(fresh, {}, { id: "x" });
    await delay(20);
    finish();
    expect((await starting).created).toBe(true);
    expect(await runtime.result("x")).toBe("fresh");
    expect((await disk.readStream("x", 0)).map((c) => c.type)).not.toContain("fiber.recovered");
  });

  it("holds up neither a cancel nor the event's sender behind a wake-up that waits for it", async () => {
    let finish = () => {};
    const stuck = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const job = defineFiber("job", {
      async run(ctx) {
        try {
          await ctx.step("deaf", () => stuck, { timeoutMs: 50, retry: { maxAttempts: 1 } });
        } catch {
          // Timed out, its function still running: the run goes on to wait.
        }
        await ctx.waitForEvent("go");
        return "done";
      },
    });
    const runtime = track(createRuntime({ store: new MemoryStore(), fibers: [job], leaseMs: 60_000 }));
    const fiber = await runtime.start(job, {}, { id: "gated" });
    await expect.poll(async () => (await runtime.get(fiber.id))?.status).toBe("waiting");
    // The wake-up this event causes waits for the step function (a lease period at most); the
    // event is stored, and its sender and a cancel after it answer at once.
    await runtime.sendEvent(fiber.id, "go", {});
    expect(await runtime.cancel(fiber.id)).toBe("cancelled");
    finish();
  });
});

describe("replaying concurrent operations in their recorded order (item 12)", () => {
  it("wakes twice through a Promise.all of a wait and two steps, and reaches the same end", async () => {
    const store = new MemoryStore();
    const job = defineFiber("job", {
      async run(ctx) {
        try {
          await ctx.waitForEvent("approve", { timeoutMs: 20 });
        } catch {
          // timed out: recorded, and replayed as a timeout
        }
        await Promise.all([
          ctx.waitForEvent("input"),
          (async () => {
            await ctx.step("call", () => delay(30));
            ctx.emit("note", "e0");
          })(),
          (async () => {
            await ctx.step("call", () => delay(30));
            ctx.emit("note", "e1");
          })(),
        ]);
        await ctx.sleep("nap", 100);
        return ctx.step("call", () => "last");
      },
    });
    const runtime = track(createRuntime({ store, fibers: [job], unloadAfterMs: 0 }));
    await runtime.start(job, {}, { id: "twice" });
    await expect.poll(async () => (await store.getFiber("twice"))?.status).toBe("waiting");
    await delay(50);
    await runtime.sendEvent("twice", "approve", 1); // wakes it; nothing consumes this one
    await delay(50);
    await runtime.sendEvent("twice", "input", 2);
    expect(await runtime.result("twice")).toBe("last");
    const notes = (await store.readStream("twice", 0)).filter((c) => c.type === "note");
    expect(notes.map((c) => c.data)).toEqual(["e0", "e1"]);
  });

  it("replays two waits for one event name in Promise.all with each emit once", async () => {
    const store = new MemoryStore();
    const job = defineFiber("job", {
      async run(ctx) {
        return Promise.all([
          (async () => {
            const value = await ctx.waitForEvent("input");
            ctx.emit("note", "e0");
            return value;
          })(),
          (async () => {
            const value = await ctx.waitForEvent("input");
            ctx.emit("note", "e1");
            return value;
          })(),
        ]);
      },
    });
    const runtime = track(createRuntime({ store, fibers: [job], unloadAfterMs: 0 }));
    await runtime.start(job, {}, { id: "pair" });
    await expect.poll(async () => (await store.getFiber("pair"))?.status).toBe("waiting");
    await runtime.sendEvent("pair", "input", 1);
    await expect.poll(async () => (await store.getFiber("pair"))?.status).toBe("waiting");
    await runtime.sendEvent("pair", "input", 2);
    expect(await runtime.result("pair")).toEqual([1, 2]);
    const notes = (await store.readStream("pair", 0)).filter((c) => c.type === "note");
    expect(notes.map((c) => c.data)).toEqual(["e0", "e1"]);
  });
});

describe("found by mutating the engine (review of the tests)", () => {
  it("a restart from scratch releases the discarded run's events in storage, not only in memory", async () => {
    // The restarted run is unloaded before its wait: its wake-up reads the inbox from storage,
    // where the event must no longer be marked consumed.
    expect(await restartAfterConsumingAnEvent({ unloadBeforeWait: true })).toEqual({ ok: true });
  });

  it("cancel answers the status of a fiber that ended between its read of the record and its claim", async () => {
    const disk = new MemoryStore();
    let finish!: () => void;
    const gate = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const job = defineFiber("job", {
      async run(ctx) {
        await ctx.step("wait", () => gate);
        return "done";
      },
    });
    const runner = track(createRuntime({ store: disk, fibers: [job], runnerId: "a" }));
    const { id } = await runner.start(job, {}, { id: "racy" });
    // The canceller reads the record as it was, and the fiber completes right after that read.
    const racing = new Proxy(disk, {
      get(target, key, receiver) {
        if (key === "getFiber")
          return async (fiberId: string) => {
            const stale = await target.getFiber(fiberId);
            finish();
            await expect.poll(async () => (await target.getFiber(fiberId))?.status).toBe("completed");
            return stale;
          };
        const value = Reflect.get(target, key, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const canceller = track(createRuntime({ store: racing, fibers: [job], runnerId: "b" }));
    expect(await canceller.cancel(id)).toBe("completed");
    expect((await disk.getFiber(id))?.status).toBe("completed");
  });
});
