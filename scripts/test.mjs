#!/usr/bin/env node
/**
 * `npm test`: every check and test suite that exists, in order, stopping at the first failure.
 *
 * Stages: typecheck, lint, unit (Vitest project "node"), browser (Vitest project "browser", when
 * defined), build, check:exports, example (examples/quickstart.mjs), e2e (Playwright, when
 * playwright.config.ts exists: its functional projects two files at a time, then the fault
 * projects one at a time). Output is
 * streamed; a summary with durations follows, closed on success by exactly `N passed, 0 failed`
 * where N counts every Vitest and Playwright test that passed. Used locally and by `.ci/run`.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureChromium } from "./find-chromium.mjs";

/**
 * The Playwright suites in two runs. The functional projects (`app`: the demo's screens,
 * `fiberline`: the fixture's routes and hosts) run two test files at a time; the fault projects
 * (`extension`, `continuity`, `crash`: SIGKILLs, worker stops, leases timed against a clock) run
 * one at a time, as the config says, so no other browser competes with their timings. Every
 * project runs; the counts are added up.
 */
const FUNCTIONAL_PROJECTS = ["app", "fiberline"];

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name) => join(root, "node_modules", ".bin", name);
const reports = mkdtempSync(join(tmpdir(), "fiberline-test-"));
const env = { ...process.env };

/**
 * A browser is looked up once, up front (on a machine with none, Playwright's is downloaded
 * first); only the stages that need one fail without it.
 */
let chromium;
try {
  chromium = { path: await ensureChromium() };
  env.CHROMIUM_PATH = chromium.path;
} catch (error) {
  chromium = { error: error instanceof Error ? error.message : String(error) };
}

/**
 * @typedef {{ passed: number, failed: number, skipped: number }} Counts
 * @typedef {{ name: string, status: "passed" | "failed" | "skipped" | "not run", ms: number,
 *   note?: string, counts?: Counts }} Result
 */

/** @type {Result[]} */
const results = [];
/** @type {import("node:child_process").ChildProcess | undefined} */
let current;
/** @type {string[] | undefined} Vitest project names, loaded on first use. */
let projectNames;

for (const [signal, number] of [
  ["SIGINT", 2],
  ["SIGTERM", 15],
]) {
  process.on(signal, () => {
    current?.kill(signal);
    cleanUp();
    process.exit(128 + number);
  });
}

const stages = [
  { name: "typecheck", run: () => exec(bin("tsc"), ["-p", "tsconfig.json", "--noEmit"]) },
  { name: "lint", run: () => exec(bin("biome"), ["check", "."]) },
  { name: "unit", run: () => vitestProject("node", { required: true }) },
  { name: "browser", run: () => vitestProject("browser", { required: false, needsBrowser: true }) },
  { name: "build", run: build },
  { name: "check:exports", run: () => exec("npm", ["run", "check:exports"]) },
  // The README's runnable example, against the built package, as a user would run it.
  { name: "example", run: () => exec(process.execPath, ["examples/quickstart.mjs"]) },
  { name: "e2e", run: playwright },
];

let failedStage;
for (const stage of stages) {
  if (failedStage) {
    results.push({ name: stage.name, status: "not run", ms: 0 });
    continue;
  }
  console.log(`\n\u25b6 ${stage.name}`);
  const started = performance.now();
  /** @type {Omit<Result, "name" | "ms">} */
  let outcome;
  try {
    outcome = await stage.run();
  } catch (error) {
    outcome = { status: "failed", note: error instanceof Error ? error.message : String(error) };
  }
  results.push({ name: stage.name, ms: performance.now() - started, ...outcome });
  if (outcome.status === "failed") {
    failedStage = stage.name;
    if (outcome.note) console.error(`\n${stage.name} failed: ${outcome.note}`);
  }
}

printSummary();
cleanUp();
process.exitCode = failedStage ? 1 : 0;

/** Runs a command with streamed output; resolves with its exit code. */
function run(command, args, extraEnv = {}) {
  console.log(`$ ${[command.replace(`${root}node_modules/.bin/`, ""), ...args].join(" ")}`);
  return new Promise((resolve, reject) => {
    current = spawn(command, args, { cwd: root, stdio: "inherit", env: { ...env, ...extraEnv } });
    current.on("error", (error) => reject(new Error(`could not start ${command}: ${error.message}`)));
    current.on("close", (code, signal) => {
      current = undefined;
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

async function exec(command, args, extraEnv) {
  const code = await run(command, args, extraEnv);
  return code === 0 ? { status: "passed" } : { status: "failed", note: `exit code ${code}` };
}

function requireBrowser() {
  if (chromium.error) throw new Error(chromium.error);
  console.log(`chromium: ${chromium.path}`);
}

/** Names of the projects in the Vitest config (a browser project may be named "browser (chromium)"). */
async function vitestProjectNames() {
  const { createVitest } = await import("vitest/node");
  const vitest = await createVitest("test", { watch: false }, {}, { stdout: process.stderr });
  try {
    return vitest.projects.map((project) => project.name);
  } finally {
    await vitest.close();
  }
}

async function vitestProject(name, { required, needsBrowser = false }) {
  projectNames ??= await vitestProjectNames();
  const defined = projectNames.some((project) => project === name || project.startsWith(`${name} (`));
  if (!defined) {
    const known = projectNames.filter(Boolean).join(", ") || "none";
    const note = `no Vitest project named "${name}" (projects found: ${known}); define it in vitest.config.ts test.projects`;
    return required ? { status: "failed", note } : { status: "skipped", note };
  }
  if (needsBrowser) requireBrowser();
  const output = join(reports, `vitest-${name}.json`);
  const args = [
    "run",
    "--project",
    name,
    "--reporter=default",
    "--reporter=json",
    `--outputFile.json=${output}`,
  ];
  // An optional suite may be configured before its first test file lands; the summary says so.
  if (!required) args.push("--passWithNoTests");
  const code = await run(bin("vitest"), args);
  const counts = readVitestCounts(output);
  if (code !== 0) return { status: "failed", note: `exit code ${code}`, counts };
  if (!counts) return { status: "failed", note: `Vitest wrote no JSON report to ${output}` };
  const empty = counts.passed + counts.failed + counts.skipped === 0;
  return { status: "passed", counts, note: empty ? "no test files yet" : undefined };
}

/** @returns {Counts | undefined} */
function readVitestCounts(file) {
  if (!existsSync(file)) return undefined;
  const report = JSON.parse(readFileSync(file, "utf8"));
  return {
    passed: report.numPassedTests,
    failed: report.numFailedTests,
    skipped: report.numPendingTests + report.numTodoTests,
  };
}

async function build() {
  // The demo app build joins in once the app has its vite.config.ts; the library is always built.
  if (existsSync(join(root, "vite.config.ts"))) return exec("npm", ["run", "build"]);
  const outcome = await exec("npm", ["run", "build:lib"]);
  return outcome.status === "passed" ? { ...outcome, note: "library only: no vite.config.ts yet" } : outcome;
}

async function playwright() {
  if (!existsSync(join(root, "playwright.config.ts"))) {
    return { status: "skipped", note: "no playwright.config.ts" };
  }
  requireBrowser();
  const all = /** @type {Counts} */ ({ passed: 0, failed: 0, skipped: 0 });
  const notes = [];
  /** Runs Playwright with `args`; resolves with its JSON report, or undefined. */
  const runOnce = async (label, args) => {
    const output = join(reports, `playwright-${label}.json`);
    const code = await run(bin("playwright"), ["test", "--reporter=list,json", ...args], {
      PLAYWRIGHT_JSON_OUTPUT_FILE: output,
      PLAYWRIGHT_JSON_OUTPUT_NAME: output,
    });
    if (code !== 0) notes.push(`${label} projects: exit code ${code}`);
    if (!existsSync(output)) {
      notes.push(`Playwright wrote no JSON report to ${output}`);
      return undefined;
    }
    const report = JSON.parse(readFileSync(output, "utf8"));
    const { stats } = report;
    all.passed += stats.expected + stats.flaky;
    all.failed += stats.unexpected;
    all.skipped += stats.skipped;
    if (stats.flaky > 0)
      console.warn(`warning: ${stats.flaky} flaky Playwright test(s) passed only on retry`);
    return report;
  };
  const first = await runOnce("functional", [
    ...FUNCTIONAL_PROJECTS.flatMap((name) => ["--project", name]),
    "--workers",
    "2",
  ]);
  // Every other project the config defines (the report lists them all, whatever ran).
  const rest = (first?.config?.projects ?? [])
    .map((project) => project.name)
    .filter((name) => !FUNCTIONAL_PROJECTS.includes(name));
  if (first === undefined) notes.push("the fault projects were not run: no project list");
  else if (rest.length > 0)
    await runOnce(
      "faults",
      rest.flatMap((name) => ["--project", name]),
    );
  if (notes.length > 0) return { status: "failed", note: notes.join("; "), counts: all };
  return { status: "passed", counts: all };
}

function printSummary() {
  const marks = { passed: "\u2713", failed: "\u2717", skipped: "-", "not run": " " };
  const total = { passed: 0, failed: 0, skipped: 0 };
  console.log("\nsummary");
  for (const result of results) {
    const seconds = result.status === "not run" ? "" : `${(result.ms / 1000).toFixed(1)}s`;
    const parts = [];
    if (result.counts) {
      const { passed, failed, skipped } = result.counts;
      total.passed += passed;
      total.failed += failed;
      total.skipped += skipped;
      parts.push(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
    }
    if (result.status === "skipped" || result.status === "not run") parts.push(result.status);
    if (result.note) parts.push(result.note);
    console.log(
      `${marks[result.status]} ${result.name.padEnd(14)} ${seconds.padStart(7)}  ${parts.join("; ")}`,
    );
  }
  if (failedStage) {
    console.log(
      `\nFAILED at ${failedStage} (${total.passed} tests passed, ${total.failed} failed before stopping)`,
    );
  } else {
    if (total.skipped > 0) console.log(`\n${total.skipped} skipped`);
    console.log(`${total.passed} passed, 0 failed`);
  }
}

function cleanUp() {
  rmSync(reports, { recursive: true, force: true });
}
