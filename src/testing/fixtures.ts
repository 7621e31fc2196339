/**
 * Playwright fixtures of `fiberline/testing`: `app`, an {@link AppSession} on a fresh persistent
 * profile for each test, closed (and its profile removed) after it. Import `test` from here instead
 * of `@playwright/test` in specs that crash, reload or take the browser offline.
 */

import { test as base, expect } from "@playwright/test";
import { AppSession } from "./app-session";

/** Options of the `app` fixture, set with `test.use({ ... })` or in `playwright.config.ts`. */
export interface FiberlineTestOptions {
  /** The app's origin (default: the project's `baseURL`). */
  appOrigin: string | undefined;
  /** The page global holding the connected client (default `"fiberline"`). */
  clientGlobal: string;
}

/** The fixtures the kit adds. */
export interface FiberlineFixtures {
  /** A crashable browser on a fresh persistent profile at the app's origin; no tab open yet. */
  app: AppSession;
}

/**
 * Playwright's `test` with the `app` fixture.
 *
 * @example
 * import { checkStream, expect, test } from "fiberline/testing";
 *
 * test.use({ appOrigin: "http://localhost:5199" });
 *
 * test("the reply survives a browser crash", async ({ app }) => {
 *   const page = await app.openTab("/");
 *   const { id } = await page.evaluate(() => window.fiberline!.start("lab.ticker", { count: 30, intervalMs: 100 }));
 *   const log = app.follow(id);
 *   await log.count(5, "tick");
 *   await app.crashBrowser();
 *   await app.relaunch();
 *   await app.openTab("/");
 *   expect(checkStream(await log.done())).toMatchObject({ lost: [], duplicated: [], reordered: [], ended: true });
 * });
 */
export const test = base.extend<FiberlineFixtures & FiberlineTestOptions>({
  appOrigin: [undefined, { option: true }],
  clientGlobal: ["fiberline", { option: true }],
  app: async ({ appOrigin, baseURL, clientGlobal }, use) => {
    const origin = appOrigin ?? baseURL;
    if (!origin)
      throw new Error("The app fixture needs an origin: set `appOrigin` or `baseURL` in test.use().");
    const session = await AppSession.launch({ origin, clientGlobal });
    try {
      await use(session);
    } finally {
      await session.close();
    }
  },
});

export { expect };
