#!/usr/bin/env node
/**
 * Finds a Chromium binary for Vitest browser mode and Playwright on machines where no browser can
 * be downloaded (see PLATFORM.md). Used by `scripts/test.mjs`, `vitest.config.ts` and
 * `playwright.config.ts`; run directly (`node scripts/find-chromium.mjs`) it prints the path.
 */
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
 * @returns {string}
 * @throws {Error} when none is found, with the command that fixes it; when `CHROMIUM_PATH` is set
 *   but not an executable file (a typo there should not silently pick another browser).
 */
export function findChromium() {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new Error(
      `CHROMIUM_PATH is set to ${fromEnv}, which is not an executable file. ${noChromiumMessage}`,
    );
  }
  for (const candidate of systemChromiumPaths) {
    if (isExecutable(candidate)) return candidate;
  }
  const bundled = playwrightChromium();
  if (bundled) return bundled;
  throw new Error(noChromiumMessage);
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
    console.log(findChromium());
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  }
}
