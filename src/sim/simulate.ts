/**
 * One schedule from one seed, start to verdict: install virtual time, build the world (shared
 * store, fault plan, programs, nodes), lay out the actions, run the clock timer by timer while
 * faults are active, stop the faults, run on to quiescence (well past every lease and timer),
 * check the final invariants and uninstall. `runSchedule` is deterministic: the same seed gives
 * the same trace digest and the same violations.
 */

import { isTerminal } from "../core/records";
import { Actions } from "./actions";
import type { AgentStats } from "./agent-log";
import { Findings, type Violation } from "./findings";
import { checkFinal } from "./invariants";
import { Prng } from "./prng";
import { describeProgram, generateProgram } from "./program";
import { Readers } from "./readers";
import { Trace } from "./trace";
import { VirtualTime } from "./virtual-time";
import { type PlantedBug, type StoreKind, World } from "./world";

/** Options of `runSchedule`. */
export interface ScheduleOptions {
  /** Plant a bug, to prove the checker reports it. */
  plant?: PlantedBug;
  /** Trace lines kept with each violation and returned in `trace` (default 40). */
  traceLines?: number;
  /** Timer steps after which the schedule is declared livelocked (default 20,000). */
  maxSteps?: number;
  /**
   * The store the runtimes share: one `MemoryStore` (default), or `"idb"`: an `IdbStore` per
   * runtime on one fake-indexeddb database, with `setImmediate` on the virtual clock.
   */
  store?: StoreKind;
  /**
   * Whether a share of the programs (`AGENT_SHARE`) are agent fibers (default true). With false
   * no program is, and a seed gives the schedule it gave before agent programs existed.
   */
  agents?: boolean;
  /**
   * Whether reads may fail (default true). With false none does, and a seed gives the schedule it
   * gave before read faults existed (a read fault that fires changes the rest of the schedule).
   */
  readFaults?: boolean;
  /**
   * Whether a share of the readers stall between chunks (default true). With false none does,
   * and a seed gives the schedule it gave before slow readers existed.
   */
  stalls?: boolean;
  /**
   * Whether a share of the schedules let a fiber recover only once in a row without progress
   * (default true), which their crashes exhaust. With false none does, and a seed gives the
   * schedule it gave before.
   */
  crashLoops?: boolean;
}

/** The verdict of one schedule. */
export interface ScheduleResult {
  seed: number;
  violations: Violation[];
  /** Digest of the whole trace: equal for two runs of one seed. */
  digest: string;
  /** The last trace lines at the end of the schedule (`traceLines` of them). */
  trace: string[];
  /** Timer steps run, virtual ms simulated. */
  steps: number;
  virtualMs: number;
  /** Whether the planted bug (if any) was actually triggered. */
  planted: boolean;
  /** What the schedule's agent fibers did. */
  agents: AgentStats;
}

/**
 * Runs the schedule of `seed` and checks it.
 *
 * @example
 * const { violations } = await runSchedule(42);
 */
export async function runSchedule(seed: number, options: ScheduleOptions = {}): Promise<ScheduleResult> {
  const storeKind = options.store ?? "memory";
  const time = new VirtualTime(storeKind === "idb");
  const consoleError = console.error;
  const stackTraceLimit = Error.stackTraceLimit;
  // Stacks are never compared and capturing one per engine error dominated the profile.
  Error.stackTraceLimit = 0;
  const rng = new Prng(seed);
  const trace = new Trace(() => time.elapsed, Math.max(200, options.traceLines ?? 0));
  const findings = new Findings(seed, trace, () => time.elapsed);
  findings.lines = options.traceLines ?? 40;
  // The engine reports background failures on console.error: keep them in the trace instead.
  console.error = (...args: unknown[]) => trace.add("report", args.map(short).join(" ").slice(0, 160));
  try {
    const programs = Array.from({ length: rng.int(1, 4) }, (_, i) =>
      generateProgram(rng.fork(), i, options.agents ?? true),
    );
    // Read faults draw from a stream of their own: a seed whose reads never fail schedules what
    // it did before they existed.
    const readFaults = options.readFaults === false ? undefined : new Prng(seed ^ 0x0ead_fa17);
    const crashLoops = options.crashLoops === false ? undefined : new Prng(seed ^ 0x100b_ed1e);
    const world = new World(
      rng.fork(),
      trace,
      findings,
      programs,
      options.plant,
      storeKind,
      readFaults,
      crashLoops,
    );
    const stalls = options.stalls === false ? undefined : new Prng(seed ^ 0x57a1_1ed);
    const readers = new Readers(world, stalls);
    const actions = new Actions(world, readers, time);
    const window = world.rng.int(2000, 8000);
    trace.add(
      "plan",
      `${programs.length} fibers, locks ${world.settings.locks}, lease ${world.settings.leaseMs}, faults ${JSON.stringify(world.plan)}, window ${window}${storeKind === "idb" ? ", store idb" : ""}`,
    );
    programs.forEach((program, i) => {
      findings.context.set(`f${i}`, describeProgram(program));
      trace.add("program", `f${i} = ${describeProgram(program)}`);
    });
    world.onCrash((dead) => {
      setTimeout(
        () => {
          if (world.live.length < 3) world.spawn(`restart after ${dead.name} crashed`);
        },
        world.rng.int(0, 1500),
      );
    });
    world.spawn("first worker");
    if (world.rng.chance(0.3)) world.spawn("second worker (old/new handover)");
    actions.plan(window);
    const maxSteps = options.maxSteps ?? 20_000;
    let stop = await time.runUntil(window, maxSteps);
    world.plan.active = false;
    trace.add("phase", "faults stop");
    const faultsStoppedAt = time.elapsed;
    if (world.live.length === 0) world.spawn("a worker after the faults");
    // Quiescence: long past every lease, timer and retry; a schedule whose fibers all settled
    // (ended, or waiting open-ended with nothing to wake them) and whose readers ended stops early.
    const quiet = faultsStoppedAt + 3000 + 10 * world.settings.leaseMs + 10_000;
    const settleFrom = faultsStoppedAt + 3000 + world.settings.leaseMs;
    for (let t = faultsStoppedAt; stop !== "step-limit" && t < quiet; ) {
      t = Math.min(quiet, t + 1000);
      stop = await time.runUntil(t, maxSteps);
      if (t >= settleFrom && !actions.approvalsPending && settled(world, readers, actions.fiberIds)) break;
    }
    if (stop === "step-limit") {
      findings.add(
        "livelock",
        `more than ${maxSteps} timer steps by t=${time.elapsed}ms (busy loop on timers?)`,
      );
    }
    trace.add("phase", "quiescent: final checks");
    readers.checkEnded();
    checkFinal({
      world,
      now: time.elapsed,
      faultsStoppedAt,
      cancels: actions.cancels,
      cancelled: actions.cancelled,
      fiberIds: actions.fiberIds,
    });
    readers.closeAll();
    await time.runUntil(time.elapsed, time.steps + 1000);
    return {
      seed,
      violations: findings.violations,
      digest: trace.digest,
      trace: trace.format(options.traceLines ?? 40),
      steps: time.steps,
      virtualMs: time.elapsed,
      planted: world.plantTriggered,
      agents: world.agentStats(),
    };
  } finally {
    console.error = consoleError;
    Error.stackTraceLimit = stackTraceLimit;
    time.uninstall();
  }
}

/** Whether nothing more can happen: every fiber ended or waits open-ended with nothing buffered. */
function settled(world: World, readers: Readers, fiberIds: readonly string[]): boolean {
  for (const id of fiberIds) {
    const image = world.ledger.get(id);
    const record = image?.record;
    if (!image || !record) continue;
    if (image.collected || isTerminal(record.status)) {
      if (readers.all.some((r) => r.fiberId === id && r.status === "open" && !r.node.crashed)) return false;
      continue;
    }
    if (record.status !== "waiting" || record.wakeAt !== undefined) return false;
    const wanted = new Set(record.waitingFor ?? []);
    if (image.inbox.some((e) => e.consumedBy === undefined && wanted.has(e.name))) return false;
  }
  return true;
}

function short(value: unknown): string {
  if (value instanceof Error)
    return `${value.name}(${(value as { code?: string }).code ?? ""}): ${value.message}`;
  return typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
}
