/**
 * The simulator's command line (`npm run simulate -- --seeds N [--from S] [--verbose] [--lines L]`): runs
 * seeds S..S+N-1, prints one summary line `schedules: N, violations: V (seeds S..S+N-1)`, the
 * rate in schedules per minute, the violations by invariant and the first failing seeds with
 * their minimal traces, and exits with code 1 when any invariant was violated. Replay one seed
 * with `--from SEED --seeds 1 --verbose`.
 */

import type { Violation } from "./findings";
import { runSchedule } from "./simulate";

/** Parsed command-line options. */
export interface CliOptions {
  seeds: number;
  from: number;
  verbose: boolean;
  /** How many failing seeds to print with their traces. */
  show: number;
  /** Trace lines printed per failing seed. */
  lines: number;
}

/** Parses `argv` (without the node and script paths). */
export function parseArgs(argv: readonly string[]): CliOptions {
  const options: CliOptions = { seeds: 100, from: 1, verbose: false, show: 3, lines: 40 };
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
    else if (arg === "--verbose" || arg === "-v") options.verbose = true;
    else
      throw new Error(`unknown option ${arg}; use --seeds N [--from S] [--verbose] [--show K] [--lines L]`);
  }
  return options;
}

/** Runs the seeds `options` names and prints the report; resolves with the exit code. */
export async function main(options: CliOptions, log: (line: string) => void = console.log): Promise<number> {
  const started = performance.now();
  const failing: Array<{ seed: number; violations: Violation[]; trace: string[] }> = [];
  const byInvariant = new Map<string, number[]>();
  let violations = 0;
  const last = options.from + options.seeds - 1;
  for (let seed = options.from; seed <= last; seed++) {
    const result = await runSchedule(seed, { traceLines: options.lines });
    violations += result.violations.length;
    if (result.violations.length > 0) failing.push(result);
    for (const v of result.violations)
      byInvariant.set(v.invariant, [...(byInvariant.get(v.invariant) ?? []), seed]);
    if (options.verbose) {
      const names = result.violations.map((v) => v.invariant).join(", ");
      log(
        `seed ${seed}: ${result.steps} steps, ${result.virtualMs} virtual ms, trace ${result.digest}${names ? `, VIOLATED ${names}` : ""}`,
      );
    }
  }
  const minutes = (performance.now() - started) / 60_000;
  log(`schedules: ${options.seeds}, violations: ${violations} (seeds ${options.from}..${last})`);
  log(
    `rate: ${Math.round(options.seeds / minutes)} schedules/min (${(minutes * 60).toFixed(1)} s), failing schedules: ${failing.length}`,
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
        `minimal trace of seed ${seed} up to the first violation (replay: npm run simulate -- --from ${seed} --seeds 1 --verbose):`,
      );
      for (const line of first.trace) log(line);
    }
  }
  return violations > 0 ? 1 : 0;
}

/** Entry point when bundled by `scripts/simulate.mjs`. */
export async function run(argv: readonly string[]): Promise<number> {
  try {
    return await main(parseArgs(argv));
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    return 2;
  }
}
