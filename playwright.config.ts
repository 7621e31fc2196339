/**
 * Playwright e2e (`npm run test:e2e`): real Chromium against the fixture app in `e2e/fixture`,
 * built by its own Vite config and served by `vite preview` on a fixed port (IndexedDB and the
 * worker registration are keyed by origin, port included). The specs launch Chromium themselves
 * (`e2e/support/browser.ts`) on a fresh persistent profile per test, so they can crash it.
 * `e2e/torture/` has its own runner (`npm run torture`).
 */

import { defineConfig } from "@playwright/test";

const port = Number(process.env.FIBERLINE_E2E_PORT ?? 5287);
const fixtureConfig = "e2e/fixture/vite.config.ts";

export default defineConfig({
  testDir: "e2e",
  testIgnore: ["torture/**"],
  // One test at a time: two cores, and every test runs a whole browser and a Service Worker.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: Boolean(process.env.CI),
  timeout: 60_000,
  expect: { timeout: 15_000 },
  reporter: [["list"]],
  use: { baseURL: `http://localhost:${port}` },
  webServer: {
    command: `npx vite build -c ${fixtureConfig} && npx vite preview -c ${fixtureConfig} --port ${port} --strictPort`,
    url: `http://localhost:${port}/hello.txt`,
    reuseExistingServer: false,
    timeout: 120_000,
    env: { FIBERLINE_E2E_PORT: String(port) },
  },
});
