/**
 * Playwright config of the extension suite alone (`npm run test:extension`): the specs in this
 * folder against the example extension, which they build and load unpacked themselves, so no
 * web server is started (the root config, which `npm test` uses, runs the same specs as project
 * "extension" next to the demo's servers).
 */

import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: ".",
  testMatch: "*.spec.ts",
  // One browser at a time: two cores, and each test waits on a real alarm or a real relaunch.
  workers: 1,
  retries: 0,
  timeout: 120_000,
  expect: { timeout: 15_000 },
  reporter: [["list"]],
  outputDir: "../../test-results/extension",
});
