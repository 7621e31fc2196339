#!/usr/bin/env node
/**
 * `npm run test:lifetime [-- --running] [--port 5199]`: the natural-lifetime test. Playwright
 * attaches DevTools to Service Workers, which switches off Chromium's idle and event timeouts
 * (PLATFORM.md), so this test spawns Chromium itself and never attaches to the worker: it drives
 * the demo page over that page's own DevTools socket only, closes every page through the
 * `/json/close` endpoint, and watches `/json/list` (a passive listing) until the browser stops the
 * idle worker by itself. Then it opens a page again and checks that the fiber resumed in a new
 * worker instance and completed, every chunk once and in order.
 *
 * Default: `lab.ticker` sleeps durably (45 s) after 3 of 6 ticks, so the worker has nothing to do
 * and Chromium stops it after its ~30 s idle timeout; the timer is due only after the stop.
 * `--running`: a ticker that runs for ~6 minutes; the host holds the worker's last event open up
 * to its 4-minute cap, then the idle timeout stops it mid-run (about 5 minutes in all).
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

    // ---- 1. a page starts a long fiber ----------------------------------------------------------
    let page = await openPage(devtools, `${origin}/`);
    const first = await page.evaluate("window.fiberline.heartbeat()");
    const input = values.running
      ? { count: 360, intervalMs: 1_000 }
      : { count: 6, intervalMs: 200, sleepAfter: 3, sleepMs: 45_000 };
    const { id } = await page.evaluate(`window.fiberline.start("lab.ticker", ${JSON.stringify(input)})`);
    say(`started lab.ticker ${id} ${JSON.stringify(input)} in worker ${first.instanceId}`);
    const want = values.running ? "running" : "sleeping";
    await until(
      async () => (await page.evaluate(`window.fiberline.get(${JSON.stringify(id)})`)).status === want,
      30_000,
      `status ${want}`,
    );
    if ((await workers()).length === 0)
      throw new Error("No Service Worker target is listed while the page is open.");

    // ---- 2. every page closes; the browser stops the idle worker by itself ----------------------
    page.close();
    for (const target of await targets())
      if (target.type === "page") await fetch(`${devtools}/json/close/${target.id}`);
    const closedAt = Date.now();
    say(`every page closed (fiber ${want}); waiting for Chromium to stop the worker`);
    await until(
      async () => (await workers()).length === 0,
      values.running ? 420_000 : 120_000,
      "the worker to stop",
    );
    const stoppedAt = Date.now();
    say(
      `the worker was stopped by the browser ${Math.round((stoppedAt - closedAt) / 1000)} s after the last page closed`,
    );

    // ---- 3. a page opens again: the fiber resumes in a new worker and completes ----------------
    page = await openPage(devtools, `${origin}/`);
    const second = await page.evaluate("window.fiberline.heartbeat()");
    say(`a page is open again; worker ${second.instanceId}`);
    const events = await page.evaluate(
      `(async () => { const out = []; for await (const e of window.fiberline.events(${JSON.stringify(id)}, { after: 0 })) out.push(e); return out; })()`,
      values.running ? 600_000 : 120_000,
    );
    const info = await page.evaluate(`window.fiberline.inspect(${JSON.stringify(id)})`);
    page.close();

    const problems = [];
    if (second.instanceId === first.instanceId)
      problems.push("the worker instance is the same: it was never stopped");
    const seqs = events.map((e) => e.seq);
    if (seqs.some((s, i) => s !== i + 1)) problems.push(`seqs are not 1..N: ${seqs.join(",")}`);
    const ticks = events.filter((e) => e.type === "tick").map((e) => e.data.i);
    if (ticks.join(",") !== Array.from({ length: input.count }, (_, i) => i).join(","))
      problems.push(`ticks ${ticks.join(",")}`);
    const end = events.at(-1);
    if (end?.type !== "fiber.end" || end.data.status !== "completed")
      problems.push(`ended ${JSON.stringify(end)}`);
    if (values.running) {
      if (!events.some((e) => e.type === "fiber.recovered"))
        problems.push("no fiber.recovered: it was never cut off");
    } else {
      const resumed = events.find((e) => e.type === "tick" && e.data.i === input.sleepAfter);
      if (!resumed || resumed.at < stoppedAt) problems.push("the fiber woke before the worker was stopped");
      if (info.journal.find((e) => e.kind === "sleep")?.status !== "completed")
        problems.push("the sleep did not complete");
    }
    const summary = `${events.length} chunks, ${ticks.length} ticks, worker stopped ${Math.round((stoppedAt - closedAt) / 1000)} s after the last page closed`;
    if (problems.length > 0) {
      console.log(`lifetime FAILED (${summary}):\n  ${problems.join("\n  ")}`);
      process.exitCode = 1;
    } else {
      console.log(
        `lifetime: fiber ${id} resumed in a new worker instance and completed; ${summary}; 1 passed, 0 failed`,
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
