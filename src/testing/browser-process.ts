/**
 * A Chromium process the test owns: launched on a persistent profile with a known PID, killed
 * like a crash (SIGKILL of its process group), relaunched on the same profile, closed, and its
 * Service Workers stopped over CDP. Node-only. `AppSession` builds on it; the e2e specs use it.
 *
 * Why not `launchPersistentContext`: Playwright exposes no PID for it (microsoft/playwright#14910),
 * and a crash test must kill the real browser. So Chromium is spawned here with
 * `--remote-debugging-port=0` and `--user-data-dir`, and Playwright attaches with `connectOverCDP`;
 * the profile's default context is persistent (IndexedDB and the worker registration on disk).
 */

import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, readdirSync, readFileSync } from "node:fs";
import type { Browser, BrowserContext, Page } from "@playwright/test";
import { CHROMIUM_ARGS, findChromium } from "./chromium";

/** Options of {@link launchBrowser}. */
export interface LaunchBrowserOptions {
  /** The profile directory; reuse it to relaunch on the same IndexedDB and registrations. */
  userDataDir: string;
  /** The Chromium binary (default: {@link findChromium}). */
  executablePath?: string;
  /** Extra command-line flags, after {@link CHROMIUM_ARGS}. */
  args?: readonly string[];
  /** Headless (default true). */
  headless?: boolean;
  /** How long to wait for the DevTools endpoint (default 30 s). */
  timeoutMs?: number;
}

/** A Chromium process this module started, with Playwright attached to it. */
export interface LaunchedBrowser {
  readonly browser: Browser;
  /** The profile's persistent default context. */
  readonly context: BrowserContext;
  /** The browser's PID, also its process group id. */
  readonly pid: number;
  readonly process: ChildProcess;
  readonly userDataDir: string;
  readonly wsEndpoint: string;
  /** Settles when the process has exited (with its exit code, or null after a signal). */
  readonly exited: Promise<number | null>;
  /** The options it was launched with (for {@link relaunchBrowser}). */
  readonly options: LaunchBrowserOptions;
}

/**
 * Starts Chromium on `userDataDir` in its own process group and attaches Playwright over CDP.
 *
 * @example
 * const b = await launchBrowser({ userDataDir: "/tmp/profile" });
 * const page = await b.context.newPage();
 */
export async function launchBrowser(options: LaunchBrowserOptions): Promise<LaunchedBrowser> {
  // FIBERLINE_CHROMIUM_LOG=<file>: Chromium's own log, appended there (for storage failures
  // after a crash, which only Chromium can explain).
  const chromiumLog = process.env.FIBERLINE_CHROMIUM_LOG;
  const executable = options.executablePath ?? findChromium();
  const timeoutMs = options.timeoutMs ?? 30_000;
  const args = [
    ...(options.headless === false ? [] : ["--headless"]),
    "--remote-debugging-port=0",
    `--user-data-dir=${options.userDataDir}`,
    ...CHROMIUM_ARGS,
    ...(chromiumLog ? ["--enable-logging=stderr", "--v=0"] : []),
    ...(options.args ?? []),
    "about:blank",
  ];
  // detached: its own process group, so a crash takes the renderers and helpers with it.
  const child = spawn(executable, args, { detached: true, stdio: ["ignore", "ignore", "pipe"] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`Could not start ${executable}.`);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let stderr = "";
  const wsEndpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      killGroup(pid, "SIGKILL");
      reject(new Error(`Chromium printed no DevTools endpoint within ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.stderr?.on("data", (data: Buffer) => {
      if (chromiumLog) appendFileSync(chromiumLog, data);
      stderr = (stderr + data.toString()).slice(-20_000);
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`Chromium exited (code ${code}) before it was ready:\n${stderr}`));
    });
  });
  // Keep draining stderr so Chromium never blocks on a full pipe.
  child.stderr?.resume();
  try {
    // Loaded here, not at import: `crashableStore` users need no Playwright installed.
    const { chromium } = await import("@playwright/test");
    const browser = await chromium.connectOverCDP(wsEndpoint, { timeout: timeoutMs });
    const context = browser.contexts()[0];
    if (!context) throw new Error("Chromium has no default context to attach to.");
    return {
      browser,
      context,
      pid,
      process: child,
      userDataDir: options.userDataDir,
      wsEndpoint,
      exited,
      options,
    };
  } catch (error) {
    killGroup(pid, "SIGKILL");
    throw error;
  }
}

/**
 * Kills the browser like a crash: SIGKILL to its whole process group (browser, renderers, the
 * Service Worker's process, helpers), no shutdown, no flush. Resolves once the browser process
 * has exited and no process of its group is left.
 *
 * Failure semantics: what the browser had committed to disk stays (IndexedDB transactions that
 * completed); anything in flight is lost, as in a real crash. Rejects if the group outlives
 * `timeoutMs` (default 15 s).
 */
export async function crashBrowser(target: LaunchedBrowser, timeoutMs = 15_000): Promise<void> {
  killGroup(target.pid, "SIGKILL");
  await target.exited;
  await waitForGroupGone(target.pid, timeoutMs);
}

/** Launches Chromium again on the profile of `previous` (after a crash or a close). */
export async function relaunchBrowser(
  previous: LaunchedBrowser,
  overrides: Partial<Omit<LaunchBrowserOptions, "userDataDir">> = {},
): Promise<LaunchedBrowser> {
  return await launchBrowser({ ...previous.options, ...overrides, userDataDir: previous.userDataDir });
}

/**
 * Closes the browser the way a user quitting would (`Browser.close` over CDP, which flushes the
 * profile); kills it if it has not exited within `timeoutMs`.
 */
export async function closeBrowser(target: LaunchedBrowser, timeoutMs = 10_000): Promise<void> {
  if (target.process.exitCode === null && target.process.signalCode === null) {
    try {
      const session = await target.browser.newBrowserCDPSession();
      await session.send("Browser.close").catch(() => {});
    } catch {
      // Already disconnected: fall through to the kill.
    }
    const timer = setTimeout(() => killGroup(target.pid, "SIGKILL"), timeoutMs);
    await target.exited;
    clearTimeout(timer);
  }
  // Helpers of the group that outlive the browser process.
  killGroup(target.pid, "SIGKILL");
  await waitForGroupGone(target.pid, timeoutMs).catch(() => {});
}

/**
 * Stops every Service Worker of the browser at once (`ServiceWorker.enable`, then
 * `ServiceWorker.stopAllWorkers`), as Chromium does to an idle worker: in-flight fetches from it
 * fail with a network error, and the next event starts a new instance. `page` is any page of the
 * browser (the CDP session is opened on it).
 */
export async function stopServiceWorkers(page: Page): Promise<void> {
  const session = await page.context().newCDPSession(page);
  try {
    await session.send("ServiceWorker.enable");
    await session.send("ServiceWorker.stopAllWorkers");
  } finally {
    await session.detach().catch(() => {});
  }
}

/** Whether any process of group `pgid` is still alive (zombies waiting to be reaped do not count). */
export function processGroupAlive(pgid: number): boolean {
  if (process.platform === "linux") {
    let entries: string[];
    try {
      entries = readdirSync("/proc");
    } catch {
      return signalGroup(pgid);
    }
    for (const entry of entries) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      } catch {
        continue;
      }
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") return true;
    }
    return false;
  }
  return signalGroup(pgid);
}

async function waitForGroupGone(pgid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (processGroupAlive(pgid)) {
    if (Date.now() > deadline)
      throw new Error(
        `Processes of Chromium's group ${pgid} were still alive ${timeoutMs} ms after SIGKILL.`,
      );
    killGroup(pgid, "SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function signalGroup(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}
