/**
 * Playwright config of the long torture run (`npm run torture`, via `e2e/torture/run.mjs`): the
 * torture spec alone, against the demo built into `dist/torture-app` and served by `vite preview`
 * on `FIBERLINE_TORTURE_PORT` (default 5199, the demo's port), with a timeout sized by
 * `TORTURE_FAULTS`. `npm test` runs the same spec with a short schedule (project "crash").
 */

import { fileURLToPath } from "node:url";
import { defineConfig } from "@playwright/test";

const port = Number(process.env.FIBERLINE_TORTURE_PORT ?? 5199);
// Absolute: vite resolves a relative outDir against the demo's root (app/).
const outDir = fileURLToPath(new URL("../../dist/torture-app", import.meta.url));

export default defineConfig({
  testDir: ".",
  testMatch: "torture.spec.ts",
  workers: 1,
  retries: 0,
  timeout: 0,
  expect: { timeout: 30_000 },
  reporter: [["list"]],
  outputDir: "../../test-results/torture",
  use: { baseURL: `http://localhost:${port}` },
  webServer: {
    // A journal fold every 4 commits (64 by default): faults land across folds all the time.
    command: `VITE_JOURNAL_FOLD=4 npx vite build --outDir ${outDir} --emptyOutDir --logLevel warn && npx vite preview --outDir ${outDir} --port ${port} --strictPort`,
    cwd: "../..",
    url: `http://localhost:${port}/manifest.webmanifest`,
    reuseExistingServer: false,
    timeout: 180_000,
  },
});
