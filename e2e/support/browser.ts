/**
 * Browser control for crash and lifetime tests: launch Chromium on a persistent profile with a
 * known PID, SIGKILL it, relaunch it on the same profile, close it, and stop its Service Workers
 * over CDP. Self-contained (Playwright and Node only) so it can move to `fiberline/testing`.
 *
 * Why not `launchPersistentContext`: Playwright exposes no PID for it (microsoft/playwright#14910),
 * and a crash test must kill the real browser process. So Chromium is spawned here with
 * `--remote-debugging-port=0` and `--user-data-dir`, and Playwright attaches with `connectOverCDP`;
 * the profile's default context is persistent (IndexedDB and the worker registration on disk).
 */

import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { type Browser, type BrowserContext, chromium, type Page } from "@playwright/test";

/** Flags that let Chromium run as root in a container and keep it off the network. */
export const CHROMIUM_ARGS: readonly string[] = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-features=Translate,MediaRouter,OptimizationHints",
  "--password-store=basic",
  "--use-mock-keychain",
];

/** Options of {@link launchBrowser}. */
export interface LaunchBrowserOptions {
  /** The profile directory; reuse it to relaunch on the same IndexedDB and registrations. */
  userDataDir: string;
  /** The Chromium binary (default: `CHROMIUM_PATH`, else a system Chromium, else Playwright's). */
  executablePath?: string;
  /** Extra command-line flags. */
  args?: readonly string[];
  /** Headless (default true). */
  headless?: boolean;
  /** How long to wait for the DevTools endpoint (default 20 s). */
  timeoutMs?: number;
}

/** A Chromium process this module started, with Playwright attached to it. */
export interface LaunchedBrowser {
  readonly browser: Browser;
  /** The profile's persistent default context. */
  readonly context: BrowserContext;
  readonly pid: number;
  readonly process: ChildProcess;
  readonly userDataDir: string;
  readonly wsEndpoint: string;
  /** Settles when the process has exited (with its exit code, or null after a signal). */
  readonly exited: Promise<number | null>;
  /** The options it was launched with (for `relaunchBrowser`). */
  readonly options: LaunchBrowserOptions;
}

/** The Chromium executable: `CHROMIUM_PATH`, else a system Chromium, else Playwright's own. */
export function findChromium(): string {
  const candidates = [
    process.env.CHROMIUM_PATH,
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    safe(() => chromium.executablePath()),
  ];
  for (const candidate of candidates) if (candidate && isExecutable(candidate)) return candidate;
  throw new Error(
    "No Chromium found: set CHROMIUM_PATH, install chromium, or run `npx playwright install chromium`.",
  );
}

/**
 * Starts Chromium on `userDataDir` in its own process group and attaches Playwright over CDP.
 *
 * @example
 * const b = await launchBrowser({ userDataDir: "/tmp/profile" });
 * const page = await b.context.newPage();
 */
export async function launchBrowser(options: LaunchBrowserOptions): Promise<LaunchedBrowser> {
  const executable = options.executablePath ?? findChromium();
  const args = [
    ...(options.headless === false ? [] : ["--headless"]),
    "--remote-debugging-port=0",
    `--user-data-dir=${options.userDataDir}`,
    ...CHROMIUM_ARGS,
    ...(options.args ?? []),
    "about:blank",
  ];
  // detached: its own process group, so a crash kills the renderers and helpers with it.
  const child = spawn(executable, args, { detached: true, stdio: ["ignore", "ignore", "pipe"] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`Could not start ${executable}.`);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let stderr = "";
  const wsEndpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `Chromium printed no DevTools endpoint within ${options.timeoutMs ?? 20_000} ms:\n${stderr}`,
          ),
        ),
      options.timeoutMs ?? 20_000,
    );
    child.stderr?.on("data", (data: Buffer) => {
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
  const browser = await chromium.connectOverCDP(wsEndpoint);
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
}

/**
 * Kills the browser like a crash: SIGKILL to its whole process group, no shutdown, no flush.
 * Resolves once the browser process has exited.
 */
export async function crashBrowser(target: LaunchedBrowser): Promise<void> {
  killGroup(target.pid, "SIGKILL");
  await target.exited;
}

/** Launches Chromium again on the profile of `previous` (after a crash or a close). */
export async function relaunchBrowser(
  previous: LaunchedBrowser,
  overrides: Partial<LaunchBrowserOptions> = {},
): Promise<LaunchedBrowser> {
  return await launchBrowser({ ...previous.options, ...overrides, userDataDir: previous.userDataDir });
}

/**
 * Closes the browser the way a user quitting would (`Browser.close` over CDP, which flushes the
 * profile); kills it if it has not exited within `timeoutMs`.
 */
export async function closeBrowser(target: LaunchedBrowser, timeoutMs = 10_000): Promise<void> {
  if (target.process.exitCode !== null || target.process.signalCode !== null) return;
  try {
    const session = await target.browser.newBrowserCDPSession();
    await session.send("Browser.close").catch(() => {});
  } catch {
    // Already disconnected: fall through to the kill.
  }
  const timer = setTimeout(() => killGroup(target.pid, "SIGKILL"), timeoutMs);
  await target.exited;
  clearTimeout(timer);
  // Helpers of the group that outlive the browser process.
  killGroup(target.pid, "SIGKILL");
}

/**
 * Stops every Service Worker of the browser at once, as Chromium does to an idle or
 * misbehaving worker: in-flight fetches from it fail with a network error, and the next event
 * starts a new instance. `page` is any page of the browser (the CDP session is opened on it).
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

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function safe<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
