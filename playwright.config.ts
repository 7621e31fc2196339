/**
 * Playwright e2e (`npm run test:e2e`): real Chromium against the fixture app in `e2e/fixture`,
 * built by its own Vite config and served by `vite preview` on a fixed port (IndexedDB and the
 * worker registration are keyed by origin, port included). The specs launch Chromium themselves
 * (`e2e/support/browser.ts`) on a fresh persistent profile per test, so they can crash it.
 * Project "app" runs the demo's specs (`e2e/app/`) against the built demo on port 5199 with
 * Playwright's browser fixture (`npx playwright test --project app`). Project "crash" runs the
 * crash suite (`e2e/crash/`) and a short torture schedule (`e2e/torture/torture.spec.ts`,
 * `TORTURE_FAULTS`, default 24) against the same built demo with `fiberline/testing`'s `app`
 * fixture, and a short continuity torture schedule (`e2e/torture/continuity.spec.ts`, default 5
 * faults; it starts its own page, `wrangler dev`, ledger and link on ports 5640-5644); the long
 * torture runs have their own runner (`npm run torture [-- --continuity]`). Project "extension" runs
 * `e2e/extension/` against the example browser extension (`npx playwright test --project extension`).
 * The demo's AI SDK chat (`e2e/ai-sdk/`) runs in the "crash" project too, to crash and relaunch the
 * browser under it.
 */

import { defineConfig } from "@playwright/test";
import { chromiumArgs, findChromium } from "./scripts/find-chromium.mjs";

const port = Number(process.env.FIBERLINE_E2E_PORT ?? 5287);
const fixtureConfig = "e2e/fixture/vite.config.ts";
/**
 * The demo app (`e2e/app/`) is served by `vite preview` on its fixed port, as `npm start` does.
 * `FIBERLINE_APP_PORT` and `FIBERLINE_E2E_PORT` move the two servers (and their builds, see
 * vite.config.ts), so two runs can share a machine.
 */
const appPort = Number(process.env.FIBERLINE_APP_PORT ?? 5199);
/** The demo's specs use Playwright's browser fixture on this Chromium (Playwright's own when none is found). */
const appChromium = (() => {
  try {
    return findChromium();
  } catch {
    return undefined;
  }
})();

export default defineConfig({
  testDir: "e2e",
  // One test at a time: two cores, and every test runs a whole browser and a Service Worker.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: Boolean(process.env.CI),
  timeout: 60_000,
  expect: { timeout: 15_000 },
  reporter: [["list"]],
  projects: [
    {
      name: "fiberline",
      testIgnore: ["torture/**", "app/**", "crash/**", "extension/**", "ai-sdk/**", "continuity/**"],
      use: { baseURL: `http://localhost:${port}` },
    },
    {
      name: "app",
      testDir: "e2e/app",
      use: {
        baseURL: `http://localhost:${appPort}`,
        launchOptions: { ...(appChromium ? { executablePath: appChromium } : {}), args: [...chromiumArgs] },
      },
    },
    {
      // The example extension (examples/extension, built by the spec) loaded unpacked; its specs
      // launch Chromium themselves and need neither web server.
      name: "extension",
      testDir: "e2e/extension",
      timeout: 120_000,
    },
    {
      // Continuity (issue #18): Chromium against `wrangler dev`, both started by the spec itself
      // on ports 5620-5623 (page, edge, its inspector, the effect ledger). The config's own two
      // servers start too: move them with FIBERLINE_E2E_PORT / FIBERLINE_APP_PORT if taken.
      name: "continuity",
      testDir: "e2e/continuity",
      timeout: 180_000,
    },
    {
      name: "crash",
      testDir: "e2e",
      testMatch: [
        "crash/**/*.spec.ts",
        "torture/torture.spec.ts",
        "torture/continuity.spec.ts",
        "ai-sdk/**/*.spec.ts",
      ],
      use: { baseURL: `http://localhost:${appPort}` },
    },
  ],
  webServer: [
    {
      command: `npx vite build -c ${fixtureConfig} && npx vite preview -c ${fixtureConfig} --port ${port} --strictPort`,
      url: `http://localhost:${port}/hello.txt`,
      reuseExistingServer: false,
      timeout: 120_000,
      env: { FIBERLINE_E2E_PORT: String(port) },
    },
    {
      command: `npx vite build && npx vite preview --port ${appPort} --strictPort`,
      url: `http://localhost:${appPort}/manifest.webmanifest`,
      reuseExistingServer: false,
      timeout: 120_000,
      env: { FIBERLINE_APP_PORT: String(appPort) },
    },
  ],
});
