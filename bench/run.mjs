#!/usr/bin/env node
/**
 * `npm run bench`: builds the bench page and workers (bench/vite.config.ts), serves them on a fixed
 * localhost port, launches headless Chromium on a fresh on-disk profile, runs workloads B1-B12
 * beside the raw IndexedDB baseline of the same run (and SIM, the simulator's rate, in Node), prints the table, writes
 * `bench/results/<date>.json` and `latest.json`, and calls out ratios that regressed by more than
 * 20% against the previous `latest.json`.
 *
 *   npm run bench                      full run (5 runs per workload; about 5 minutes)
 *   npm run bench -- --quick           fewer runs and smaller sizes (under 2 minutes)
 *   npm run bench -- --strict          IndexedDB durability "strict" instead of "relaxed"
 *   npm run bench -- --only=B1,B3      some workloads only
 *   npm run bench -- --edge-port=5305  where B10 runs its edge (workerd; the default)
 *   npm run bench -- --costs           the commit-shape diagnostic (idb-costs) instead of the table
 *   npm run bench -- --costs --profile  ... plus a CPU profile of the engine's stash commits
 *   npm run bench -- --costs --profile=engineCommitBatch  ... of another commit shape
 *   npm run bench -- --profile-steps   a CPU profile of B1's sequential steps (where a step's time goes)
 *   npm run bench -- --profile-stashes ... of B1's sequential stashes
 *   npm run bench -- --profile-replay  ... of B6's cold recovery (the replay of 10,000 steps)
 *   PROFILE_OUT=<file>                 with --profile*: also write the raw profile (a .cpuprofile
 *                                      DevTools opens) to <file>
 *   npm run bench -- --update-readme   also write the table into bench/README.md
 */

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build as esbuild } from "esbuild";
import { build } from "vite";
import { attachToTarget, connectCdp } from "./lib/cdp.mjs";
import { killLaunched, launchChromium } from "./lib/chromium.mjs";
import { buildRows, fmt, markdownTable, regressions } from "./lib/report.mjs";
import { serveStatic } from "./lib/serve.mjs";
import { b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, runJob, sim } from "./lib/workloads.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const args = process.argv.slice(2);
const flag = (name) => args.includes(`--${name}`);
const option = (name) => args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];

const quick = flag("quick");
const durability = flag("strict") ? "strict" : "relaxed";
const only = option("only")
  ?.split(",")
  .map((s) => s.trim().toLowerCase());
const PORT = Number(option("port") ?? 5299);
const CDP_PORT = Number(option("cdp-port") ?? 9399);
// B10's edge (workerd).
const EDGE_PORT = Number(option("edge-port") ?? 5305);
const origin = `http://127.0.0.1:${PORT}`;
const profile = join(root, ".profiles", "bench");
const resultsDir = join(here, "results");

// Order: in-worker jobs first, then the Service Worker stream, then the stop and the crash. SIM
// (Node only) runs before them all, before the browser starts.
const WORKLOADS = { b1, b2, b6, b7, b12, b8, b10, b11, b3, b9, b4, b5 };
const RUNS = quick
  ? { sim: 1, b1: 2, b2: 2, b3: 2, b4: 3, b5: 2, b6: 2, b7: 1, b8: 1, b9: 3, b10: 3, b11: 3, b12: 1 }
  : { sim: 3, b1: 5, b2: 5, b3: 5, b4: 7, b5: 5, b6: 5, b7: 3, b8: 2, b9: 9, b10: 3, b11: 7, b12: 3 };

const started = Date.now();
const log = (message) =>
  console.log(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(3)}s] ${message}`);

/** `mockModelHandler` of src/agent/mock-server.ts at `/mock-model/v1`, as the demo's server mounts it. */
async function mockModelHandler() {
  const out = join(root, ".profiles", "bench-mock-server.mjs");
  mkdirSync(dirname(out), { recursive: true });
  await esbuild({
    entryPoints: [join(root, "src/agent/mock-server.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outfile: out,
    external: ["vite"],
    logLevel: "error",
  });
  const { mockModelHandler: handler } = await import(pathToFileURL(out).href);
  const handle = handler();
  return (request, response, next) => {
    if (!(request.url ?? "").startsWith("/mock-model/")) return next();
    request.url = (request.url ?? "").slice("/mock-model".length);
    handle(request, response, next);
  };
}

async function main() {
  const results = {};
  const errors = {};
  const diagnostic =
    flag("costs") || flag("profile-steps") || flag("profile-stashes") || flag("profile-replay");
  if (!diagnostic && (!only || only.includes("sim"))) {
    // First, so that no browser (nor its build) competes for the cores.
    log(`SIM: ${RUNS.sim} run(s)`);
    try {
      results.sim = await sim({ quick, runs: RUNS, log });
    } catch (error) {
      errors.sim = String(error?.stack ?? error);
      log(`SIM failed: ${error?.message ?? error}`);
    }
  }
  log(`building bench/dist (${quick ? "quick" : "full"} run, durability ${durability})`);
  await build({ configFile: join(here, "vite.config.ts"), logLevel: "warn" });
  // The bench origin, plus one origin per B8 phase (each its own IndexedDB directory).
  const diskPorts = [PORT + 1, PORT + 2, PORT + 3];
  // B9's model: the mock model's HTTP handler, bundled from its TypeScript source for Node.
  const mockModel = await mockModelHandler();
  // B5's page posts its timings here (no DevTools client is attached while it runs).
  const reports = reportBox();
  const benchHandler = (request, response, next) =>
    reports.handle(request, response, () => mockModel(request, response, next));
  // B5's floor: an installable app with nothing of Fiberline's, on an origin of its own.
  const floorPort = PORT + 4;
  const servers = await Promise.all(
    [PORT, ...diskPorts, floorPort].map((port) =>
      serveStatic(join(here, "dist"), port, port === PORT || port === floorPort ? benchHandler : undefined),
    ),
  );
  rmSync(profile, { recursive: true, force: true });
  mkdirSync(profile, { recursive: true });

  const launch = (urls = [], options = {}) =>
    launchChromium({ profile, cdpPort: CDP_PORT, urls, ...options });
  const env = {
    quick,
    durability,
    origin,
    diskPorts,
    floorOrigin: `http://127.0.0.1:${floorPort}`,
    profile,
    runs: RUNS,
    edgePort: EDGE_PORT,
    log,
    launch,
    nextReport: reports.next,
    browser: await launch(),
    page: null,
    cdp: null,
  };
  const browserVersion = env.browser.browser.version();
  const openPage = async () => {
    env.page = await env.browser.context.newPage();
    env.page.on("pageerror", (error) => log(`page error: ${error.message}`));
    await env.page.goto(`${origin}/?durability=${durability}`);
    await env.page.evaluate(() => window.bench.ready());
  };
  await openPage();

  /** Answers a job's `profile-start` / `profile-stop` checkpoints: a CPU profile of its worker. */
  const profiler = (job, what) => {
    let target;
    return async (name) => {
      if (name === "profile-start") {
        env.cdp = await connectCdp(env.browser.wsUrl);
        target = await attachToTarget(env.cdp, { type: "worker", match: `bench-${job}` });
        await target.send("Profiler.enable");
        await target.send("Profiler.setSamplingInterval", { interval: 50 });
        await target.send("Profiler.start");
      } else if (name === "profile-stop") {
        const { profile: cpu } = await target.send("Profiler.stop");
        if (process.env.PROFILE_OUT) writeFileSync(process.env.PROFILE_OUT, JSON.stringify(cpu));
        printProfile(cpu, what);
        await target.detach();
        env.cdp.close();
      }
    };
  };

  const profiled = flag("profile-steps") ? "steps" : flag("profile-stashes") ? "stashes" : undefined;
  if (profiled !== undefined) {
    try {
      const n = quick ? 1000 : 4000;
      const job = await runJob(
        env.page,
        "b1",
        { n, block: 50, profile: profiled },
        profiler("b1", `B1's ${n} sequential ${profiled} and the raw blocks between them`),
      );
      console.log(
        `step ${job.stepMs.toFixed(3)} ms (${job.stepRatio.toFixed(2)}x a raw put): ${job.stepInsideTxMs.toFixed(3)} ms in its transaction, ${job.stepBetweenTxMs.toFixed(3)} ms between two (raw fenced: ${job.fencedInsideTxMs.toFixed(3)} / ${job.fencedBetweenTxMs.toFixed(3)}); stash ${job.stashMs.toFixed(3)} ms (${job.stashRatio.toFixed(2)}x)`,
      );
    } finally {
      await env.browser.close();
      await Promise.all(servers.map((server) => server.close()));
    }
    return;
  }

  if (flag("profile-replay")) {
    try {
      for (let r = 0; r < (quick ? 1 : 3); r++) {
        const job = await runJob(
          env.page,
          "b6",
          { n: 10_000, batch: 100, profile: "replay" },
          profiler("b6", "B6's cold recovery of a fiber with 10,000 completed steps"),
        );
        console.log(
          `resume ${job.resumeMs.toFixed(1)} ms (under the profiler), raw getAll ${job.rawGetAllMs.toFixed(1)} ms, its own rows ${job.ownRowsMs.toFixed(1)} ms`,
        );
      }
    } finally {
      await env.browser.close();
      await Promise.all(servers.map((server) => server.close()));
    }
    return;
  }

  if (flag("costs")) {
    // The diagnostic of bench/browser/jobs/idb-costs.ts: ms per transaction of each commit shape.
    try {
      const profile = option("profile") ?? flag("profile");
      const shape = typeof profile === "string" ? profile : "engineStash1";
      const costs = await runJob(
        env.page,
        "idb-costs",
        { reps: quick ? 100 : 400, fibers: 100, profile },
        profiler("idb-costs", `the engine's ${shape} commits`),
      );
      const base = costs.put1;
      for (const [shape, ms] of Object.entries(costs)) {
        console.log(
          `${shape.padEnd(28)} ${ms.toFixed(3).padStart(8)} ms  ${(ms / base).toFixed(2).padStart(6)}x put1`,
        );
      }
    } finally {
      await env.browser.close();
      await Promise.all(servers.map((server) => server.close()));
    }
    return;
  }

  try {
    for (const [name, workload] of Object.entries(WORKLOADS)) {
      if (only && !only.includes(name)) continue;
      log(`${name.toUpperCase()}: ${RUNS[name]} run(s)`);
      try {
        if (env.cdp === null || env.cdpFor !== env.browser) {
          env.cdp?.close();
          env.cdp = await connectCdp(env.browser.wsUrl);
          env.cdpFor = env.browser;
        }
        results[name] = await workload(env);
      } catch (error) {
        errors[name] = String(error?.stack ?? error);
        log(`${name.toUpperCase()} failed: ${error?.message ?? error}`);
        // Start over from a clean page (and browser, if it is gone).
        if (!env.browser.browser?.isConnected()) {
          await env.browser.close();
          env.browser = await launch();
        }
        await openPage().catch(() => {});
      }
    }
  } finally {
    env.cdp?.close();
    await env.browser.close();
    await Promise.all(servers.map((server) => server.close()));
  }

  const rows = buildRows(results);
  const date = new Date().toISOString().replace(/:/g, "-").replace(/\..*/, "Z");
  // Quick runs are for development: kept out of git (`*.tmp.json` is ignored) and compared among themselves.
  const suffix = quick ? "-quick.tmp.json" : ".json";
  const latestName = `latest${suffix}`;
  const latestPath = join(resultsDir, latestName);
  const previous = existsSync(latestPath) ? JSON.parse(readFileSync(latestPath, "utf8")) : null;
  const comparable = previous && previous.durability === durability ? previous : null;
  const regressed = regressions(rows, comparable);
  const report = {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    durability,
    machine: {
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      os: `${process.platform} ${release()}`,
      node: process.version,
      browser: `Chromium ${browserVersion} (headless, on-disk profile)`,
    },
    runs: RUNS,
    rows,
    raw: results,
    errors,
    regressions: regressed,
    comparedWith: comparable?.date ?? null,
  };
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, `${date}${suffix}`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(latestPath, `${JSON.stringify(report, null, 2)}\n`);

  const table = markdownTable(rows);
  console.log(`\n${table}\n`);
  console.log(
    `${rows.filter((r) => r.status === "pass").length} pass, ${rows.filter((r) => r.status === "MISS").length} miss; ${report.machine.browser}, ${report.machine.cpus} cores, durability ${durability}`,
  );
  if (comparable) {
    if (regressed.length === 0) console.log(`No regression beyond 20% against ${comparable.date}.`);
    for (const r of regressed) {
      console.log(
        `REGRESSION ${r.key}: ${r.on} ${fmt(r.before)} -> ${fmt(r.now)} (${(r.change * 100).toFixed(0)}%) against ${comparable.date}`,
      );
    }
  } else {
    console.log(`No previous ${latestName} with durability ${durability} to compare with.`);
  }
  for (const [name, error] of Object.entries(errors))
    console.log(`ERROR in ${name.toUpperCase()}:\n${error}`);
  if (flag("update-readme")) updateReadme(table, report);
  log("done");
  process.exitCode = Object.keys(errors).length > 0 ? 1 : 0;
}

/**
 * `POST /bench/report` from the bench page: `next()` resolves with the body of the next one. B5's
 * resumed page reports this way, so that no DevTools client needs to be attached to read it.
 */
function reportBox() {
  const waiting = [];
  const queued = [];
  return {
    next() {
      const report = queued.shift();
      return report ? Promise.resolve(report) : new Promise((resolve) => waiting.push(resolve));
    },
    handle(request, response, next) {
      if (request.method !== "POST" || !(request.url ?? "").startsWith("/bench/report")) return next();
      let body = "";
      request.setEncoding("utf8");
      request.on("data", (chunk) => {
        body += chunk;
      });
      request.on("end", () => {
        response.writeHead(204, { "cache-control": "no-store" }).end();
        let report;
        try {
          report = JSON.parse(body);
        } catch {
          report = { ok: false, message: `unreadable report: ${body.slice(0, 200)}` };
        }
        const resolve = waiting.shift();
        if (resolve) resolve(report);
        else queued.push(report);
      });
    },
  };
}

/** Replaces the table between the markers of bench/README.md. */
function updateReadme(table, report) {
  const path = join(here, "README.md");
  const text = readFileSync(path, "utf8");
  const start = "<!-- bench:table:start -->";
  const end = "<!-- bench:table:end -->";
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < 0) throw new Error("bench/README.md lacks the table markers");
  const m = report.machine;
  const header = `Run ${report.date} (${report.mode}, durability ${report.durability}) on ${m.cpu} x${m.cpus}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}, ${m.browser}.`;
  writeFileSync(path, `${text.slice(0, i + start.length)}\n${header}\n\n${table}\n${text.slice(j)}`);
}

// An interrupted run (Ctrl-C, a timeout) must not leave a browser holding the profile and port.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    killLaunched();
    process.exit(130);
  });
}

main().catch((error) => {
  console.error(error);
  killLaunched();
  process.exit(1);
});

/** Prints the functions with the most self time in a CDP CPU profile, and the idle share. */
function printProfile(profile, what) {
  const self = new Map();
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    const frame = byId.get(id)?.callFrame;
    const name = frame
      ? `${frame.functionName || "(anonymous)"} ${frame.url.split("/").pop()}:${frame.lineNumber + 1}`
      : "?";
    self.set(name, (self.get(name) ?? 0) + dt);
  });
  console.log(`CPU profile of ${what}: ${(total / 1000).toFixed(0)} ms sampled`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
  }
}
