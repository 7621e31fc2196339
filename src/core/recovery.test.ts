/**
 * Crash recovery: a runtime is abandoned mid-run (its store "dies" as the process would) and a
 * new runtime on the same storage resumes the fiber. Includes the property-based crash test, run
 * on `MemoryStore` and on `IdbStore` (fake-indexeddb, a fresh store object per life, as a new
 * process would have).
 */

// IdbStore needs the IndexedDB classes as globals; each disk below gets its own factory.
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { IdbStore } from "../store/idb-store";
import { MemoryStore } from "../store/memory-store";
import { crashableStore } from "../testing/crash-store";
import { defineFiber, type FiberContext, type FiberDefinition } from "./define";
import { StoreError } from "./errors";
import type { FiberEvent } from "./records";
import { createRuntime, type Runtime } from "./runtime";
import type { CommitResult, Store } from "./store";

const runtimes: Runtime[] = [];
afterEach(async () => {
  // Crashed runtimes hang on their store; close() only stops their timers.
  await Promise.all(
    runtimes.splice(0).map((r) => Promise.race([r.close(), new Promise((res) => setTimeout(res, 10))])),
  );
});

function track(rt: Runtime): Runtime {
  runtimes.push(rt);
  return rt;
}

/**
 * Starts `doomed`, whose every run hangs in a step as if the process died there, then crashes
 * and recovers it, one life at a time, until it is failed (at most `lives` lives), and checks
 * it failed with `recovery_exhausted`. `runs` counts the step's executions.
 */
async function crashUntilFailed(
  disk: MemoryStore,
  doomed: FiberDefinition,
  runs: () => number,
  lives: number,
): Promise<void> {
  let store = crashableStore(disk);
  let rt = track(createRuntime({ store, fibers: [doomed], leaseMs: 20 }));
  const fiber = await rt.start(doomed, {});
  const failed = async () => (await disk.getFiber(fiber.id))?.status === "failed";
  for (let life = 1; life <= lives; life++) {
    // This life's run is stuck in its step, or the fiber was failed instead. recover() may find
    // the dead runner's lease still live and pick the fiber up once it expires, so either can
    // happen after recover() has returned.
    await expect.poll(async () => runs() === life || (await failed())).toBe(true);
    if (await failed()) break;
    store.crash();
    store = crashableStore(disk);
    rt = track(createRuntime({ store, fibers: [doomed], leaseMs: 20 }));
    await rt.recover();
  }
  await expect.poll(failed).toBe(true);
  expect((await disk.getFiber(fiber.id))?.error?.code).toBe("recovery_exhausted");
}

async function readAll(rt: Runtime, id: string): Promise<FiberEvent[]> {
  const out: FiberEvent[] = [];
  for await (const ev of rt.events(id)) out.push(ev);
  return out;
}

describe("replay after a crash", () => {
  it("resumes a torn-down fiber: completed steps stay done, the interrupted step re-runs with the same key, the stream continues", async () => {
    const disk = new MemoryStore();
    const calls: Array<{ key: string; interrupted: boolean; attempt: number }> = [];
    let releaseBlocked!: () => void;
    let firstLife = true;
    const job = defineFiber("job", {
      async run(ctx, input: { topic: string }) {
        const seenSnapshot = ctx.snapshot;
        const notes = await ctx.step("search", ({ idempotencyKey, interrupted, attempt }) => {
          calls.push({ key: idempotencyKey, interrupted, attempt });
          return `notes on ${input.topic}`;
        });
        ctx.emit("progress", { pct: 50 });
        await ctx.stash({ phase: "drafting", notes });
        const draft = await ctx.step("draft", ({ idempotencyKey, interrupted, attempt }) => {
          calls.push({ key: idempotencyKey, interrupted, attempt });
          if (firstLife)
            return new Promise<string>((resolve) => (releaseBlocked = () => resolve("never used")));
          return `draft from ${notes}`;
        });
        ctx.emit("progress", { pct: 100 });
        return { draft, seenSnapshot };
      },
    });

    const dying = crashableStore(disk);
    const first = track(createRuntime({ store: dying, fibers: [job], leaseMs: 30 }));
    const fiber = await first.start(job, { topic: "durable execution" }, { id: "job-1" });
    await expect
      .poll(async () => (await disk.readJournal("job-1")).find((e) => e.key === "draft#1")?.status)
      .toBe("started");
    dying.crash(); // the process dies while "draft" runs
    firstLife = false;
    releaseBlocked();

    const second = track(createRuntime({ store: disk, fibers: [job], leaseMs: 30 }));
    await second.recover();
    const result = await second.result(fiber);
    expect(result.draft).toBe("draft from notes on durable execution");
    expect(result.seenSnapshot).toEqual({ phase: "drafting", notes: "notes on durable execution" });

    expect(calls).toEqual([
      { key: "job-1:search#1", interrupted: false, attempt: 1 },
      { key: "job-1:draft#1", interrupted: false, attempt: 1 },
      { key: "job-1:draft#1", interrupted: true, attempt: 2 },
    ]);
    const events = await readAll(second, "job-1");
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.map((e) => e.type)).toEqual([
      "fiber.start",
      "progress",
      "fiber.recovered",
      "progress",
      "fiber.end",
    ]);
    expect(events.filter((e) => e.type === "progress").map((e) => e.data)).toEqual([
      { pct: 50 },
      { pct: 100 },
    ]);
    expect((await second.inspect("job-1")).record.recovery).toMatchObject({ count: 1 });
  });

  it("fails a fiber whose replay reaches a different step with replay_diverged", async () => {
    const disk = new MemoryStore();
    let variant = "a";
    const shifty = defineFiber("shifty", {
      async run(ctx) {
        await ctx.step(variant === "a" ? "first" : "other", () => 1);
        await ctx.waitForEvent("go");
        return variant;
      },
    });
    const dying = crashableStore(disk);
    const first = track(
      createRuntime({ store: dying, fibers: [shifty], leaseMs: 30, unloadAfterMs: 10_000 }),
    );
    const fiber = await first.start(shifty, {});
    await expect.poll(async () => (await disk.readJournal(fiber.id)).length).toBe(2);
    dying.crash();
    variant = "b";
    const second = track(createRuntime({ store: disk, fibers: [shifty], leaseMs: 30 }));
    await second.recover();
    await second.sendEvent(fiber.id, "go"); // wakes the waiting fiber, whose replay now diverges
    await expect(second.result(fiber)).rejects.toMatchObject({
      code: "replay_diverged",
      name: "ReplayDivergedError",
    });
  });

  it("fails with version_mismatch unless the old version is listed as compatible", async () => {
    const disk = new MemoryStore();
    const v1 = defineFiber("versioned", {
      version: "1",
      async run(ctx) {
        await ctx.waitForEvent("go");
      },
    });
    for (const [compatible, expected] of [
      [[], "failed"],
      [["1"], "completed"],
    ] as const) {
      const dying = crashableStore(disk);
      const first = track(createRuntime({ store: dying, fibers: [v1], leaseMs: 30, unloadAfterMs: 10_000 }));
      const fiber = await first.start(v1, {});
      await expect.poll(async () => (await disk.readJournal(fiber.id)).length).toBe(1);
      dying.crash();
      const v2 = defineFiber("versioned", {
        version: "2",
        compatibleVersions: compatible,
        async run(ctx) {
          await ctx.waitForEvent("go");
        },
      });
      const second = track(createRuntime({ store: disk, fibers: [v2], leaseMs: 30 }));
      await second.recover();
      if (expected === "completed") await second.sendEvent(fiber.id, "go");
      await expect.poll(async () => (await disk.getFiber(fiber.id))?.status).toBe(expected);
      if (expected === "failed")
        expect((await disk.getFiber(fiber.id))?.error?.code).toBe("version_mismatch");
    }
  });

  it("fails a crash-looping fiber with recovery_exhausted instead of re-running it forever", async () => {
    const disk = new MemoryStore();
    let runs = 0;
    const doomed = defineFiber("doomed", {
      maxRecoveries: 3,
      async run(ctx) {
        await ctx.step("ok", () => 1);
        await ctx.step("crashes", () => {
          runs++;
          return new Promise(() => {}); // the "process" dies in here every time
        });
      },
    });
    await crashUntilFailed(disk, doomed, () => runs, 5);
    expect(runs).toBe(4); // the first run and three recoveries, then no more
  });

  it("picks a fiber + stash fiber up from its last stash: later stashes are kept, its emits after the stash are neither lost nor doubled, its steps run once", async () => {
    const disk = new MemoryStore();
    const ran: string[] = [];
    let stallAt = 5; // the first life stalls once item 5 is emitted, before it is stashed
    const counter = defineFiber("counter", {
      resumeFrom: "stash",
      async run(ctx, input: { items: number }) {
        let done = (ctx.snapshot as { done: number } | undefined)?.done ?? 0;
        while (done < input.items) {
          const item = done + 1;
          const value = await ctx.step("work", ({ idempotencyKey }) => {
            ran.push(idempotencyKey);
            return item * 10;
          });
          ctx.emit("item", { item, value });
          if (item === stallAt) await new Promise(() => {});
          await ctx.stash({ done: item });
          done = item;
        }
        return { done };
      },
    });

    const dying = crashableStore(disk);
    const first = track(createRuntime({ store: dying, fibers: [counter], leaseMs: 30 }));
    const fiber = await first.start(counter, { items: 8 }, { id: "c" });
    // The process dies once step 5 and its emit are durable, before the stash that follows.
    await expect
      .poll(async () => (await disk.readStream("c", 0)).at(-1)?.data)
      .toEqual({ item: 5, value: 50 });
    dying.crash();
    expect((await disk.readSnapshot("c"))?.value).toEqual({ done: 4 });

    stallAt = 0;
    const second = track(createRuntime({ store: disk, fibers: [counter], leaseMs: 30 }));
    await second.recover();
    expect(await second.result(fiber)).toEqual({ done: 8 });
    // Every stash of the second run was written, though it made fewer than the first had.
    expect((await disk.readSnapshot("c"))?.value).toEqual({ done: 8 });
    // Step "work" of item 5 completed before the crash: the second run got its result back.
    expect(ran).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => `c:work#${n}`));
    const items = (await readAll(second, "c")).filter((e) => e.type === "item").map((e) => e.data);
    expect(items).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((item) => ({ item, value: item * 10 })));
  });

  it("fails a fiber that picks up from its snapshot without resumeFrom stash with replay_diverged, instead of completing with wrong step results", async () => {
    const disk = new MemoryStore();
    let stallAt = 4;
    // Picks up from ctx.snapshot but is defined to replay from the top.
    const skipper = defineFiber("skipper", {
      async run(ctx, input: { items: number }) {
        let done = (ctx.snapshot as { done: number } | undefined)?.done ?? 0;
        const values: number[] = [];
        while (done < input.items) {
          done++;
          const item = done;
          values.push(await ctx.step("work", () => item * 10));
          if (done === stallAt) await new Promise(() => {});
          await ctx.stash({ done });
        }
        return values;
      },
    });
    const dying = crashableStore(disk);
    const first = track(createRuntime({ store: dying, fibers: [skipper], leaseMs: 30 }));
    const fiber = await first.start(skipper, { items: 5 }, { id: "s" });
    await expect
      .poll(async () => (await disk.readJournal("s")).filter((e) => e.status === "completed").length)
      .toBe(4);
    dying.crash();
    stallAt = 0;
    const second = track(createRuntime({ store: disk, fibers: [skipper], leaseMs: 30 }));
    await second.recover();
    // Items 4 and 5 got the recorded results of work#1 and work#2 (10 and 20); work#3 and work#4
    // were never reached again, which gives the handler away.
    const error = await second.result(fiber).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "replay_diverged" });
    expect((error as Error).message).toMatch(
      /without reaching step "work#3" at position 2.*needs resumeFrom: "stash"/,
    );
  });

  it("keeps a fiber that emits or stashes inside a step replaying as before: no replay_diverged when its replay makes fewer", async () => {
    const disk = new MemoryStore();
    const inside = defineFiber("inside", {
      async run(ctx) {
        const v = await ctx.step("s", async () => {
          ctx.emit("progress", { p: 1 });
          await ctx.stash({ p: 1 });
          return 1;
        });
        return v + (await ctx.waitForEvent<number>("go"));
      },
    });
    const rt = track(createRuntime({ store: disk, fibers: [inside], unloadAfterMs: 5 }));
    const fiber = await rt.start(inside, {});
    await expect.poll(async () => (await disk.getFiber(fiber.id))?.status).toBe("waiting");
    await rt.sendEvent(fiber.id, "go", 2); // wakes it: the replay does not run the step again
    expect(await rt.result(fiber)).toBe(3);
  });

  it("fails a crash-looping fiber + stash fiber with recovery_exhausted, though each run stashes again", async () => {
    const disk = new MemoryStore();
    let runs = 0;
    const doomed = defineFiber("doomed", {
      resumeFrom: "stash",
      maxRecoveries: 3,
      async run(ctx) {
        const state = (ctx.snapshot as { phase: number } | undefined) ?? { phase: 1 };
        await ctx.stash(state); // the same save point, made again by every run
        await ctx.step("crashes", () => {
          runs++;
          return new Promise(() => {}); // the "process" dies in here every time
        });
      },
    });
    await crashUntilFailed(disk, doomed, () => runs, 6);
    expect(runs).toBe(4);
  });

  it("refuses, in a resumeFrom: stash fiber, a stash no later run could pick up from", async () => {
    const caught: Array<string | undefined> = [];
    const guarded = defineFiber("guarded", {
      resumeFrom: "stash",
      async run(ctx) {
        const attempt = async (fn: () => Promise<unknown>) => {
          try {
            await fn();
            caught.push(undefined);
          } catch (error) {
            caught.push(`${(error as { code?: string }).code}: ${(error as Error).message}`);
          }
        };
        await attempt(() => ctx.stash(undefined));
        // The loser of a race is still pending when the winner settles.
        const loser = ctx.sleep("timeout", 30);
        await Promise.race([ctx.step("fast", () => 1), loser]);
        await attempt(() => ctx.stash({ phase: 1 }));
        await loser;
        await attempt(() => ctx.stash({ phase: 2 }));
        return "done";
      },
    });
    const rt = track(createRuntime({ store: new MemoryStore(), fibers: [guarded] }));
    expect(await rt.result(await rt.start(guarded, {}))).toBe("done");
    expect(caught[0]).toMatch(/^invalid_argument: ctx.stash\(undefined\)/);
    expect(caught[1]).toMatch(/^invalid_argument: .*while a step, sleep or wait of its run is pending/);
    expect(caught[2]).toBeUndefined();
  });

  it("fails with replay_diverged a fiber whose definition gained resumeFrom: stash after it stashed", async () => {
    const disk = new MemoryStore();
    const body = async (ctx: FiberContext) => {
      await ctx.stash({ phase: 1 });
      await ctx.waitForEvent("go");
      return "done";
    };
    const before = defineFiber("changing", { run: body });
    const first = track(createRuntime({ store: disk, fibers: [before], unloadAfterMs: 5 }));
    const fiber = await first.start(before, {});
    await expect.poll(async () => (await disk.getFiber(fiber.id))?.status).toBe("waiting");
    await first.close();
    const after = defineFiber("changing", { resumeFrom: "stash", run: body });
    const second = track(createRuntime({ store: disk, fibers: [after] }));
    await second.recover();
    await second.sendEvent(fiber.id, "go");
    const error = await second.result(fiber).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "replay_diverged" });
    expect((error as Error).message).toMatch(/gained the option while the fiber ran/);
  });

  it("lets onRecovered restart a fiber from scratch or abort it", async () => {
    for (const decision of ["restart", "abort"] as const) {
      const disk = new MemoryStore();
      let executions = 0;
      let hang = true;
      const def = defineFiber(`decides-${decision}`, {
        onRecovered: () => decision,
        async run(ctx) {
          ctx.emit("hello", { epoch: ctx.recovery ? "second" : "first" });
          await ctx.step("work", () => {
            executions++;
            return hang ? new Promise(() => {}) : "done";
          });
          return ctx.snapshot ?? "no snapshot";
        },
      });
      const dying = crashableStore(disk);
      const first = track(createRuntime({ store: dying, fibers: [def], leaseMs: 20 }));
      const fiber = await first.start(def, {});
      await expect.poll(() => executions).toBe(1);
      dying.crash();
      hang = false;
      const second = track(createRuntime({ store: disk, fibers: [def], leaseMs: 20 }));
      await second.recover();
      if (decision === "restart") {
        expect(await second.result(fiber)).toBe("no snapshot");
        const types = (await readAll(second, fiber.id)).map((e) => e.type);
        expect(types).toEqual(["fiber.start", "hello", "fiber.recovered", "hello", "fiber.end"]);
      } else {
        await expect(second.result(fiber)).rejects.toMatchObject({ code: "recovery_aborted" });
        expect(executions).toBe(1);
      }
    }
  });

  it("wakes a fiber whose timer fell due while no runtime was running", async () => {
    const disk = new MemoryStore();
    const nap = defineFiber("nap", {
      async run(ctx) {
        await ctx.sleep("nap", 300);
        return "rested";
      },
    });
    const first = track(createRuntime({ store: disk, fibers: [nap], unloadAfterMs: 0 }));
    const fiber = await first.start(nap, {});
    await expect.poll(async () => (await disk.getFiber(fiber.id))?.status, { interval: 5 }).toBe("sleeping");
    await first.close();
    await new Promise((r) => setTimeout(r, 350));
    const second = track(createRuntime({ store: disk, fibers: [nap] }));
    const summary = await second.recover();
    expect(summary.resumed).toEqual([fiber.id]);
    expect(await second.result(fiber)).toBe("rested");
  });
});

// ---- property-based crash test -------------------------------------------------------------

type Op =
  | { kind: "step"; name: string }
  | { kind: "emit" }
  | { kind: "stash" }
  | { kind: "sleep"; ms: number }
  | { kind: "event" }
  | { kind: "now" }
  | { kind: "parallel"; width: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("step" as const), name: fc.constantFrom("a", "b", "c") }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("emit" as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("stash" as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("sleep" as const), ms: fc.integer({ min: 0, max: 8 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("event" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("now" as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("parallel" as const), width: fc.integer({ min: 2, max: 3 }) }),
  },
);

interface Life {
  alive: boolean;
  executions: Array<{ key: string; interrupted: boolean }>;
}

/**
 * The program as a fiber of either shape: "start" replays from the top; "stash" picks up from
 * its last stash, which holds how far it got and what it had (`resumeFrom: "stash"`).
 */
function programFiber(life: { current: Life }, shape: Shape = "start") {
  return defineFiber("program", {
    resumeFrom: shape,
    async run(ctx, input: { ops: Op[] }) {
      const saved =
        shape === "stash" ? (ctx.snapshot as { upTo: number; out: unknown[] } | undefined) : undefined;
      const out: unknown[] = saved === undefined ? [] : [...saved.out];
      const exec = (name: string, i: number) =>
        ctx.step(name, async ({ idempotencyKey, interrupted }) => {
          if (life.current.alive) life.current.executions.push({ key: idempotencyKey, interrupted });
          await new Promise((r) => setTimeout(r, i % 3));
          return `${name}@${i}`;
        });
      for (const [i, op] of input.ops.entries()) {
        if (saved !== undefined && i <= saved.upTo) continue;
        switch (op.kind) {
          case "step":
            out.push(await exec(op.name, i));
            break;
          case "parallel":
            out.push(await Promise.all(Array.from({ length: op.width }, (_, k) => exec(`p${k}`, i))));
            break;
          case "emit":
            ctx.emit("note", { i });
            break;
          case "stash":
            await ctx.stash(shape === "stash" ? { upTo: i, out: [...out] } : { upTo: i });
            break;
          case "sleep":
            await ctx.sleep(`s${i}`, op.ms);
            break;
          case "event":
            out.push(await ctx.waitForEvent(`e${i}`));
            break;
          case "now":
            await ctx.now();
            break;
        }
      }
      out.push(ctx.snapshot ?? null);
      return out;
    },
  });
}

type Shape = "start" | "stash";

async function uninterrupted(ops: Op[], shape: Shape): Promise<unknown> {
  const life = { current: { alive: true, executions: [] } as Life };
  const rt = track(
    createRuntime({ store: new MemoryStore(), fibers: [programFiber(life, shape)], unloadAfterMs: 3 }),
  );
  const fiber = await rt.start("program", { ops }, { id: "p" });
  for (const [i, op] of ops.entries()) if (op.kind === "event") await rt.sendEvent("p", `e${i}`, { i });
  return rt.result(fiber);
}

/** Storage that outlives a crash: `open()` is what a new life (process) gets, `reader` checks it. */
interface Disk {
  open(): Store;
  reader: Store;
}

const disks: Array<[string, () => Disk]> = [
  [
    "MemoryStore",
    () => {
      const memory = new MemoryStore();
      return { open: () => memory, reader: memory };
    },
  ],
  [
    "IdbStore",
    () => {
      const factory = new IDBFactory();
      return {
        open: () => new IdbStore({ name: "disk", indexedDB: factory }),
        reader: new IdbStore({ name: "disk", indexedDB: factory }),
      };
    },
  ],
];

describe.each(
  disks.flatMap(([name, disk]) => (["start", "stash"] as const).map((shape) => [name, shape, disk] as const)),
)(
  "property on %s, resuming from the %s: random programs survive crashes at random writes",
  (_name, shape, makeDisk) => {
    let crashesSeen = 0;
    it("never re-executes a completed step, keeps the stream gapless and duplicate-free, and returns what an uninterrupted run returns", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb, { minLength: 1, maxLength: 12 }),
          fc.array(fc.record({ at: fc.integer({ min: 1, max: 12 }), apply: fc.boolean() }), {
            minLength: 1,
            maxLength: 4,
          }),
          async (ops, crashes) => {
            const expected = await uninterrupted(ops, shape);
            const { open, reader: disk } = makeDisk();
            const life = { current: { alive: true, executions: [] } as Life };
            const fiberDef = programFiber(life, shape);
            const allExecutions: Array<{ key: string; interrupted: boolean; life: number }> = [];
            const completedAtCrash = new Set<string>();
            const schedule = [...crashes, null];
            for (const [n, crash] of schedule.entries()) {
              life.current = { alive: true, executions: [] };
              const store = crashableStore(
                open(),
                crash ? { crashAtWrite: crash.at, applyCrashingWrite: crash.apply } : {},
              );
              const rt = track(createRuntime({ store, fibers: [fiberDef], leaseMs: 15, unloadAfterMs: 3 }));
              const drive = (async () => {
                await rt.recover();
                await rt.start(fiberDef, { ops }, { id: "p" });
                const inbox = await disk.readInbox("p");
                for (const [i, op] of ops.entries()) {
                  if (op.kind === "event" && !inbox.some((e) => e.name === `e${i}`))
                    await rt.sendEvent("p", `e${i}`, { i });
                }
              })();
              drive.catch(() => {});
              await expect
                .poll(
                  async () =>
                    store.crashed ||
                    ((await disk.getFiber("p"))?.status ?? "").match(/completed|failed/) !== null,
                  {
                    timeout: 10_000,
                    interval: 5,
                  },
                )
                .toBe(true);
              life.current.alive = false;
              // A step durably completed before this life began must not have run in it.
              const rerun = life.current.executions.filter((e) => completedAtCrash.has(e.key));
              expect(rerun).toEqual([]);
              for (const e of life.current.executions) allExecutions.push({ ...e, life: n });
              if (!store.crashed) break;
              crashesSeen++;
              for (const entry of await disk.readJournal("p")) {
                if (entry.kind === "step" && entry.status === "completed")
                  completedAtCrash.add(`p:${entry.key}`);
              }
            }
            const record = await disk.getFiber("p");
            expect(record?.status).toBe("completed");
            expect(record?.result).toEqual(expected);

            // No completed step re-executed; every re-execution is flagged interrupted with the same key.
            const seen = new Map<string, number>();
            for (const e of allExecutions) {
              const count = (seen.get(e.key) ?? 0) + 1;
              seen.set(e.key, count);
              if (count > 1) expect(e.interrupted).toBe(true);
            }
            const journal = await disk.readJournal("p");
            expect(journal.every((e) => e.status === "completed")).toBe(true);

            // The stream: contiguous seqs, each emit exactly once and in program order.
            const chunks = await disk.readStream("p", 0);
            expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i + 1));
            const notes = chunks.filter((c) => c.type === "note").map((c) => (c.data as { i: number }).i);
            const expectedNotes = ops.flatMap((op, i) => (op.kind === "emit" ? [i] : []));
            expect(notes).toEqual(expectedNotes);
            expect(chunks.at(-1)?.type).toBe("fiber.end");
            expect(chunks.filter((c) => c.type === "fiber.start")).toHaveLength(1);
          },
        ),
        {
          numRuns: Number(process.env.FIBERLINE_RUNS ?? 40),
          seed: Number(process.env.FIBERLINE_SEED ?? 20261126),
          endOnFailure: true,
        },
      );
      // The schedule must really have crashed runtimes mid-run, not just run clean programs.
      expect(crashesSeen).toBeGreaterThan(40);
    }, 120_000);
  },
);

/**
 * A store whose writes stop reaching storage while frozen and arrive, in order, once thawed: a
 * runner whose process was suspended (a frozen tab, a closed laptop lid) long enough to lose its
 * lease. `commits` records what each commit that reached storage since the freeze returned.
 */
function freezable(inner: Store) {
  let thawed = Promise.resolve();
  let thaw = (): void => {};
  let frozen = false;
  const commits: CommitResult[] = [];
  const held = <T>(fn: () => Promise<T>): Promise<T> => thawed.then(fn);
  const store: Store = {
    kind: inner.kind,
    getFiber: (id) => inner.getFiber(id),
    findByIdempotencyKey: (key) => inner.findByIdempotencyKey(key),
    listFibers: (query) => inner.listFibers(query),
    readJournal: (id) => inner.readJournal(id),
    readSnapshot: (id) => inner.readSnapshot(id),
    readStream: (id, after, limit) => inner.readStream(id, after, limit),
    readInbox: (id) => inner.readInbox(id),
    createFiber: (record, chunks) => held(() => inner.createFiber(record, chunks)),
    claimFiber: (id, request) => held(() => inner.claimFiber(id, request)),
    commit: (groups) => {
      // Only the writes made once frozen: one in flight at the freeze (a lease renewal, with
      // leases of 20 ms) completes before the takeover, and is rightly not fenced.
      const sinceFreeze = frozen;
      return held(async () => {
        const result = await inner.commit(groups);
        if (sinceFreeze) commits.push(result);
        return result;
      });
    },
    enqueueEvent: (event) => held(() => inner.enqueueEvent(event)),
    deleteFibers: (ids, options) => held(() => inner.deleteFibers(ids, options)),
    close: () => inner.close(),
  };
  return {
    store,
    commits,
    freeze() {
      frozen = true;
      commits.length = 0;
      thawed = new Promise<void>((resolve) => (thaw = resolve));
    },
    thaw: () => thaw(),
  };
}

describe.each(disks)("one runner per fiber on %s", (_name, makeDisk) => {
  it("keeps a stalled runner of a collected fiber out of a new fiber started under the same id", async () => {
    const disk = makeDisk();
    let stall = true;
    let releaseStalled!: () => void;
    const job = defineFiber("job", {
      async run(ctx, input: { life: string }) {
        const work = await ctx.step("work", () => {
          if (!stall) return `${input.life} work`;
          stall = false;
          return new Promise<string>((resolve) => (releaseStalled = () => resolve("stale work")));
        });
        ctx.emit("note", work);
        await ctx.stash(work);
        return work;
      },
    });

    // The first runner starts the fiber and stalls inside its step; then its process freezes.
    const frozen = freezable(disk.open());
    const stalled = track(createRuntime({ store: frozen.store, fibers: [job], leaseMs: 20 }));
    await stalled.start(job, { life: "first" }, { id: "job-1" });
    await expect.poll(async () => (await disk.reader.readJournal("job-1"))[0]?.status).toBe("started");
    frozen.freeze();

    // Its lease runs out: another runner takes the fiber over and finishes it. Two days later the
    // fiber is collected, and the same id is started again.
    let skew = 1_000;
    const clock = () => Date.now() + skew;
    const other = track(createRuntime({ store: disk.open(), fibers: [job], leaseMs: 20, clock }));
    await other.recover();
    expect(await other.result("job-1")).toBe("first work");
    skew += 2 * 86_400_000;
    expect(await other.collect()).toEqual(["job-1"]);
    expect(await other.start(job, { life: "new" }, { id: "job-1" })).toMatchObject({ created: true });
    expect(await other.result("job-1")).toBe("new work");

    // The stalled runner wakes, finishes its step and writes what it has; then it stops.
    releaseStalled();
    frozen.thaw();
    await expect.poll(() => frozen.commits.length).toBeGreaterThan(0);
    await expect.poll(() => stalled.activeCount).toBe(0);

    // The new fiber holds only its own run: record, journal and stream.
    const info = await other.inspect("job-1");
    expect(info.record).toMatchObject({ status: "completed", result: "new work" });
    expect(info.journal.map((entry) => entry.result)).toEqual(["new work"]);
    const events = await readAll(other, "job-1");
    expect(events.map((event) => [event.type, event.data])).toEqual([
      ["fiber.start", { name: "job", version: "1" }],
      ["note", "new work"],
      ["fiber.end", { status: "completed", result: "new work" }],
    ]);
    // Each of the stalled runner's writes was refused as fenced.
    expect(frozen.commits.every((result) => result.fenced.includes("job-1"))).toBe(true);
  });
});

describe("listings that decide on state alone", () => {
  it("recover(), the lease sweep and the collector list fibers without their inputs; the resumed run still gets its input", async () => {
    const queries: Array<Record<string, unknown>> = [];
    class ListingStore extends MemoryStore {
      override listFibers(query?: Parameters<MemoryStore["listFibers"]>[0]) {
        queries.push({ ...query });
        return super.listFibers(query);
      }
    }
    const store = new ListingStore();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const echo = defineFiber("echo", {
      async run(ctx, input: { text: string }) {
        await ctx.step("wait", () => gate);
        return input.text;
      },
    });
    const first = track(createRuntime({ store, fibers: [echo], leaseMs: 50 }));
    const { id } = await first.start(echo, { text: "the whole conversation" });
    await first.close();
    const second = track(createRuntime({ store, fibers: [echo], leaseMs: 50 }));
    await second.recover();
    release();
    expect(await second.result(id)).toBe("the whole conversation");
    // The sweep runs every lease period.
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(queries.length).toBeGreaterThanOrEqual(3);
    expect(queries.every((query) => query.withInput === false)).toBe(true);
  });
});

describe("a recover() or a start that does not go through", () => {
  it("still picks up, within a lease period, the fibers a failed recover() left behind", async () => {
    const disk = new MemoryStore();
    let life = 1;
    const job = defineFiber("job", {
      async run(ctx) {
        await ctx.step("work", () => (life === 1 ? new Promise(() => {}) : "done")); // life 1 dies here
        return "finished";
      },
    });
    const store = crashableStore(disk);
    const first = track(createRuntime({ store, fibers: [job], leaseMs: 50 }));
    const { id } = await first.start(job, {});
    await expect.poll(async () => (await disk.readJournal(id)).length).toBe(1);
    store.crash();
    life = 2;
    // The next host's recover() fails once (a storage hiccup), and nothing calls it again: a
    // leader tab has no next start.
    const flaky = disk as MemoryStore & { listFibers: MemoryStore["listFibers"] };
    const list = disk.listFibers.bind(disk);
    let failures = 1;
    flaky.listFibers = (query) =>
      failures-- > 0 ? Promise.reject(new StoreError("store_error", "Storage is busy; retry.")) : list(query);
    const second = track(createRuntime({ store: disk, fibers: [job], leaseMs: 50 }));
    await expect(second.recover()).rejects.toMatchObject({ code: "store_error" });
    expect(await second.result(id)).toBe("finished");
  });

  it("does not run a fiber whose start was still being written when the runtime closed", async () => {
    let steps = 0;
    const counted = defineFiber("counted", {
      async run(ctx) {
        await ctx.step("one", () => ++steps);
        return "ran";
      },
    });
    class SlowCreate extends MemoryStore {
      override async createFiber(...args: Parameters<MemoryStore["createFiber"]>) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        return super.createFiber(...args);
      }
    }
    const disk = new SlowCreate();
    const runtime = createRuntime({ store: disk, fibers: [counted], leaseMs: 50 });
    const starting = runtime.start(counted, {}, { idempotencyKey: "k" });
    await new Promise((resolve) => setTimeout(resolve, 10));
    await runtime.close();
    const { id } = await starting;
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(steps).toBe(0);
    // Left as a crash leaves it: the next runtime runs it.
    const next = track(createRuntime({ store: disk, fibers: [counted], leaseMs: 50 }));
    await next.recover();
    expect(await next.result(id)).toBe("ran");
    expect(steps).toBe(1);
  });
});
