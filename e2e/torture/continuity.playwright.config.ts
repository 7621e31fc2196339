/**
 * Playwright config of the continuity torture run (`npm run torture -- --continuity`, via
 * `run.mjs`): `continuity.spec.ts` alone. It starts its own servers (page, `wrangler dev`, ledger,
 * link) on `FIBERLINE_TORTURE_PORT` to +4 (default 5640-5644), so this config has no webServer.
 */

import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: ".",
  testMatch: "continuity.spec.ts",
  workers: 1,
  retries: 0,
  timeout: 0,
  reporter: [["list"]],
  outputDir: "../../test-results/torture-continuity",
});
