/**
 * The Node side of each workload: drives the bench page (`window.bench`), the browser (CDP stop of
 * the Service Worker, SIGKILL and relaunch) and the profile on disk, and returns per-run numbers.
 * `report.mjs` turns them into table rows against the targets.
 */

import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { attachToTarget } from "./cdp.mjs";
import { indexedDbBytes } from "./disk.mjs";
import { startBenchEdge } from "./edge.mjs";
import { fiberIndexBytes, rowBytes } from "./row-size.mjs";
import { percentile } from "./stats.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => performance.timeOrigin + performance.now();
/** The repository's root. */
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/** Runs job `job` in a fresh dedicated worker; `onCheckpoint(name, data)` answers its checkpoints. */
export async function runJob(page, job, params, onCheckpoint) {
  const id = await page.evaluate(([j, p]) => window.bench.startJob(j, p), [job, params]);
  let reply;
  for (;;) {
    const message = await page.evaluate(([i, r]) => window.bench.nextOf(i, r), [id, reply]);
    if (message.type === "done") return message.result;
    if (message.type === "error") throw new Error(`job ${job} failed in the worker: ${message.message}`);
    reply = (await onCheckpoint?.(message.name, message.data)) ?? true;
  }
}

/** B1: sequential steps and stashes vs single-put transactions; localStorage checkpoints. */
export async function b1(env) {
  const runs = [];
  for (let r = 0; r < env.runs.b1; r++) {
    const job = await runJob(env.page, "b1", { n: 1000, block: 50 });
    const ls = await env.page.evaluate((n) => window.bench.localStorageCheckpoints({ n, bytes: 200 }), 1000);
    runs.push({ ...job, localStorageMs: ls.ms });
    env.log(`B1 run ${r + 1}: step ${job.stepRatio.toFixed(2)}x, stash ${job.stashRatio.toFixed(2)}x`);
  }
  return runs;
}

/** B2: 100 fibers stepping concurrently vs sequential single-put commits. */
export async function b2(env) {
  const runs = [];
  for (let r = 0; r < env.runs.b2; r++) {
    const job = await runJob(env.page, "b2", {
      fibers: 100,
      steps: env.quick ? 30 : 60,
      block: 5,
      rawCount: 50,
    });
    runs.push(job);
    env.log(`B2 run ${r + 1}: ${Math.round(job.stepsPerSec)} steps/s, ${job.ratio.toFixed(2)}x`);
  }
  return runs;
}

/** B3's heavy-input latency: the size of the conversation an agent fiber's input may carry. */
const B3_HEAVY_INPUT_BYTES = 64_000;

/** B3: throughput through the Service Worker stream, the raw baselines in the same worker, latency. */
export async function b3(env) {
  const runs = [];
  const n = env.quick ? 10_000 : 20_000;
  for (let r = 0; r < env.runs.b3; r++) {
    // Fiberline's delivered stream and its hand-written floor side by side, their order
    // alternated from run to run so neither always follows the other.
    const params = { n, burst: 16, bytes: 200 };
    const fiberline = () => env.page.evaluate((p) => window.bench.b3Throughput(p), params);
    const handWritten = () => env.page.evaluate((p) => window.bench.b3RawDelivered(p), params);
    let stream;
    let rawDelivered;
    if (r % 2 === 0) {
      stream = await fiberline();
      rawDelivered = await handWritten();
    } else {
      rawDelivered = await handWritten();
      stream = await fiberline();
    }
    const durable = await env.page.evaluate((p) => window.bench.b3Durable(p), { n, burst: 16, bytes: 200 });
    const batched = await env.page.evaluate((c) => window.bench.rawInServiceWorker("batched", c, 200), n);
    const perToken = await env.page.evaluate((c) => window.bench.rawInServiceWorker("single", c, 200), 1000);
    const latency = await env.page.evaluate((p) => window.bench.b3Latency(p), {
      n: env.quick ? 200 : 300,
      interval: 10,
      bytes: 200,
    });
    // The same pace with 64 KB in the fiber's input, as an agent's input carries its conversation.
    const heavy = await env.page.evaluate((p) => window.bench.b3Latency(p), {
      n: env.quick ? 200 : 300,
      interval: 10,
      bytes: 200,
      inputBytes: B3_HEAVY_INPUT_BYTES,
    });
    runs.push({
      heavyInputLatencyP50: percentile(heavy.latencies, 50),
      heavyInputLatencyP95: percentile(heavy.latencies, 95),
      chunksPerSec: stream.chunksPerSec,
      durablePerSec: durable.chunksPerSec,
      durableTransactions: durable.transactions,
      rawBatchedPerSec: batched,
      rawDeliveredPerSec: rawDelivered.chunksPerSec,
      rawPerTokenPerSec: perToken,
      ratio: stream.chunksPerSec / batched,
      latencyP50: percentile(latency.latencies, 50),
      latencyP95: percentile(latency.latencies, 95),
    });
    env.log(
      `B3 run ${r + 1}: ${Math.round(stream.chunksPerSec)} chunks/s delivered (hand-written: ${Math.round(rawDelivered.chunksPerSec)}/s), ${Math.round(durable.chunksPerSec)}/s durable with no reader (${durable.transactions} transactions), raw batched ${Math.round(batched)}/s, p50 ${percentile(latency.latencies, 50).toFixed(2)} ms (${percentile(heavy.latencies, 50).toFixed(2)} ms with a 64 KB input)`,
    );
  }
  return runs;
}

/** B9's prompt: a prose reply of the mock model (no tool call), the same for both paths. */
const B9_PROMPT = "Explain durable execution for agent loops in a few sentences";

/**
 * B9: time to first token and tokens/s of the mock model's reply, through the agent fiber in the
 * Service Worker (durable, delivered to the page) vs the page fetching the endpoint directly, in
 * the same run. The model paces its tokens (`B9_TOKEN_DELAY_MS` in bench/browser/fibers.ts).
 */
export async function b9(env) {
  const runs = [];
  // One unmeasured reply each way first: the worker's agent code and the endpoint warm up.
  await env.page.evaluate((p) => window.bench.b9(p), { prompt: `${B9_PROMPT} (warm-up)`, delayMs: 5 });
  for (let r = 0; r < env.runs.b9; r++) {
    const { direct, fiber, phases } = await env.page.evaluate((p) => window.bench.b9(p), {
      prompt: `${B9_PROMPT} (run ${r})`,
      delayMs: 5,
    });
    runs.push({
      fiberTtftMs: fiber.ttftMs,
      directTtftMs: direct.ttftMs,
      addedTtftMs: fiber.ttftMs - direct.ttftMs,
      fiberTokensPerSec: fiber.tokensPerSec,
      directTokensPerSec: direct.tokensPerSec,
      throughputRatio: fiber.tokensPerSec / direct.tokensPerSec,
      tokens: fiber.tokens,
      phases,
    });
    env.log(
      `B9 run ${r + 1}: first token ${fiber.ttftMs.toFixed(1)} ms via the fiber vs ${direct.ttftMs.toFixed(1)} ms direct, ${Math.round(fiber.tokensPerSec)} vs ${Math.round(direct.tokensPerSec)} tokens/s (${fiber.tokens} and ${direct.tokens} tokens); fiber path: started ${phases.started.toFixed(1)} (${phases.startInWorker.toFixed(1)} of it in the worker), stream opened ${phases.streamOpen.toFixed(1)}, fiber.start ${phases.fiberStart.toFixed(1)}, message.start ${phases.messageStart.toFixed(1)} ms`,
    );
  }
  return runs;
}

/** B4: stop the Service Worker over CDP mid-stream; time from the reader's reconnect to the next chunk. */
export async function b4(env) {
  const cdp = await env.page.context().newCDPSession(env.page);
  await cdp.send("ServiceWorker.enable");
  const runs = [];
  for (let r = 0; r < env.runs.b4; r++) {
    await env.page.evaluate(() => window.bench.tickerBegin({ interval: 5, ticks: 20 }));
    await cdp.send("ServiceWorker.stopAllWorkers");
    const result = await env.page.evaluate(() => window.bench.b4Finish());
    runs.push(result);
    env.log(
      `B4 run ${r + 1}: fiber.recovered ${result.recoveredMs.toFixed(1)} ms, resumed tick ${result.resumedTickMs.toFixed(1)} ms after reconnect`,
    );
  }
  await cdp.send("ServiceWorker.disable").catch(() => {});
  await cdp.detach().catch(() => {});
  return runs;
}

/**
 * B11: the Service Worker's cold start. The harness stops the worker over CDP and the page's fetch
 * of `/bench/recovered` wakes it; the worker answers once its start's recover() is done. First
 * with no fiber to recover, then with 1,000 waiting fibers (100 in a quick run), which are ended
 * afterwards so the later workloads start without them. Also the gzip size of Fiberline's worker
 * code next to Workbox's precaching runtime.
 */
export async function b11(env) {
  const sizes = await bundleSizes();
  env.log(
    `B11 bundle: fiberline + fiberline/sw ${(sizes.fiberlineGzip / 1024).toFixed(1)} KiB gzip (${(sizes.fiberlineMin / 1024).toFixed(0)} KiB min), workbox-precaching ${(sizes.workboxGzip / 1024).toFixed(1)} KiB gzip`,
  );
  const cdp = await env.page.context().newCDPSession(env.page);
  await cdp.send("ServiceWorker.enable");
  const waiting = env.quick ? 100 : 1000;
  const phases = { empty: [], suspended: [] };
  try {
    for (const phase of ["empty", "suspended"]) {
      if (phase === "suspended") await env.page.evaluate((n) => window.bench.startWaiters(n), waiting);
      for (let r = 0; r < env.runs.b11; r++) {
        await cdp.send("ServiceWorker.stopAllWorkers");
        const cold = await env.page.evaluate(() => window.bench.coldStart());
        phases[phase].push(cold);
        env.log(
          `B11 run ${r + 1} (${phase}, ${cold.scheduled} scheduled): worker started ${cold.workerStartMs.toFixed(1)} ms, recover() done ${cold.recoveredMs.toFixed(1)} ms, answered ${cold.answeredMs.toFixed(1)} ms after the fetch`,
        );
      }
    }
  } finally {
    await env.page.evaluate(() => window.bench.sw({ type: "bench/release-waiters" })).catch(() => {});
    await cdp.send("ServiceWorker.disable").catch(() => {});
    await cdp.detach().catch(() => {});
  }
  return phases.empty.map((empty, r) => ({
    emptyMs: empty.recoveredMs,
    suspendedMs: phases.suspended[r].recoveredMs,
    suspendedFibers: waiting,
    emptyWorkerStartMs: empty.workerStartMs,
    ...sizes,
  }));
}

/**
 * Minified and gzip-9 bytes of everything the two worker-side entries export (`fiberline` and
 * `fiberline/sw`, with `idb` and `comlink` bundled in), and of Workbox's precaching runtime as an
 * app's worker would include it.
 */
async function bundleSizes() {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const measure = async (contents) => {
    const out = await build({
      stdin: { contents, resolveDir: root, loader: "ts" },
      bundle: true,
      minify: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      write: false,
      logLevel: "error",
    });
    const code = out.outputFiles[0].contents;
    return { min: code.length, gzip: gzipSync(code, { level: 9 }).length };
  };
  const fiberline = await measure(
    'export * as core from "./src/index"; export * as sw from "./src/sw/index";',
  );
  const workbox = await measure(
    'import { precacheAndRoute } from "workbox-precaching"; precacheAndRoute(self.__WB_MANIFEST ?? []);',
  );
  return {
    fiberlineMin: fiberline.min,
    fiberlineGzip: fiberline.gzip,
    workboxMin: workbox.min,
    workboxGzip: workbox.gzip,
  };
}

/** B5: SIGKILL the browser mid-stream, relaunch on the same profile with the page as start-up URL. */
export async function b5(env) {
  const runs = [];
  await installFloor(env);
  for (let r = 0; r < env.runs.b5; r++) {
    const floor = await b5Floor(env);
    const page = env.page;
    const { id } = await page.evaluate(() => window.bench.tickerBegin({ interval: 5, ticks: 20 }));
    const after = await page.evaluate(() => window.bench.tickerSeq());
    const url = `${env.origin}/?durability=${env.durability}&resume=${id}&after=${after}&report`;
    const { t0, value: resumed } = await crashAndRelaunch(env, url, {
      // BENCH_B5_ATTACHED=1 attaches at once, as this workload used to.
      attach: Boolean(process.env.BENCH_B5_ATTACHED),
      what: "the resumed page",
      detail: () => `\n${leveldbLogs(env.profile)}`,
    });
    const resumedPage = await findPage(env.browser.context, "resume=");
    const totalMs = resumed.resumedTickAt - t0;
    runs.push({
      totalMs,
      floorMs: floor.totalMs,
      floorNavigationMs: floor.navigationMs,
      navigationMs: resumed.navigationStart - t0,
      readyMs: resumed.navigationStart + resumed.readyMs - t0,
      page: {
        workerStart: resumed.workerStartMs,
        responseEnd: resumed.responseEndMs,
        scriptRuns: resumed.scriptMs,
        ready: resumed.readyMs,
        recovered: resumed.recoveredMs,
      },
      recoveredMs: resumed.navigationStart + resumed.recoveredMs - t0,
    });
    env.log(
      `B5 run ${r + 1}: resumed tick ${totalMs.toFixed(0)} ms after relaunch (navigation at ${(resumed.navigationStart - t0).toFixed(0)} ms, page ready at ${(resumed.navigationStart + resumed.readyMs - t0).toFixed(0)} ms, fiber.recovered at ${(resumed.navigationStart + resumed.recoveredMs - t0).toFixed(0)} ms); floor ${floor.totalMs.toFixed(0)} ms (navigation at ${floor.navigationMs.toFixed(0)} ms, its worker started at ${floor.workerStartMs.toFixed(0)} ms)`,
    );
    if (process.env.BENCH_B5_PHASES) {
      env.log(
        `B5 run ${r + 1} phases (ms after navigation start, which was ${(resumed.navigationStart - t0).toFixed(0)} ms after relaunch at ${t0.toFixed(1)}):`,
      );
      for (const [key, value] of Object.entries(resumed.phases)) env.log(`  ${key.padEnd(28)} ${value}`);
    }
    await backToBench(env, resumedPage);
  }
  return runs;
}

/**
 * SIGKILLs the browser and relaunches it on the same profile with `url` as its start-up URL;
 * resolves, once Playwright is attached, with the relaunch time and what the page posted to
 * `/bench/report`. No DevTools client is attached until the page has reported, unless `attach`
 * (a user's browser has none: Playwright's attach holds each new target, the Service Worker's
 * included, until it has set it up).
 */
async function crashAndRelaunch(env, url, { attach = false, what, detail = () => "" }) {
  await env.browser.crash();
  const t0 = nowMs();
  const report = env.nextReport();
  env.browser = await env.launch([url], { attach });
  const answer = await Promise.race([
    report,
    sleep(20_000).then(() => ({ ok: false, message: `no report from ${what} in 20 s` })),
  ]);
  if (!answer.ok) throw new Error(`${answer.message}${detail()}`);
  await env.browser.attach();
  return { t0, value: answer.value };
}

/** Carries on from `page` turned into a normal bench page (of a relaunched browser, or after a visit elsewhere). */
async function backToBench(env, page) {
  env.page = page;
  await env.page.goto(`${env.origin}/?durability=${env.durability}`);
  await env.page.evaluate(() => window.bench.ready());
}

/** B5's floor page, on its own origin: installs its Service Worker, then the bench page comes back. */
async function installFloor(env) {
  await env.page.goto(`${env.floorOrigin}/floor.html`);
  await env.page.waitForFunction(() => window.floorReport?.active === true, undefined, { timeout: 15_000 });
  await backToBench(env, env.page);
}

/**
 * B5's floor, measured beside each run: the browser SIGKILLed the same way, relaunched on the same
 * profile with the floor page as its start-up URL; from the relaunch to the answer its bare
 * Service Worker gives the page (`public/floor.html`). What any installable app's page waits for
 * after a crash before it can show anything a worker holds: Chromium's start-up, the worker's
 * start for the navigation, the page served from Cache Storage, one request to the worker.
 */
async function b5Floor(env) {
  const { t0, value: floor } = await crashAndRelaunch(env, `${env.floorOrigin}/floor.html?report`, {
    what: "B5's floor page",
  });
  if (!floor.controlled)
    throw new Error("B5's floor page was not controlled by its Service Worker after the relaunch");
  await backToBench(env, await findPage(env.browser.context, "floor.html"));
  return {
    totalMs: floor.answeredAt - t0,
    navigationMs: floor.navigationStart - t0,
    workerStartMs: floor.workerStartedAt - t0,
  };
}

/** The LevelDB LOG files of the profile's IndexedDB, for a failure report (recovery, corruption). */
function leveldbLogs(profile) {
  const root = join(profile, "Default", "IndexedDB");
  const out = [];
  try {
    for (const dir of readdirSync(root)) {
      for (const file of readdirSync(join(root, dir))) {
        if (file.startsWith("LOG"))
          out.push(`${dir}/${file}:\n${readFileSync(join(root, dir, file), "utf8")}`);
      }
    }
  } catch (error) {
    out.push(String(error));
  }
  return out.join("\n");
}

async function findPage(context, fragment) {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const page = context.pages().find((p) => p.url().includes(fragment));
    if (page) return page;
    await sleep(20);
  }
  throw new Error(`no page with ${fragment} after the relaunch`);
}

/** B6: cold recovery of a fiber with 10,000 completed steps vs a raw getAll of its journal. */
export async function b6(env) {
  const runs = [];
  for (let r = 0; r < env.runs.b6; r++) {
    const job = await runJob(env.page, "b6", { n: 10_000, batch: 100 });
    runs.push(job);
    env.log(
      `B6 run ${r + 1}: resume ${job.resumeMs.toFixed(1)} ms, raw getAll ${job.rawGetAllMs.toFixed(1)} ms`,
    );
  }
  return runs;
}

/** Used JS heap of the dedicated worker named `name`, after a forced GC. */
async function workerHeap(env, name) {
  const target = await attachToTarget(env.cdp, { type: "worker", match: name });
  try {
    await target.send("HeapProfiler.collectGarbage");
    const usage = await target.send("Runtime.getHeapUsage");
    return usage.usedSize;
  } finally {
    await target.detach();
  }
}

/** B7: heap of a worker with 1,000 waiting and 100 active fibers; then recover() of all. */
export async function b7(env) {
  const runs = [];
  for (let r = 0; r < env.runs.b7; r++) {
    const heap = {};
    const job = await runJob(env.page, "b7", { waiting: 1000, active: 100, interval: 10 }, async (name) => {
      heap[name] = await workerHeap(env, "bench-b7");
    });
    runs.push({
      heapMB: heap.loaded / 2 ** 20,
      emptyHeapMB: heap.empty / 2 ** 20,
      recoveredHeapMB: heap.recovered / 2 ** 20,
      ...job,
    });
    env.log(
      `B7 run ${r + 1}: heap ${(heap.loaded / 2 ** 20).toFixed(1)} MB (empty worker ${(heap.empty / 2 ** 20).toFixed(1)} MB), recover() ${job.recoverMs.toFixed(0)} ms`,
    );
  }
  return runs;
}

/**
 * B12: recover() of 10,000 fibers (1,000 running, 4,500 waiting, 4,500 ended; a tenth of that in
 * a quick run), set up once, recovered `runs.b12` times in fresh runtimes; the worker's heap
 * after each recover() (forced GC), against the same worker before the setup.
 */
export async function b12(env) {
  const scale = env.quick ? 0.1 : 1;
  const heap = {};
  const job = await runJob(
    env.page,
    "b12",
    {
      active: 1000 * scale,
      waiting: 4500 * scale,
      ended: 4500 * scale,
      interval: 200,
      runs: env.runs.b12,
    },
    async (name) => {
      heap[name] = await workerHeap(env, "bench-b12");
    },
  );
  env.log(`B12 setup: ${job.total} fibers in ${(job.setupMs / 1000).toFixed(1)} s`);
  return job.runs.map((run, r) => {
    const heapMB = heap[`recovered-${r}`] / 2 ** 20;
    env.log(`B12 run ${r + 1}: recover() ${run.recoverMs.toFixed(0)} ms, heap ${heapMB.toFixed(1)} MB`);
    return { ...run, total: job.total, heapMB, emptyHeapMB: heap.empty / 2 ** 20 };
  });
}

/**
 * B8: bytes on disk per step and per chunk, each phase alone on its own origin (port) so its
 * IndexedDB directory holds nothing else, measured after the writes are durable and the worker
 * closed its connection; raw rows of the same payload the same way. Also checks collection after
 * retention.
 */
export async function b8(env) {
  const runs = [];
  // 1,000 x ~1.7 KB stays below LevelDB's 4 MB write buffer: "as written" is then the log alone,
  // not a log plus whatever a compaction happened to merge.
  const n = 1000;
  const size = 1024;
  for (let r = 0; r < env.runs.b8; r++) {
    const written = {};
    const stored = {};
    let steps;
    for (const [i, phase] of ["raw", "steps", "chunks"].entries()) {
      const port = env.diskPorts[i];
      const page = await env.browser.context.newPage();
      await page.goto(`http://127.0.0.1:${port}/?nosw=1&durability=${env.durability}`);
      const dir = `http_127.0.0.1_${port}`;
      const bytes = {};
      const job = await runJob(page, "b8", { phase, n, size, retentionMs: 1000 }, async (name, data) => {
        // Let the backend finish writing its log before reading sizes.
        await sleep(300);
        bytes[name] = indexedDbBytes(env.profile, dir);
        if (name === "written") stored[phase] = storedBytes(data.rows) / n;
      });
      await page.close();
      written[phase] = (bytes.written - bytes.opened) / n;
      if (phase === "steps") steps = job;
    }
    runs.push({
      payload: size,
      rawOverhead: stored.raw - size,
      stepOverhead: stored.steps - size,
      chunkOverhead: stored.chunks - size,
      rawWrittenOverhead: written.raw - size,
      stepWrittenOverhead: written.steps - size,
      chunkWrittenOverhead: written.chunks - size,
      collected: steps.collected,
      left: steps.left,
    });
    env.log(
      `B8 run ${r + 1}: stored per step payload+${(stored.steps - size).toFixed(0)} B, per chunk payload+${(stored.chunks - size).toFixed(0)} B, raw row payload+${(stored.raw - size).toFixed(0)} B; as written ${(written.steps - size).toFixed(0)} / ${(written.chunks - size).toFixed(0)} / ${(written.raw - size).toFixed(0)} B; collected ${steps.collected}`,
    );
  }
  return runs;
}

/** Bytes of a phase's rows as stored (see row-size.mjs), index entries of fiber records included. */
function storedBytes(rows) {
  let total = 0;
  for (const row of rows) {
    total += rowBytes(row.key, row.value);
    if (row.store === "fibers") total += fiberIndexBytes(row.value);
  }
  return total;
}

/**
 * B10 (continuity, issue #18): replication's cost per step in the browser, the edge's takeover
 * once a stopped browser's lease lapses, and the edge's own cost per step, each against its
 * baseline of the same run. The edge is `bench/edge/worker.ts` in real workerd
 * (`bench/lib/edge.mjs`) on `env.edgePort`, started here and closed at the end.
 */
export async function b10(env) {
  const leaseMs = B10_LEASE_MS;
  const edge = await startBenchEdge({ port: env.edgePort, leaseMs, allowedOrigin: env.origin });
  env.log(`B10 edge (workerd) on ${edge.url}, lease ${leaseMs} ms`);
  try {
    const steps = await b10StepRuns(
      env,
      "steps",
      {
        n: env.quick ? 300 : 1000,
        block: 50,
        edgeUrl: edge.prefixUrl,
        leaseMs,
        // The diagnostic of continuity-jobs.ts: shipments answered in the worker, no network.
        ack: ["local", "get", "get-origin"].includes(process.env.B10_ACK) ? process.env.B10_ACK : "edge",
        outbox: process.env.B10_OUTBOX === "memory" ? "memory" : "idb",
      },
      (job) =>
        `; first step ${job.firstStepMs.plain.toFixed(1)} / ${job.firstStepMs.ruleA.toFixed(1)} / ${job.firstStepMs.noAwait.toFixed(1)} ms; wait for acks after blocks ${job.settleMsPerStep.ruleA.toFixed(2)} / ${job.settleMsPerStep.noAwait.toFixed(2)} ms/step`,
    );
    // Rule A where it is meant to be paid: steps that wait on something (a short tool call).
    const work = await b10StepRuns(env, `${B10_WORK_MS} ms steps`, {
      n: env.quick ? 20 : 40,
      block: 10,
      edgeUrl: edge.prefixUrl,
      leaseMs,
      workMs: B10_WORK_MS,
    });
    const handoffs = [];
    for (let r = 0; r < env.runs.b10; r++) {
      const handoff = await b10Handoff(env, edge, leaseMs);
      handoffs.push(handoff);
      env.log(
        `B10 handoff run ${r + 1}: browser stopped at step ${handoff.browserSteps}; lease ended ${handoff.leaseAfterKillMs.toFixed(0)} ms after the kill; first edge chunk (${handoff.firstChunk}) ${handoff.handoffMs.toFixed(0)} ms after the lease, first step's chunk ${handoff.firstStepMs.toFixed(0)} ms after it`,
      );
    }
    const costs = [];
    for (let r = 0; r < env.runs.b10; r++) {
      const cost = await b10EdgeCost(edge, env.quick ? 300 : 1000, `cost-${r}`);
      costs.push(cost);
      env.log(
        `B10 edge cost run ${r + 1}: fiber ${cost.fiberMs.toFixed(3)} ms/step (engine alone on a MemoryStore ${cost.memoryMs.toFixed(3)}), raw insert ${cost.rawMs.toFixed(4)} ms/row (${cost.rowBytes} B rows), ${cost.ratio.toFixed(2)}x; round trip ${cost.emptyMs.toFixed(1)} ms; on the object's clock ${cost.fiberClockMs.toFixed(3)} vs ${cost.rawClockMs.toFixed(4)} ms; ${cost.statementsPerStep.toFixed(1)} SQL statements per step`,
      );
    }
    return steps.map((s, r) => ({ steps: s, work: work[r], handoff: handoffs[r], cost: costs[r] }));
  } finally {
    await edge.close();
  }
}

/**
 * `env.runs.b10` runs of the `b10-steps` job with `params` (the three lanes, taking turns), each
 * logged as `B10 <label> run N` with its per-step figures (and `detail` after the ratios).
 */
async function b10StepRuns(env, label, params, detail = () => "") {
  const runs = [];
  for (let r = 0; r < env.runs.b10; r++) {
    const job = await runJob(env.page, "b10-steps", params);
    if (job.errors.length > 0) throw new Error(`B10 ${label}: ${job.errors.join("; ")}`);
    runs.push(job);
    env.log(
      `B10 ${label} run ${r + 1}: plain ${job.plainMs.toFixed(2)}, Rule A ${job.ruleAMs.toFixed(2)} (${job.ruleARatio.toFixed(2)}x), awaitStart false ${job.noAwaitMs.toFixed(2)} ms/step (${job.noAwaitRatio.toFixed(2)}x)${detail(job)}; shipments per step ${job.shipmentsPerStep.ruleA.toFixed(2)} / ${job.shipmentsPerStep.noAwait.toFixed(2)}; edge round trip ${job.edgeRoundTripMs.toFixed(1)} ms, a shipment's ${job.shipmentRoundTripMs.ruleA.toFixed(1)} / ${job.shipmentRoundTripMs.noAwait.toFixed(1)} ms`,
    );
  }
  return runs;
}

/** How long each step of B10's second row waits (a short tool call; a model call takes seconds). */
const B10_WORK_MS = 50;

/** B10's home lease: short, so a handoff run takes seconds. */
const B10_LEASE_MS = 3_000;

/**
 * One handoff: a replicated fiber stepping every 50 ms in a dedicated worker; once the arbiter
 * holds a few steps the worker is terminated (no more shipments), the replica is read once the
 * shipments in flight have landed (its `home.until` is the lease's end, on the arbiter's clock),
 * then polled until the first chunk past the browser's last one: that chunk's `at`, on the same
 * clock, minus the lease's end is the handoff.
 */
async function b10Handoff(env, edge, leaseMs) {
  const page = env.page;
  const id = await page.evaluate(
    ([j, p]) => window.bench.startJob(j, p),
    ["b10-handoff", { steps: 200, stepMs: 50, before: 5, edgeUrl: edge.prefixUrl, leaseMs }],
  );
  const message = await page.evaluate((i) => window.bench.nextOf(i), id);
  if (message.type !== "checkpoint") throw new Error(`B10 handoff job: ${message.message ?? message.type}`);
  const { fiberId } = message.data;
  await page.evaluate((i) => window.bench.killJob(i), id);
  const killedAt = Date.now();
  await sleep(300);
  const replicaUrl = (after) =>
    `${edge.prefixUrl}/fibers/${encodeURIComponent(fiberId)}/replica?after=${after}`;
  const read = async (after) => {
    const response = await fetch(replicaUrl(after));
    if (!response.ok) throw new Error(`B10 replica read: ${response.status} ${await response.text()}`);
    return await response.json();
  };
  const atKill = await read(0);
  const lease = atKill.record.home;
  if (!lease || lease.home === "edge")
    throw new Error(`B10 handoff: the edge held the fiber already (${JSON.stringify(lease)})`);
  const lastSeq = Math.max(0, ...atKill.chunks.map((c) => c.seq));
  const deadline = Date.now() + leaseMs + 15_000;
  // The first chunk past the browser's last (the edge's `fiber.recovered`), then the first
  // `progress` chunk of a step the edge ran (one 50 ms step later, at the least).
  let first;
  for (;;) {
    const now = await read(lastSeq);
    first ??= now.chunks[0];
    const step = now.chunks.find((c) => c.type === "progress" && c.data.where === "edge");
    if (first && step) {
      return {
        fiberId,
        browserSteps: atKill.chunks.filter((c) => c.type === "progress").length,
        leaseUntil: lease.until,
        leaseAfterKillMs: lease.until - killedAt,
        handoffMs: first.at - lease.until,
        firstChunk: first.type,
        firstStepMs: step.at - lease.until,
        edgeHome: now.record.home?.home,
      };
    }
    if (Date.now() > deadline)
      throw new Error(`B10 handoff: no edge chunk ${leaseMs + 15_000} ms after the kill`);
    await sleep(10);
  }
}

/**
 * The edge's own cost: in one Durable Object, `n` sequential steps of a fiber on the host's
 * SqliteStore, the same on a MemoryStore (the engine alone), `10 n` raw single-row inserts of the same row size (ten times as many, so the
 * request's round trip, a few ms that wander by tens on a loaded machine, stays small next to
 * them), and an empty request, alternated three times. Each is timed from Node: the object
 * answers only once its writes are durable (the output gate), and that last flush is part of
 * the cost. The empty request's round trip is taken off both; the object's own clock (which
 * misses the last flush) is kept beside them.
 */
async function b10EdgeCost(edge, n, object) {
  const call = async (kind, count) => {
    const t0 = performance.now();
    const response = await fetch(`${edge.url}/bench/cost?kind=${kind}&n=${count}&object=${object}`, {
      method: "POST",
    });
    const body = await response.json();
    if (!response.ok) throw new Error(`B10 edge cost ${kind}: ${response.status} ${JSON.stringify(body)}`);
    return { ms: performance.now() - t0, body };
  };
  const counts = { fiber: n, memory: n, raw: 10 * n, none: 0 };
  // Warm the object and both paths once (the object's start, SQLite's first writes, the tables).
  await call("none", 0);
  await call("fiber", n);
  await call("memory", n);
  await call("raw", n);
  const total = { fiber: 0, memory: 0, raw: 0, none: 0 };
  const clock = { fiber: 0, memory: 0, raw: 0 };
  let rowBytes = 0;
  let statementsPerStep = 0;
  for (let i = 0; i < 3; i++) {
    for (const kind of ["fiber", "memory", "raw", "none"]) {
      const { ms, body } = await call(kind, counts[kind]);
      total[kind] += ms;
      if (kind !== "none") clock[kind] += body.clockMs;
      if (body.rowBytes) rowBytes = body.rowBytes;
      if (body.statementsPerStep) statementsPerStep = body.statementsPerStep;
    }
  }
  const perOp = (kind) => Math.max(0, total[kind] - total.none) / 3 / counts[kind];
  const fiberMs = perOp("fiber");
  const rawMs = perOp("raw");
  return {
    fiberMs,
    rawMs,
    // The engine alone (the same fiber on a MemoryStore in the same object): the floor under
    // the storage, which no store can take away.
    memoryMs: perOp("memory"),
    ratio: fiberMs / rawMs,
    emptyMs: total.none / 3,
    fiberClockMs: clock.fiber / 3 / counts.fiber,
    rawClockMs: clock.raw / 3 / counts.raw,
    rowBytes,
    statementsPerStep,
    n,
  };
}

/**
 * SIM: the deterministic simulator's throughput (`npm run simulate`, README "Deterministic
 * simulation"), in schedules per minute as its summary line prints them, on its default store
 * (`MemoryStore`) and job count, over the same seeds each run. `bench/run.mjs` runs it before the
 * browser starts. A violation fails the row: the figure of a simulator that finds a broken
 * schedule is not a throughput.
 */
export async function sim(env) {
  // The same seeds in every run: a schedule's cost depends on its seed, so runs compare.
  const seeds = env.quick ? 1000 : 4000;
  const from = 1;
  const script = join(repoRoot, "scripts", "simulate.mjs");
  const runs = [];
  for (let r = 0; r < env.runs.sim; r++) {
    const out = await new Promise((resolve, reject) => {
      execFile(
        process.execPath,
        [script, "--seeds", String(seeds), "--from", String(from)],
        { cwd: repoRoot, maxBuffer: 16 * 2 ** 20 },
        (error, stdout, stderr) =>
          error
            ? reject(
                new Error(`npm run simulate -- --seeds ${seeds} --from ${from} failed:\n${stdout}${stderr}`),
              )
            : resolve(stdout),
      );
    });
    const rate = /rate: (\d+) schedules\/min \(([\d.]+) s\)/.exec(out);
    const summary = /schedules: (\d+), violations: (\d+)/.exec(out);
    if (rate === null || summary === null) throw new Error(`unexpected simulator output:\n${out}`);
    const run = {
      seeds,
      from,
      schedulesPerMin: Number(rate[1]),
      seconds: Number(rate[2]),
      violations: Number(summary[2]),
      jobs: Math.max(1, Math.min(4, availableParallelism())),
    };
    runs.push(run);
    env.log(`SIM run ${r + 1}: ${run.schedulesPerMin} schedules/min, seeds ${from}..${from + seeds - 1}`);
  }
  return runs;
}
