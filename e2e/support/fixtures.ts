/**
 * Playwright fixtures of the e2e specs: `session`, a Chromium launched on a fresh persistent
 * profile (and relaunched on it after a crash), torn down after each test; helpers that drive the
 * fixture page's `window.fx`; and the exactly-once assertion every stream spec ends with.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test as base, expect, type Page } from "@playwright/test";
import type { StartResult } from "../../src/core/runtime";
import type { ReaderState, SeenChunk } from "../fixture/page";
import {
  closeBrowser,
  crashBrowser,
  type LaunchedBrowser,
  launchBrowser,
  relaunchBrowser,
  stopServiceWorkers,
} from "./browser";

/** A browser on one profile for the length of a test. */
export interface Session {
  /** The running browser (replaced by `relaunch`). */
  readonly browser: LaunchedBrowser;
  /** Opens `path` of the fixture app in a new tab and waits until its client is connected. */
  open(path?: string): Promise<Page>;
  /** Navigates `page` to `path` of the fixture app and waits until its client is connected. */
  goto(page: Page, path: string): Promise<void>;
  /** The absolute URL of `path` (pages of an attached browser have no baseURL). */
  url(path: string): string;
  /** SIGKILLs the browser (every tab and the worker die with it). */
  crash(): Promise<void>;
  /** Starts the browser again on the same profile. */
  relaunch(): Promise<void>;
  /** Stops the Service Workers over CDP. */
  stopWorkers(page: Page): Promise<void>;
}

export const test = base.extend<{ session: Session }>({
  session: async ({ baseURL }, use) => {
    const userDataDir = mkdtempSync(join(tmpdir(), "fiberline-e2e-"));
    let current = await launchBrowser({ userDataDir });
    const url = (path: string) => new URL(path, baseURL).href;
    const session: Session = {
      get browser() {
        return current;
      },
      url,
      async goto(page, path) {
        await page.goto(url(path));
        await expect(page.locator("body[data-connected=true]")).toBeAttached();
      },
      async open(path = "/") {
        const page = await current.context.newPage();
        await session.goto(page, path);
        return page;
      },
      async crash() {
        await crashBrowser(current);
      },
      async relaunch() {
        current = await relaunchBrowser(current);
      },
      stopWorkers: (page) => stopServiceWorkers(page),
    };
    await use(session);
    await closeBrowser(current);
    rmSync(userDataDir, { recursive: true, force: true });
  },
});

export { expect };

/** Starts a fiber from `page` through `fiberline/client`. */
export async function startFiber(
  page: Page,
  name: "ticker" | "effects",
  input: Record<string, number>,
  options: { id?: string; idempotencyKey?: string } = {},
): Promise<StartResult> {
  return await page.evaluate(
    async ([n, i, o]) => {
      const client = await window.fx.client();
      // biome-ignore lint/suspicious/noExplicitAny: the fixture's typed map is checked in page.ts
      return await client.start(n as any, i as any, o);
    },
    [name, input, options] as const,
  );
}

/** What the page's reader of `fiberId` logged so far, in the order it saw them. */
export async function seenBy(page: Page, fiberId: string): Promise<SeenChunk[]> {
  return await page.evaluate((id) => window.fx.seen(id), fiberId);
}

/** The state of the page's reader of `fiberId`. */
export async function readerOf(page: Page, fiberId: string): Promise<ReaderState | undefined> {
  return await page.evaluate((id) => window.fx.reader(id), fiberId);
}

/** Waits until the page's reader of `fiberId` finished (it saw `fiber.end`). */
export async function readerDone(page: Page, fiberId: string, timeout = 30_000): Promise<void> {
  await expect.poll(() => readerOf(page, fiberId), { timeout }).toEqual({ status: "done" });
}

/** Waits until the page's reader of `fiberId` logged at least `count` chunks. */
export async function seenAtLeast(page: Page, fiberId: string, count: number): Promise<void> {
  await expect
    .poll(async () => (await seenBy(page, fiberId)).length, { timeout: 15_000 })
    .toBeGreaterThanOrEqual(count);
}

/**
 * The exactly-once check: the log holds seq 1..N once each, in order, ends with a completed
 * `fiber.end`, and holds each of the ticker's ticks exactly once.
 */
export function expectCompleteTickerLog(log: readonly SeenChunk[], ticks: number): void {
  expect(log.map((c) => c.seq)).toEqual(log.map((_, i) => i + 1));
  const end = log.at(-1);
  expect(end?.type).toBe("fiber.end");
  expect(end?.data).toEqual({ status: "completed", result: { ticks } });
  const seenTicks = log.filter((c) => c.type === "tick").map((c) => (c.data as { i: number }).i);
  expect(seenTicks).toEqual(Array.from({ length: ticks }, (_, i) => i + 1));
}
