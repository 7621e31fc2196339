/**
 * Vitest projects: `node` for everything that runs without a browser (core, MemoryStore,
 * IdbStore on fake-indexeddb), `browser` for `*.browser.test.ts` in real headless Chromium.
 *
 * Chromium comes from `CHROMIUM_PATH`, else `/usr/bin/chromium` when present, else Playwright's
 * own browser (`npx playwright install chromium` on a machine that can download it).
 */

import { playwright } from "@vitest/browser-playwright";
import { defineConfig } from "vitest/config";
import { chromiumArgs, findChromium } from "./scripts/find-chromium.mjs";

/** The browser project's Chromium; the node project must load even where none is installed. */
function chromiumPath(): string | undefined {
  try {
    return findChromium();
  } catch {
    return undefined; // Playwright then reports its own missing-browser error, if the project runs.
  }
}

export default defineConfig({
  // Pre-bundled up front so the browser project does not reload mid-run when it first meets them.
  optimizeDeps: { include: ["react", "react-dom/client", "comlink", "idb", "ai", "ai7", "ai-sdk-react4"] },
  test: {
    // CI machines have two cores and run browsers beside these tests: polls wait on behaviour,
    // never on speed, so give them room (a poll still ends as soon as its condition holds).
    expect: { poll: { timeout: 10_000 } },
    // The same room for whole tests: property tests over hundreds of generated values took over
    // the default 5 s while other suites loaded both cores (a hung test still fails, later).
    testTimeout: 20_000,
    // Demo-app logic that runs without a browser is tested beside it in app/.
    projects: [
      {
        extends: true,
        test: {
          name: "node",
          environment: "node",
          include: ["src/**/*.test.ts", "app/**/*.test.ts", "scripts/**/*.test.ts", "e2e/**/*.test.ts"],
          exclude: ["**/node_modules/**", "**/*.browser.test.ts"],
        },
      },
      {
        extends: true,
        test: {
          name: "browser",
          include: ["src/**/*.browser.test.ts"],
          browser: {
            enabled: true,
            headless: true,
            provider: playwright({
              launchOptions: { executablePath: chromiumPath(), args: [...chromiumArgs] },
            }),
            instances: [{ browser: "chromium" }],
          },
        },
      },
    ],
  },
});
