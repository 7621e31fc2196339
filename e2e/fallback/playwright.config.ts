/**
 * Playwright config of the fallback suite alone (`npm run test:fallback`): the specs in this
 * folder build and serve their own fixture page and launch Chromium themselves, so no web server
 * is started (the root config, which `npm test` uses, runs the same specs in project "fiberline"
 * next to its servers).
 */

import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: ".",
  testMatch: "*.spec.ts",
  // One browser at a time: two cores, three tabs each.
  workers: 1,
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 15_000 },
  reporter: [["list"]],
  outputDir: "../../test-results/fallback",
});
