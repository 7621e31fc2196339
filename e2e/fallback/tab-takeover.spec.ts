/**
 * The no-Service-Worker fallback in real Chromium: the Service Worker API is removed from every
 * page by an init script (as a private window or a policy would), so `connect({ fallback })`
 * elects one tab to run the fibers. Three tabs of one profile; the leader is closed, or its
 * renderer crashed, in the middle of a fiber: another tab takes the lock, recovers the fiber from
 * IndexedDB, and the followers' streams continue exactly once, in order, to `fiber.end`; each
 * step's side effect is counted once by its idempotency key, and only the step cut off by the
 * takeover runs again (under that same key, in the new leader). The spec builds and serves its own fixture page
 * (`e2e/fallback/`), so it needs neither of the root config's web servers.
 */

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test as base, expect, type Page } from "@playwright/test";
import { type PreviewServer, preview } from "vite";
import type { FiberEvent } from "../../src/core/records";
import { closeBrowser, type LaunchedBrowser, launchBrowser } from "../support/browser";

const root = fileURLToPath(new URL("../..", import.meta.url));
const config = join(root, "e2e/fallback/vite.config.ts");

interface Tabs {
  /** One Chromium on a fresh profile, every page without the Service Worker API. */
  chromium: LaunchedBrowser;
  /** Opens the fixture page in a new tab of the one browser context and waits until it is connected. */
  open(): Promise<Page>;
}

const test = base.extend<Tabs, { server: string }>({
  server: [
    // biome-ignore lint/correctness/noEmptyPattern: Playwright's fixture signature
    async ({}, use) => {
      const build = spawnSync("npx", ["vite", "build", "-c", config, "--logLevel", "warn"], {
        cwd: root,
        stdio: "inherit",
      });
      if (build.status !== 0) throw new Error(`Building the fallback fixture failed (exit ${build.status}).`);
      const server: PreviewServer = await preview({
        configFile: config,
        // Any free port from here: each test has a fresh profile, so the origin may differ per run.
        preview: {
          port: Number(process.env.FIBERLINE_FALLBACK_PORT ?? 5294),
          strictPort: false,
          host: "localhost",
        },
      });
      const url = server.resolvedUrls?.local[0];
      if (!url) throw new Error("The fallback fixture server has no local URL.");
      await use(url);
      await server.close();
    },
    { scope: "worker" },
  ],
  // biome-ignore lint/correctness/noEmptyPattern: Playwright's fixture signature
  chromium: async ({}, use) => {
    const userDataDir = mkdtempSync(join(tmpdir(), "fiberline-fallback-"));
    const browser = await launchBrowser({ userDataDir });
    // No Service Worker API, in every page of the profile, before any script runs.
    await browser.context.addInitScript(() => {
      Object.defineProperty(Navigator.prototype, "serviceWorker", {
        configurable: true,
        get: () => undefined,
      });
    });
    await use(browser);
    await closeBrowser(browser);
    rmSync(userDataDir, { recursive: true, force: true });
  },
  open: async ({ chromium, server }, use) => {
    await use(async () => {
      const page = await chromium.context.newPage();
      await page.goto(server);
      await expect(page.locator("body[data-connected=true]")).toBeAttached();
      return page;
    });
  },
});

const leading = (page: Page) => page.evaluate(() => window.tabs.leading());
const seen = (page: Page, id: string): Promise<FiberEvent[]> => page.evaluate((f) => window.tabs.seen(f), id);

/** Three tabs: the first one opened leads; the other two follow and read the effects fiber. */
async function threeTabsReading(open: Tabs["open"]) {
  const leader = await open();
  const followers = [await open(), await open()];
  expect(await leading(leader)).toBe(true);
  for (const page of followers) {
    expect(await leading(page)).toBe(false);
    expect(await page.evaluate(() => window.tabs.serviceWorkerApi)).toBe(false);
  }
  const [first, second] = followers as [Page, Page];
  const { id } = await first.evaluate(() => window.tabs.start("effects", { steps: 6, stepMs: 300 }));
  for (const page of followers) await page.evaluate((f) => window.tabs.read(f), id);
  // Mid-fiber: two steps done, more to come.
  await expect
    .poll(async () => (await seen(first, id)).filter((ev) => ev.type === "effect").length)
    .toBeGreaterThanOrEqual(2);
  expect((await seen(first, id)).some((ev) => ev.type === "fiber.end")).toBe(false);
  return { leader, first, second, id };
}

/** After the leader went away: one follower leads, both streams are whole, each step counted once by its key. */
async function expectTakenOver(followers: Page[], id: string, oldLeaderLoad: string): Promise<void> {
  await expect.poll(async () => (await Promise.all(followers.map(leading))).filter(Boolean).length).toBe(1);
  for (const page of followers) {
    await expect
      .poll(() => page.evaluate((f) => window.tabs.reader(f), id), { timeout: 30_000 })
      .toEqual({ status: "done" });
    const log = await seen(page, id);
    expect(log.map((ev) => ev.seq)).toEqual(log.map((_, i) => i + 1));
    expect(log.filter((ev) => ev.type === "effect").map((ev) => (ev.data as { i: number }).i)).toEqual([
      1, 2, 3, 4, 5, 6,
    ]);
    expect(log.filter((ev) => ev.type === "fiber.recovered")).toHaveLength(1);
    expect(log.at(-1)).toMatchObject({
      type: "fiber.end",
      data: { status: "completed", result: { steps: 6 } },
    });
    // Every follower saw the same stream.
    expect(log).toEqual(await seen(followers[0] as Page, id));
  }
  const runs = await (followers[0] as Page).evaluate((f) => window.tabs.executions(f), id);
  const keys = Array.from({ length: 6 }, (_, i) => `${id}:effect#${i + 1}`);
  const completed = runs.filter((run) => run.endedAt !== undefined);
  // Counted by idempotency key, as a deduplicating service counts them: each step once, in order.
  expect([...new Set(completed.map((run) => run.key))]).toEqual(keys);
  // Only the step in flight when the leader died ran again (same key, in the new leader); a tab
  // can die after a step's effect and before its journal write, so that one may have ended twice.
  const ranAgain = keys.filter((key) => runs.filter((run) => run.key === key).length > 1);
  expect(ranAgain.length).toBeLessThanOrEqual(1);
  const newLoads = await Promise.all(followers.map((page) => page.evaluate(() => window.tabs.load)));
  for (const key of ranAgain) {
    const again = runs.filter((run) => run.key === key);
    expect(again.map((run) => run.runner)).toEqual([
      oldLeaderLoad,
      ...again.slice(1).map((run) => run.runner),
    ]);
    expect(again.slice(1).every((run) => newLoads.includes(run.runner))).toBe(true);
  }
  // The old leader ran the first steps, the new one the rest: the work moved, it was not redone.
  const runners = new Set(completed.map((run) => run.runner));
  expect(runners.has(oldLeaderLoad)).toBe(true);
  expect([...runners].some((runner) => newLoads.includes(runner))).toBe(true);
}

test("the leader tab closed mid-fiber: another tab takes over and the streams continue exactly once", async ({
  open,
}) => {
  const { leader, first, second, id } = await threeTabsReading(open);
  const oldLoad = await leader.evaluate(() => window.tabs.load);
  await leader.close({ runBeforeUnload: false });
  await expectTakenOver([first, second], id, oldLoad);
});

test("the leader tab's renderer crashed mid-fiber: another tab takes over and the streams continue exactly once", async ({
  open,
  chromium,
}) => {
  const { leader, first, second, id } = await threeTabsReading(open);
  const oldLoad = await leader.evaluate(() => window.tabs.load);
  const crashed = leader.waitForEvent("crash");
  const cdp = await chromium.context.newCDPSession(leader);
  // The renderer dies before it can answer, so the command itself never settles.
  void cdp.send("Page.crash").catch(() => {});
  await crashed;
  await expectTakenOver([first, second], id, oldLoad);
  // The followers were never reloaded: the same pages, and each saw a second leader announce itself.
  for (const page of [first, second]) expect(await page.evaluate(() => window.tabs.leaders().length)).toBe(2);
});
