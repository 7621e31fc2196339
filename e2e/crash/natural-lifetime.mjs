#!/usr/bin/env node
/**
 * `npm run test:lifetime [-- --running] [--port 5199]`: the natural-lifetime test. Playwright
 * attaches DevTools to Service Workers, which switches off Chromium's idle and event timeouts
 * (docs/testing.md, "Limits to know"), so this test spawns Chromium itself and never attaches to
 * the worker: it drives the demo page over that page's own DevTools socket only, closes every page
 * through the `/json/close` endpoint, and watches `/json/list` (a passive listing) until the
 * browser stops the worker by itself. Then it opens a page again and checks that the fiber resumed in a new worker
 * instance and completed, every chunk once and in order.
 *
 * Default (about a minute): `lab.ticker` sleeps durably (45 s) after 3 of 6 ticks. The worker has
 * nothing to run, so Chromium stops it at its idle timeout (~30 s) with the timer in its memory;
 * the new worker wakes the fiber when it is due.
 *
 * `--running` (about 6 minutes): a ticker that runs for 6 minutes. The host holds the start's
 * event open while the fiber runs (past the 30 s idle timeout), up to its 4-minute cap; then the
 * idle timeout stops the worker mid-run, and the reopened page finds the fiber recovered.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromiumArgs, findChromium } from "../../scripts/find-chromium.mjs";

// Node 20 has WebSocket behind a flag (Node 22 has it by default): run again with the flag.
if (typeof globalThis.WebSocket !== "function") {
  const again = spawn(process.execPath, ["--experimental-websocket", ...process.argv.slice(1)], {
    stdio: "inherit",
  });
  again.on("close", (code) => process.exit(code ?? 1));
} else {
  await main();
}

async function main() {
  const { values } = parseArgs({
    options: { running: { type: "boolean", default: false }, port: { type: "string", default: "5199" } },
  });
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const origin = `http://localhost:${values.port}`;
  // Absolute: vite resolves a relative outDir against the demo's root (app/).
  const outDir = join(root, "dist", "lifetime-app");
  const profile = mkdtempSync(join(tmpdir(), "fiberline-lifetime-"));
  const children = [];
  const say = (line) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
  const cleanUp = () => {
    for (const child of children) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    rmSync(profile, { recursive: true, force: true });
  };
  process.on("SIGINT", () => {
    cleanUp();
    process.exit(130);
  });
  try {
    say(`building the demo into dist/lifetime-app and serving it at ${origin}`);
    await run("npx", ["vite", "build", "--outDir", outDir, "--emptyOutDir", "--logLevel", "warn"], root);
    children.push(
      spawn("npx", ["vite", "preview", "--outDir", outDir, "--port", values.port, "--strictPort"], {
        cwd: root,
        detached: true,
        stdio: "ignore",
      }),
    );
    await until(
      async () => (await fetch(`${origin}/manifest.webmanifest`).catch(() => null))?.ok === true,
      60_000,
      "the demo server",
    );

    const chromium = spawn(
      findChromium(),
      [
        "--headless",
        "--remote-debugging-port=0",
        `--user-data-dir=${profile}`,
        ...chromiumArgs,
        "about:blank",
      ],
      { detached: true, stdio: ["ignore", "ignore", "pipe"] },
    );
    children.push(chromium);
    const devtools = await new Promise((resolve, reject) => {
      let stderr = "";
      const timer = setTimeout(() => reject(new Error(`Chromium did not start:\n${stderr}`)), 30_000);
      chromium.stderr.on("data", (data) => {
        stderr += data;
        const match = /DevTools listening on ws:\/\/([^/]+)\//.exec(stderr);
        if (match) {
          clearTimeout(timer);
          resolve(`http://${match[1]}`);
        }
      });
    });
    chromium.stderr.resume();
    const targets = async () => await (await fetch(`${devtools}/json/list`)).json();
    const workers = async () =>
      (await targets()).filter((t) => t.type === "service_worker" && t.url.startsWith(origin));

    // ---- 1. a page starts a long-running fiber and a sleeping one -----------------------------
    let page = await openPage(devtools, `${origin}/`);
    const first = await page.evaluate("window.fiberline.heartbeat()");
    const subjects = values.running
      ? [{ name: "running", input: { count: 360, intervalMs: 1_000 }, status: "running" }]
      : [
          {
            name: "sleeping",
            input: { count: 6, intervalMs: 200, sleepAfter: 3, sleepMs: 45_000 },
            status: "sleeping",
          },
        ];
    for (const subject of subjects) {
      const started = await page.evaluate(
        `window.fiberline.start("lab.ticker", ${JSON.stringify(subject.input)})`,
      );
      subject.id = started.id;
      say(`started lab.ticker ${subject.id} ${JSON.stringify(subject.input)} in worker ${first.instanceId}`);
    }
    for (const subject of subjects) {
      const get = `window.fiberline.get(${JSON.stringify(subject.id)})`;
      await until(
        async () => (await page.evaluate(get)).status === subject.status,
        30_000,
        `${subject.name} fiber`,
      );
    }
    if ((await workers()).length === 0)
      throw new Error("No Service Worker target is listed while the page is open.");

    // ---- 2. every page closes; the browser stops the idle worker by itself ----------------------
    page.close();
    for (const target of await targets())
      if (target.type === "page") await fetch(`${devtools}/json/close/${target.id}`);
    const closedAt = Date.now();
    say("every page closed; waiting for Chromium to stop the worker");
    await until(async () => (await workers()).length === 0, 420_000, "the worker to stop");
    const stoppedAt = Date.now();
    const stoppedAfter = Math.round((stoppedAt - closedAt) / 1000);
    say(`the worker was stopped by the browser ${stoppedAfter} s after the last page closed`);

    // ---- 3. a page opens again: the fibers resume in a new worker and complete ----------------
    page = await openPage(devtools, `${origin}/`);
    const second = await page.evaluate("window.fiberline.heartbeat()");
    say(`a page is open again; worker ${second.instanceId}`);
    const problems = [];
    if (second.instanceId === first.instanceId)
      problems.push("the worker instance is the same: it was never stopped");
    const summaries = [];
    for (const subject of subjects) {
      const id = JSON.stringify(subject.id);
      const events = await page.evaluate(
        `(async () => { const out = []; for await (const e of window.fiberline.events(${id}, { after: 0 })) out.push(e); return out; })()`,
        values.running ? 420_000 : 120_000,
      );
      const info = await page.evaluate(`window.fiberline.inspect(${id})`);
      const problem = (text) => problems.push(`${subject.name} fiber ${subject.id}: ${text}`);
      const seqs = events.map((e) => e.seq);
      if (seqs.some((seq, i) => seq !== i + 1)) problem(`seqs are not 1..N: ${seqs.join(",")}`);
      const ticks = events.filter((e) => e.type === "tick");
      const want = Array.from({ length: subject.input.count }, (_, i) => i).join(",");
      if (ticks.map((e) => e.data.i).join(",") !== want)
        problem(`ticks ${ticks.map((e) => e.data.i).join(",")}`);
      const end = events.at(-1);
      if (end?.type !== "fiber.end" || end.data.status !== "completed")
        problem(`ended ${JSON.stringify(end)}`);
      if (subject.name === "running") {
        // Kept running with no page open past the idle timeout, then cut off by the stop.
        if (!events.some((e) => e.type === "fiber.recovered"))
          problem("no fiber.recovered: it was never cut off");
        if (!ticks.some((e) => e.at > closedAt + 60_000 && e.at < stoppedAt))
          problem("the worker was not kept alive for the running fiber once no page was open");
        if (!ticks.some((e) => e.at > stoppedAt)) problem("it did not tick after the worker stopped");
      } else {
        const woke = ticks.find((e) => e.data.i === subject.input.sleepAfter);
        if (!woke || woke.at < stoppedAt) problem("it woke before the worker was stopped");
        if (info.journal.find((e) => e.kind === "sleep")?.status !== "completed")
          problem("the sleep did not complete");
      }
      summaries.push(`${subject.name}: ${events.length} chunks, ${ticks.length} ticks`);
    }
    page.close();
    const summary = `${summaries.join("; ")}; worker stopped ${stoppedAfter} s after the last page closed`;
    if (problems.length > 0) {
      console.log(`lifetime FAILED (${summary}):\n  ${problems.join("\n  ")}`);
      process.exitCode = 1;
    } else {
      console.log(
        `lifetime: the fiber resumed in a new worker instance and completed (${summary})\n1 passed, 0 failed`,
      );
    }
  } catch (error) {
    console.error(
      `lifetime FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
    process.exitCode = 1;
  } finally {
    cleanUp();
  }
}

/** Opens `url` in a new tab and attaches to that page's target only (never to the worker). */
async function openPage(devtools, url) {
  const target = await (await fetch(`${devtools}/json/new?${url}`, { method: "PUT" })).json();
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`Could not attach to the page ${url}`));
  });
  let next = 0;
  const pending = new Map();
  socket.onmessage = (message) => {
    const reply = JSON.parse(String(message.data));
    pending.get(reply.id)?.(reply);
    pending.delete(reply.id);
  };
  const send = (method, params, timeoutMs = 30_000) =>
    new Promise((resolve, reject) => {
      const id = ++next;
      const timer = setTimeout(() => reject(new Error(`${method} timed out`)), timeoutMs);
      pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      socket.send(JSON.stringify({ id, method, params }));
    });
  const page = {
    /** Evaluates `expression` in the page, awaiting a promise; returns its value. */
    async evaluate(expression, timeoutMs = 30_000) {
      const reply = await send(
        "Runtime.evaluate",
        { expression, awaitPromise: true, returnByValue: true },
        timeoutMs,
      );
      const failure = reply.error?.message ?? reply.result?.exceptionDetails?.exception?.description;
      if (failure) throw new Error(`${expression.slice(0, 80)}: ${failure}`);
      return reply.result.result.value;
    },
    close() {
      socket.close();
    },
  };
  await until(
    async () => (await page.evaluate("window.fiberline !== undefined").catch(() => false)) === true,
    30_000,
    "window.fiberline",
  );
  return page;
}

function run(command, args, cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: "inherit" });
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} exited ${code}`)),
    );
  });
}

async function until(test, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await test()) return;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}.`);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}
