/**
 * Launches headless Chromium ourselves on a persistent on-disk profile with a DevTools port, so
 * the harness knows the browser's PID (B5 SIGKILLs it and relaunches on the same profile) and
 * Playwright attaches with `connectOverCDP`. `newContext()` would be off the record (IndexedDB in
 * memory), which is not what users run.
 */

import { spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import { chromium } from "@playwright/test";
import { chromiumArgs, findChromium } from "../../scripts/find-chromium.mjs";

/**
 * Starts Chromium on `profile`, opening `urls` at start-up. Resolves with `{ pid, browser,
 * context, wsUrl, kill() }` once Playwright is attached; with `attach: false`, as soon as the
 * DevTools port answers, with no client attached (`browser` and `context` come with `attach()`).
 * Playwright's attach pauses every new target (pages, the Service Worker) until it has set up its
 * own domains on it, and reports every request: B5 times the relaunch as a user's browser does it.
 */
export async function launchChromium({ profile, cdpPort, urls = [], attach = true }) {
  if (await endpoint(cdpPort)) {
    throw new Error(
      `Port ${cdpPort} already has a DevTools endpoint: a browser left over from an earlier bench run? Stop it, or pass --cdp-port.`,
    );
  }
  const child = spawn(
    findChromium(),
    [
      ...chromiumArgs,
      ...(process.env.BENCH_CHROMIUM_LOG ? ["--enable-logging=stderr", "--v=1"] : []),
      "--headless=new",
      `--user-data-dir=${profile}`,
      `--remote-debugging-port=${cdpPort}`,
      "--remote-debugging-address=127.0.0.1",
      "--no-default-browser-check",
      "--disable-features=Translate,MediaRouter",
      ...urls,
    ],
    // Its own process group, so that cleanup can reach the renderers too.
    { detached: true, stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  // BENCH_CHROMIUM_LOG=<file>: append Chromium's own log (run with --enable-logging=stderr) there.
  const logFile = process.env.BENCH_CHROMIUM_LOG;
  child.stderr.on("data", (d) => {
    stderr = (stderr + d).slice(-4000);
    if (logFile) appendFileSync(logFile, d);
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const wsUrl = await waitForEndpoint(cdpPort, exited, () => stderr);
  launched.add(child.pid);
  void exited.then(() => launched.delete(child.pid));
  const handle = {
    pid: child.pid,
    /** Playwright's Browser, once attached. */
    browser: undefined,
    context: undefined,
    wsUrl,
    exited,
    /** Attaches Playwright (once). */
    async attach() {
      if (!handle.browser) {
        handle.browser = await connect(cdpPort);
        handle.context = handle.browser.contexts()[0];
      }
      return handle;
    },
    /**
     * SIGKILLs the browser process only (a crash), then the rest of its group once it is gone,
     * and resolves when no process of the group is left: a relaunch must not meet a helper of
     * the dead browser still holding the profile.
     */
    async crash() {
      process.kill(child.pid, "SIGKILL");
      await exited;
      killGroup(child.pid);
      await groupGone(child.pid);
    },
    async close() {
      await handle.browser?.close().catch(() => {});
      killGroup(child.pid, "SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      killGroup(child.pid);
    },
  };
  return attach ? await handle.attach() : handle;
}

/** `connectOverCDP`, retried: on a loaded machine the first attach now and then times out. */
async function connect(port) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await chromium.connectOverCDP(`http://127.0.0.1:${port}`, { timeout: 15_000 });
    } catch (error) {
      if (attempt >= 3) throw error;
    }
  }
}

/** Browsers this process started and that are still running, for `killLaunched`. */
const launched = new Set();

/** Kills every browser this process launched (on an interrupted run, so none is left behind). */
export function killLaunched() {
  for (const pid of launched) killGroup(pid);
  launched.clear();
}

async function endpoint(port) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/json/version`);
    return res.ok ? (await res.json()).webSocketDebuggerUrl : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves once process group `pid` has no member left (or after `timeoutMs`, with a warning). */
async function groupGone(pid, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(-pid, 0);
    } catch {
      return;
    }
    if (Date.now() > deadline) {
      console.warn(
        `[bench] processes of the killed browser (group ${pid}) still running after ${timeoutMs} ms`,
      );
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

function killGroup(pid, signal = "SIGKILL") {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

async function waitForEndpoint(port, exited, stderr) {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    // Exited (e.g. handed over to another browser on the same profile): not ours to drive.
    if (gone) throw new Error(`Chromium exited during start-up:\n${stderr()}`);
    const url = await endpoint(port);
    if (url) return url;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`Chromium did not open its DevTools port ${port}:\n${stderr()}`);
}
