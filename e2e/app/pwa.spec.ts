/**
 * The demo is an installable PWA: Chromium reports no installability error, and after the first
 * visit the app shell opens with no network at all (precached by the worker), the AI SDK chat
 * included, whose code the other pages never load.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "@playwright/test";
import { chromiumArgs, findChromium } from "../../scripts/find-chromium.mjs";
import { expect, openDemo, test } from "./fixtures";

test("Chromium reports no installability errors", async ({ baseURL }) => {
  // Off-the-record contexts are never installable ("in-incognito"): use a real profile.
  const profile = mkdtempSync(join(tmpdir(), "fiberline-pwa-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: findChromium(),
    args: [...chromiumArgs],
    baseURL,
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    await openDemo(page);
    const manifest = await page.evaluate(() => fetch("/manifest.webmanifest").then((r) => r.json()));
    expect(manifest).toMatchObject({ display: "standalone", start_url: "/" });
    expect(manifest.icons.map((i: { sizes: string }) => i.sizes)).toEqual(
      expect.arrayContaining(["192x192", "512x512"]),
    );
    const cdp = await context.newCDPSession(page);
    const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
    expect(installabilityErrors).toEqual([]);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});

test("after the first visit the app opens offline", async ({ demo, page, context }) => {
  // The worker activated only after precaching the shell; connect() waited for it to control the page.
  expect(await page.evaluate(() => caches.keys().then((keys) => keys.length))).toBeGreaterThan(0);
  await context.setOffline(true);
  await page.reload();
  await openDemo(page, page.url());
  await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
  // The banner follows `navigator.onLine`. Debian's Chromium 150 here still says online in a page
  // loaded under Playwright's offline emulation (156 says offline); where it does say so, the
  // banner must show.
  if (await page.evaluate(() => !navigator.onLine)) {
    await expect(page.getByRole("status").filter({ hasText: "You are offline" })).toBeVisible();
  } else {
    test.info().annotations.push({
      type: "browser",
      description: "navigator.onLine is true under offline emulation: the offline banner was not checked",
    });
  }
  await expect(page.getByTestId("composer-input")).toBeVisible();
  await page.getByRole("link", { name: "Inspector" }).click();
  await expect(page.getByRole("heading", { name: /Fibers/ })).toBeVisible();
  // The fibers themselves run offline too: a lab fiber needs no network.
  const status = await page.evaluate(async () => {
    const client = window.fiberline;
    if (!client) throw new Error("not connected");
    const started = await client.start("lab.ticker", { count: 3, intervalMs: 0 });
    await client.result(started);
    return (await client.get(started.id))?.status;
  });
  expect(status).toBe("completed");
  await context.setOffline(false);
  await demo.setMockDelay(0);
});

test("the AI SDK chat's code loads only when its page opens", async ({ demo, page, context }) => {
  const scripts = () =>
    page.evaluate(() =>
      performance
        .getEntriesByType("resource")
        .map((entry) => new URL(entry.name).pathname)
        .filter((path) => path.endsWith(".js")),
    );
  // The hand-written chat is open: it has not fetched the AI SDK page's chunk.
  await expect(demo.page.getByTestId("composer-input")).toBeVisible();
  expect((await scripts()).filter((path) => path.includes("ai-chat-page"))).toEqual([]);
  // Opened offline, the chunk comes from the worker's precache and the page works.
  await context.setOffline(true);
  await page.getByRole("link", { name: "AI SDK chat" }).click();
  await expect(page.getByRole("heading", { name: "AI SDK chat" })).toBeVisible();
  await expect(page.getByTestId("ai-input")).toBeEditable();
  expect((await scripts()).filter((path) => path.includes("ai-chat-page"))).toHaveLength(1);
  await context.setOffline(false);
});
