/**
 * The simulator's command line (`npm run simulate -- --seeds N [--from S] [--jobs K]
 * [--store memory|idb] [--no-agents] [--continuity [--plant BUG]] [--verbose] [--show K] [--lines L]`): runs seeds S..S+N-1, prints one
 * summary line `schedules: N, violations: V (seeds S..S+N-1)`, the rate in schedules per minute,
 * the violations by invariant and the first failing seeds with their minimal traces, and exits
 * with code 1 when any invariant was violated. Replay one seed with `--from SEED --seeds 1
 * --verbose` (and the same `--store`).
 *
 * With `--jobs K` (default: the number of CPUs, at most 4) the seeds run on K worker threads,
 * which take blocks of consecutive seeds as they free up and post each seed's result back; the
 * main thread reports the results in seed order, so the output is the same as with `--jobs 1`
 * (only the rate differs). Each schedule is a function of its seed alone, whichever worker runs it.
 * `--store idb` runs the same schedules on `IdbStore` over fake-indexeddb instead of `MemoryStore`.
 * `--no-agents` makes no program an agent fiber: a seed then gives the schedule it gave before
 * agent programs existed (how the seeds that found engine bugs are replayed).
 * `--continuity` runs continuity schedules instead (`continuity.ts`: a browser home replicating
 * to an edge home over a faulty link, issue #18); `--plant no-rule-a|no-rule-b|volatile-outbox|grant-while-running|lossy-delta|eager-past-lease` plants a bug
 * there that the checks must report. With `--store idb` the browser home keeps its store and its
 * outbox in fake-indexeddb and reloads the outbox at every launch.
 */

import { availableParallelism } from "node:os";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { runContinuitySchedule } from "./continuity";
import type { ContinuityBug } from "./continuity-world";
import type { Violation } from "./findings";
import { runSchedule } from "./simulate";
import type { StoreKind } from "./world";

/** Parsed command-line options. */
export interface CliOptions {
  seeds: number;
  from: number;
  verbose: boolean;
  /** How many failing seeds to print with their traces. */
  show: number;
  /** Trace lines printed per failing seed. */
  lines: number;
  /** Worker threads to run the seeds on (1: run them on this thread). */
  jobs: number;
  /** The store the runtimes of each schedule share. */
  store: StoreKind;
  /** Whether a share of the programs are agent fibers (`--no-agents`: none). */
  agents: boolean;
  /** Continuity schedules (two homes) instead of the one-home ones. */
  continuity: boolean;
  /** A bug planted in continuity schedules (`--plant`). */
  plant?: ContinuityBug;
}

/** What the report needs of one schedule (what a worker posts back). */
interface SeedResult {
  seed: number;
  violations: Violation[];
  steps: number;
  virtualMs: number;
  digest: string;
  /** Continuity: fibers that changed home (out to the edge; and back, `cameHome`). */
  handoffs?: number;
  cameHome?: number;
  /** Continuity: answers the browser's mirrors got whole and as deltas, copies checked at a cursor. */
  mirrorReads?: { whole: number; delta: number; checked: number };
  /** Continuity: cancels answered, and how (`cancelled` / forwarded to the browser). */
  cancels?: { answered: number; cancelled: number; forwarded: number };
  /** Continuity: events a fence dropped in the browser, sent on to the edge under their id. */
  sentOn?: number;
  /** Continuity: `awaitStart: false` steps begun unshipped in the browser, and run again at the edge. */
  eager?: { unshipped: number; repeated: number };
  /** Continuity on `"idb"`: new worker versions installed beside a running one, and activated. */
  updates?: { installed: number; activated: number };
}

/** The default of `--jobs`: one worker per CPU, at most 4. */
export function defaultJobs(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** Parses `argv` (without the node and script paths). */
export function parseArgs(argv: readonly string[]): CliOptions {
  const options: CliOptions = {
    seeds: 100,
    from: 1,
    verbose: false,
    show: 3,
    lines: 40,
    jobs: defaultJobs(),
    store: "memory",
    agents: true,
    continuity: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): number => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${arg} needs a whole number`);
      return n;
    };
    if (arg === "--seeds") options.seeds = value();
    else if (arg === "--from") options.from = value();
    else if (arg === "--show") options.show = value();
    else if (arg === "--lines") options.lines = value();
    else if (arg === "--jobs" || arg === "-j") options.jobs = Math.max(1, value());
    else if (arg === "--store") {
      const store = argv[++i];
      if (store !== "memory" && store !== "idb") throw new Error("--store takes memory or idb");
      options.store = store;
    } else if (arg === "--no-agents") options.agents = false;
    else if (arg === "--continuity") options.continuity = true;
    else if (arg === "--plant") {
      const plant = argv[++i];
      if (
        plant !== "no-rule-a" &&
        plant !== "no-rule-b" &&
        plant !== "volatile-outbox" &&
        plant !== "grant-while-running" &&
        plant !== "lossy-delta" &&
        plant !== "eager-past-lease"
      )
        throw new Error(
          "--plant takes no-rule-a, no-rule-b, volatile-outbox, grant-while-running, lossy-delta or eager-past-lease",
        );
      options.plant = plant;
    } else if (arg === "--verbose" || arg === "-v") options.verbose = true;
    else
      throw new Error(
        `unknown option ${arg}; use --seeds N [--from S] [--jobs K] [--store memory|idb] [--no-agents] [--continuity [--plant BUG]] [--verbose] [--show K] [--lines L]`,
      );
  }
  return options;
}

/** Runs the seeds `options` names and prints the report; resolves with the exit code. */
export async function main(options: CliOptions, log: (line: string) => void = console.log): Promise<number> {
  const started = performance.now();
  const failing: SeedResult[] = [];
  const byInvariant = new Map<string, number[]>();
  let violations = 0;
  const moved = { out: 0, back: 0 };
  const updated = { installed: 0, activated: 0, schedules: 0 };
  const mirrored = { whole: 0, delta: 0, checked: 0 };
  const cancelled = { answered: 0, cancelled: 0, forwarded: 0 };
  let sentOn = 0;
  const eager = { unshipped: 0, repeated: 0 };
  const last = options.from + options.seeds - 1;
  await runSeeds(options, (result) => {
    const { seed } = result;
    violations += result.violations.length;
    if ((result.handoffs ?? 0) > 0) moved.out++;
    if ((result.cameHome ?? 0) > 0) moved.back++;
    if (result.updates && result.updates.installed > 0) {
      updated.schedules++;
      updated.installed += result.updates.installed;
      updated.activated += result.updates.activated;
    }
    if (result.mirrorReads) {
      mirrored.whole += result.mirrorReads.whole;
      mirrored.delta += result.mirrorReads.delta;
      mirrored.checked += result.mirrorReads.checked;
    }
    if (result.cancels) {
      cancelled.answered += result.cancels.answered;
      cancelled.cancelled += result.cancels.cancelled;
      cancelled.forwarded += result.cancels.forwarded;
    }
    sentOn += result.sentOn ?? 0;
    eager.unshipped += result.eager?.unshipped ?? 0;
    eager.repeated += result.eager?.repeated ?? 0;
    if (result.violations.length > 0) failing.push(result);
    for (const v of result.violations)
      byInvariant.set(v.invariant, [...(byInvariant.get(v.invariant) ?? []), seed]);
    if (options.verbose) {
      const names = result.violations.map((v) => v.invariant).join(", ");
      log(
        `seed ${seed}: ${result.steps} steps, ${result.virtualMs} virtual ms, trace ${result.digest}${names ? `, VIOLATED ${names}` : ""}`,
      );
    }
  });
  const minutes = (performance.now() - started) / 60_000;
  log(`schedules: ${options.seeds}, violations: ${violations} (seeds ${options.from}..${last})`);
  log(
    `rate: ${Math.round(options.seeds / minutes)} schedules/min (${(minutes * 60).toFixed(1)} s), failing schedules: ${failing.length}`,
  );
  if (options.continuity)
    log(
      `handoffs: a fiber went to the edge in ${moved.out} schedules, and came home from it in ${moved.back}`,
    );
  if (options.continuity)
    log(
      `mirror reads: ${mirrored.whole} whole, ${mirrored.delta} deltas; copies checked against the state their cursor names: ${mirrored.checked}`,
    );
  if (options.continuity && options.store === "idb")
    log(
      `updates: ${updated.installed} new worker versions installed beside a running one in ${updated.schedules} schedules, ${updated.activated} activated`,
    );
  if (options.continuity)
    log(
      `cancels: ${cancelled.answered} answered, ${cancelled.cancelled} of them "cancelled", ${cancelled.forwarded} forwarded to the browser that ran the fiber`,
    );
  if (options.continuity)
    log(`events a fence dropped in the browser, sent on to the edge under their id: ${sentOn}`);
  if (options.continuity)
    log(
      `awaitStart: false: ${eager.unshipped} browser steps began before the replica held their start, ${eager.repeated} ran again at the edge (same key)`,
    );
  for (const [invariant, seeds] of [...byInvariant].sort((a, b) => b[1].length - a[1].length)) {
    log(
      `  ${invariant}: ${seeds.length} (seeds ${seeds.slice(0, 8).join(", ")}${seeds.length > 8 ? ", ..." : ""})`,
    );
  }
  const shown = options.verbose && options.seeds === 1 ? failing : failing.slice(0, options.show);
  for (const { seed, violations: found } of shown) {
    log("");
    for (const v of found) {
      log(
        `seed ${seed} violates ${v.invariant}${v.fiberId ? ` (${v.fiberId})` : ""} at t=${v.at}ms: ${v.detail}`,
      );
    }
    const first = found[0];
    if (first) {
      log(
        `minimal trace of seed ${seed} up to the first violation (replay: npm run simulate -- --from ${seed} --seeds 1 --verbose${options.store === "idb" ? " --store idb" : ""}${options.agents ? "" : " --no-agents"}${options.continuity ? " --continuity" : ""}${options.plant ? ` --plant ${options.plant}` : ""}):`,
      );
      for (const line of first.trace) log(line);
    }
  }
  return violations > 0 ? 1 : 0;
}

/** What a worker is given at start: everything but the seeds, which it asks for in blocks. */
interface WorkerSetup {
  fiberlineSim: true;
  lines: number;
  store: StoreKind;
  agents: boolean;
  continuity: boolean;
  plant?: ContinuityBug;
}

/** main → worker: run these seeds, or stop. worker → main: a seed's result, or "give me more". */
type ToWorker = { from: number; count: number } | { stop: true };
type FromWorker = { result: SeedResult } | { idle: true } | { error: string };

/** Runs one schedule and keeps what the report needs. */
async function runOne(seed: number, setup: Omit<WorkerSetup, "fiberlineSim">): Promise<SeedResult> {
  if (setup.continuity) {
    const r = await runContinuitySchedule(seed, {
      traceLines: setup.lines,
      store: setup.store,
      ...(setup.plant ? { plant: setup.plant } : {}),
    });
    const {
      violations,
      steps,
      virtualMs,
      digest,
      handoffs,
      cameHome,
      mirrorReads,
      cancels,
      updates,
      sentOn,
      eager,
    } = r;
    return {
      seed,
      violations,
      steps,
      virtualMs,
      digest,
      handoffs,
      cameHome,
      mirrorReads,
      cancels,
      updates,
      sentOn,
      eager,
    };
  }
  const { violations, steps, virtualMs, digest } = await runSchedule(seed, {
    traceLines: setup.lines,
    store: setup.store,
    agents: setup.agents,
  });
  return { seed, violations, steps, virtualMs, digest };
}

/** Runs every seed of `options` and hands each result to `each`, in seed order. */
async function runSeeds(options: CliOptions, each: (result: SeedResult) => void): Promise<void> {
  const jobs = Math.min(options.jobs, Math.ceil(options.seeds / 2));
  if (jobs <= 1) {
    for (let seed = options.from; seed < options.from + options.seeds; seed++)
      each(await runOne(seed, options));
    return;
  }
  // Blocks small enough that the workers finish together, large enough to keep messages rare.
  const block = Math.max(1, Math.min(50, Math.floor(options.seeds / (jobs * 8))));
  const end = options.from + options.seeds;
  let nextSeed = options.from;
  let nextReported = options.from;
  const pending = new Map<number, SeedResult>();
  const workers: Worker[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let running = jobs;
      const feed = (worker: Worker) => {
        if (nextSeed >= end) {
          worker.postMessage({ stop: true } satisfies ToWorker);
          if (--running === 0) resolve();
          return;
        }
        const count = Math.min(block, end - nextSeed);
        worker.postMessage({ from: nextSeed, count } satisfies ToWorker);
        nextSeed += count;
      };
      for (let i = 0; i < jobs; i++) {
        const setup: WorkerSetup = {
          fiberlineSim: true,
          lines: options.lines,
          store: options.store,
          agents: options.agents,
          continuity: options.continuity,
          ...(options.plant ? { plant: options.plant } : {}),
        };
        const worker = new Worker(new URL(import.meta.url), { workerData: setup });
        workers.push(worker);
        worker.on("message", (message: FromWorker) => {
          if ("error" in message) reject(new Error(message.error));
          else if ("idle" in message) feed(worker);
          else {
            pending.set(message.result.seed, message.result);
            for (let r = pending.get(nextReported); r !== undefined; r = pending.get(nextReported)) {
              pending.delete(nextReported++);
              each(r);
            }
          }
        });
        worker.on("error", reject);
        worker.on("exit", (code) => {
          if (code !== 0) reject(new Error(`a simulator worker exited with code ${code}`));
        });
        feed(worker);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  if (nextReported !== end)
    throw new Error(`simulator workers reported seeds up to ${nextReported - 1} only`);
}

/** A worker thread's loop: runs the blocks of seeds it is sent, posting each result. */
function serveWorker(setup: WorkerSetup): void {
  const port = parentPort;
  if (!port) return;
  port.on("message", (message: ToWorker) => {
    if ("stop" in message) {
      port.close();
      return;
    }
    void (async () => {
      try {
        for (let seed = message.from; seed < message.from + message.count; seed++)
          port.postMessage({ result: await runOne(seed, setup) } satisfies FromWorker);
        port.postMessage({ idle: true } satisfies FromWorker);
      } catch (error) {
        port.postMessage({
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        } satisfies FromWorker);
      }
    })();
  });
}

if (!isMainThread && (workerData as Partial<WorkerSetup> | null)?.fiberlineSim === true)
  serveWorker(workerData as WorkerSetup);

/** Entry point when bundled by `scripts/simulate.mjs`. */
export async function run(argv: readonly string[]): Promise<number> {
  try {
    return await main(parseArgs(argv));
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    return 2;
  }
}
