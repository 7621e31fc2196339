/**
 * Playwright fixtures of `fiberline/testing`: `app`, an {@link AppSession} on a fresh persistent
 * profile for each test, closed (and its profile removed) after it. Import `test` from here instead
 * of `@playwright/test` in specs that crash, reload or take the browser offline.
 */

import type {
  Expect,
  PlaywrightTestArgs,
  PlaywrightTestOptions,
  PlaywrightWorkerArgs,
  PlaywrightWorkerOptions,
  TestType,
} from "@playwright/test";
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

/** The type of the kit's `test`: Playwright's, plus the `app` fixture and its options. */
export type FiberlineTest = TestType<
  PlaywrightTestArgs & PlaywrightTestOptions & FiberlineFixtures & FiberlineTestOptions,
  PlaywrightWorkerArgs & PlaywrightWorkerOptions
>;

// Optional peer: without @playwright/test, `crashableStore` still works and these throw when used.
const playwright = await import("@playwright/test").catch(() => null);

function missing(name: string): never {
  throw new Error(
    `fiberline/testing's \`${name}\` needs @playwright/test: npm install -D @playwright/test (set PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 to use a system Chromium).`,
  );
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
export const test: FiberlineTest = playwright
  ? playwright.test.extend<FiberlineFixtures & FiberlineTestOptions>({
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
    })
  : (new Proxy(() => missing("test"), { get: () => missing("test") }) as unknown as FiberlineTest);

/** Playwright's `expect`, re-exported so a spec needs one import. */
export const expect: Expect = playwright
  ? playwright.expect
  : (new Proxy(() => missing("expect"), { get: () => missing("expect") }) as unknown as Expect);
