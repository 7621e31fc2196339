#!/usr/bin/env node
/**
 * `npm run torture -- --faults 200 [--seed N] [--live 3] [--pace 12] [--port 5199]`: the long
 * torture run (`--live`: fibers running at once; `--pace`: most chunks of progress between faults).
 * Builds and serves the demo, runs `torture.spec.ts` with that schedule, and ends with the
 * summary line `faults: 200, fibers: 60, lost: 0, duplicated: 0, re-executed: 0, wipes: 0`
 * (`wipes`: Chromium's wipes of the origin's IndexedDB after a SIGKILL, each listed above it; the
 * run drops the fibers it took and goes on); on failure it prints the seed and the fault log (the
 * same seed replays the same schedule) and exits 1.
 *
 * `npm run torture -- --continuity --faults 40 [--seed N] [--live 3] [--pace 8] [--port 5640]`:
 * the continuity run (`continuity.spec.ts`): the continuity e2e's page replicating to `wrangler
 * dev` through a cuttable link, with browser, edge and link faults; ports `--port` to +4
 * (page, edge, its inspector, ledger, link); `--only kind,kind` narrows the faults (to reduce a
 * failing seed). Same summary line (without `wipes`), same replay on failure.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = fileURLToPath(new URL("../..", import.meta.url));
const { values } = parseArgs({
  options: {
    faults: { type: "string" },
    seed: { type: "string" },
    live: { type: "string", default: "3" },
    pace: { type: "string" },
    port: { type: "string" },
    continuity: { type: "boolean", default: false },
    only: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log("usage: npm run torture -- [--faults 200] [--seed N] [--live 3] [--pace 12] [--port 5199]");
  console.log(
    "       npm run torture -- --continuity [--faults 40] [--seed N] [--live 3] [--pace 8] [--port 5640] [--only edge-kill,cut]",
  );
  process.exit(0);
}
const continuity = values.continuity;
values.faults ??= continuity ? "40" : "200";
values.pace ??= continuity ? "8" : "12";
values.port ??= continuity ? "5640" : "5199";
for (const name of ["faults", "live", "pace", "port", ...(values.seed === undefined ? [] : ["seed"])]) {
  if (!/^\d+$/.test(values[name])) {
    console.error(`--${name} must be a non-negative integer, got ${values[name]}`);
    process.exit(2);
  }
}
const seed = values.seed ?? String(Math.floor(Math.random() * 2 ** 31));
const work = mkdtempSync(join(tmpdir(), "fiberline-torture-"));
const reportFile = join(work, "report.json");
const replay = `npm run torture -- ${continuity ? "--continuity " : ""}--faults ${values.faults} --seed ${seed} --live ${values.live} --pace ${values.pace}${continuity ? ` --port ${values.port}` : ""}${values.only ? ` --only ${values.only}` : ""}`;

const child = spawn(
  join(root, "node_modules", ".bin", "playwright"),
  ["test", "-c", `e2e/torture/${continuity ? "continuity." : ""}playwright.config.ts`],
  {
    cwd: root,
    stdio: "inherit",
    env: {
      ...process.env,
      TORTURE_FAULTS: values.faults,
      TORTURE_SEED: seed,
      TORTURE_LIVE: values.live,
      TORTURE_PACE: values.pace,
      TORTURE_REPORT: reportFile,
      FIBERLINE_TORTURE_PORT: values.port,
      ...(values.only ? { TORTURE_KINDS: values.only } : {}),
    },
  },
);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
const code = await new Promise((resolve) => child.on("close", (c, signal) => resolve(c ?? (signal ? 1 : 0))));

let report;
if (existsSync(reportFile)) report = JSON.parse(readFileSync(reportFile, "utf8"));
rmSync(work, { recursive: true, force: true });
if (!report) {
  console.error(`\ntorture: no report (seed ${seed}); replay with  ${replay}`);
  process.exit(code || 1);
}
const failed = code !== 0 || report.failure || report.problems.length > 0;
if (failed) {
  console.log(
    `\ntorture FAILED with seed ${seed}${report.failure ? `: ${report.failure.split("\n")[0]}` : ""}`,
  );
  for (const problem of report.problems) console.log(`  ${problem}`);
  console.log(`fault log (replay with  ${replay}):`);
  for (const f of report.log)
    console.log(
      continuity
        ? `  #${f.n} ${f.kind.padEnd(18)} +${f.at}s gap ${f.gapMs}ms took ${f.tookMs}ms  ${f.fibers.map((x) => `${x.id}@${x.seq}(${x.home})`).join(" ")}`
        : `  #${f.n} ${f.kind.padEnd(11)} +${f.at}s gap ${f.gapMs}ms  ${f.fibers.map((x) => `${x.kind}:${x.id.slice(0, 8)}@${x.lastSeq}`).join(" ")}`,
    );
}
const kinds = Object.entries(report.byKind)
  .filter(([, n]) => !continuity || n > 0)
  .map(([kind, n]) => `${kind} ${n}`)
  .join(", ");
const homes = continuity
  ? `; ${report.endedAtEdge} of ${report.fibers} fibers ended at the edge, ${report.cameHome} came home`
  : "";
console.log(`\nseed ${seed}; ${kinds}${homes}`);
// Chromium's wipes the run survived (the torture report only): what each dropped, and the log line.
for (const w of report.wipes ?? [])
  console.log(
    `wipe after fault #${w.fault} (${w.kind}): ${w.dropped.length} fiber(s) dropped unjudged, their streams whole up to the wipe; ${w.evidence}`,
  );
const wipes = report.wipes ? `, wipes: ${report.wipes.length}` : "";
console.log(
  `faults: ${report.faults}, fibers: ${report.fibers}, lost: ${report.lost}, duplicated: ${report.duplicated}, re-executed: ${report.reExecuted}${wipes}`,
);
process.exit(failed ? 1 : 0);
