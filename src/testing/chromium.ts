/**
 * Where the kit finds a Chromium and the flags it starts it with. Node-only; used by
 * `browser-process.ts` and by anyone who spawns Chromium for a lifetime test of their own.
 */

import { accessSync, constants } from "node:fs";
import { createRequire } from "node:module";

/**
 * Flags that let Chromium run as root in a container and keep it off the network (no sandbox, no
 * GPU, no QUIC, no first-run UI, no background traffic, no component updates, no sync).
 */
export const CHROMIUM_ARGS: readonly string[] = Object.freeze([
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
]);

/** System locations tried, in order, when `CHROMIUM_PATH` is not set. */
export const SYSTEM_CHROMIUM_PATHS: readonly string[] = Object.freeze([
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
]);

/**
 * The Chromium executable: `CHROMIUM_PATH`, else a system Chromium, else the browser Playwright
 * downloaded (`npx playwright install chromium`).
 *
 * Throws when none is found, or when `CHROMIUM_PATH` names no executable file (a typo there
 * should not silently pick another browser).
 *
 * @example
 * spawn(findChromium(), ["--headless", ...CHROMIUM_ARGS, url]);
 */
export function findChromium(): string {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new Error(`CHROMIUM_PATH is set to ${fromEnv}, which is not an executable file.`);
  }
  for (const candidate of [...SYSTEM_CHROMIUM_PATHS, playwrightChromium()])
    if (candidate && isExecutable(candidate)) return candidate;
  throw new Error(
    "No Chromium found: set CHROMIUM_PATH, install chromium (Debian: apt-get install -y chromium), or run `npx playwright install chromium`.",
  );
}

/** Playwright's downloaded Chromium, when playwright-core and that browser are installed. */
function playwrightChromium(): string | undefined {
  try {
    // require: synchronous, and no error at import time for users without Playwright.
    const { chromium } = createRequire(import.meta.url)("playwright-core") as {
      chromium: { executablePath(): string };
    };
    return chromium.executablePath();
  } catch {
    return undefined;
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
