#!/usr/bin/env node
/**
 * Finds a Chromium binary for Vitest browser mode and Playwright: `CHROMIUM_PATH`, a system
 * Chromium (machines where no browser can be downloaded use Debian's), else Playwright's own.
 * `ensureChromium()` goes one step further for `npm test` on a fresh machine: with no Chromium at
 * all it runs `npx playwright install chromium` itself and looks again. Used by `scripts/test.mjs`,
 * `vitest.config.ts` and `playwright.config.ts`; run directly (`node scripts/find-chromium.mjs`)
 * it prints the path (`--install` to download one if none is found).
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** Launch flags that work as root and in CI (no sandbox, no GPU, no background traffic). */
export const chromiumArgs = Object.freeze([
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]);

/** System locations checked in order when `CHROMIUM_PATH` is not set. */
export const systemChromiumPaths = Object.freeze([
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
]);

export const noChromiumMessage =
  "No Chromium found. Run `npx playwright install chromium` (or on Debian: `sudo apt-get install -y chromium`), or set CHROMIUM_PATH.";

/**
 * Returns the path of a Chromium executable: `CHROMIUM_PATH`, else a system Chromium, else the
 * browser Playwright downloaded (`npx playwright install chromium`).
 *
 * Synchronous so that config files can call it at top level.
 *
 * @param {{ systemPaths?: readonly string[] }} [options] where to look for a system Chromium
 * @returns {string}
 * @throws {Error} when none is found, with the command that fixes it; when `CHROMIUM_PATH` is set
 *   but not an executable file (a typo there should not silently pick another browser).
 */
export function findChromium({ systemPaths = systemChromiumPaths } = {}) {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new Error(
      `CHROMIUM_PATH is set to ${fromEnv}, which is not an executable file. ${noChromiumMessage}`,
    );
  }
  for (const candidate of systemPaths) {
    if (isExecutable(candidate)) return candidate;
  }
  const bundled = playwrightChromium();
  if (bundled) return bundled;
  throw new Error(noChromiumMessage);
}

/**
 * `findChromium()`, and where it finds none, `npx playwright install chromium` (Playwright's own
 * build, about 170 MB, downloaded once into its cache) and a second look, so that `npm install`
 * and `npm test` are the only commands a new machine needs.
 *
 * Failure semantics: with `CHROMIUM_PATH` set (a typo should not start a download) or
 * `FIBERLINE_NO_BROWSER_DOWNLOAD=1`, nothing is downloaded. Where the download fails (no network,
 * a proxy, an unsupported OS), it throws the same message as `findChromium()`, saying the
 * download was tried and how it ended.
 *
 * @param {{ systemPaths?: readonly string[], install?: () => Promise<number>, log?: (line: string) => void }} [options]
 *   `install` runs the download and resolves with its exit code (tests pass their own).
 * @returns {Promise<string>}
 */
export async function ensureChromium({
  systemPaths = systemChromiumPaths,
  install = installPlaywrightChromium,
  log = (line) => console.log(line),
} = {}) {
  try {
    return findChromium({ systemPaths });
  } catch (error) {
    if (process.env.CHROMIUM_PATH || process.env.FIBERLINE_NO_BROWSER_DOWNLOAD) throw error;
  }
  log("No Chromium found: running `npx playwright install chromium` (once; about 170 MB)...");
  let outcome;
  try {
    const code = await install();
    outcome = code === 0 ? "finished, yet no browser was found" : `failed (exit code ${code})`;
  } catch (error) {
    outcome = `could not start (${error instanceof Error ? error.message : String(error)})`;
  }
  try {
    return findChromium({ systemPaths });
  } catch {
    throw new Error(
      `${noChromiumMessage} \`npx playwright install chromium\` was tried and ${outcome}: this machine may not reach Playwright's download server.`,
    );
  }
}

/** Runs Playwright's own `playwright install chromium`, output shown; resolves with its exit code. */
function installPlaywrightChromium() {
  const cli = fileURLToPath(new URL("../node_modules/.bin/playwright", import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(cli, ["install", "chromium"], { stdio: "inherit" });
    child.on("error", reject);
    child.on("close", (code) => resolve(code ?? 1));
  });
}

/** Playwright's own downloaded Chromium, or undefined when playwright-core or the browser is absent. */
function playwrightChromium() {
  try {
    // require, not import(): playwright-core is CommonJS and findChromium stays synchronous.
    const { chromium } = createRequire(import.meta.url)("playwright-core");
    const path = chromium.executablePath();
    return path && isExecutable(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

/** @param {string} path */
function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    console.log(process.argv.includes("--install") ? await ensureChromium() : findChromium());
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  }
}
