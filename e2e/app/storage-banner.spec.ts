/**
 * The demo's storage banner (issue 17): the worker's store is wrapped by `watchStorage`, and the
 * app shows what it reports. Here, the browser's rare wipe of the site's IndexedDB after an
 * unclean shutdown, done by hand while the worker is stopped: at the next start the banner names
 * the fiber that was lost. (Running out of space is tested on a storage bucket with a quota in
 * `e2e/storage.spec.ts`; the banner reads the same report.)
 */

import { expect, openDemo, test } from "./fixtures";

test("a database the browser deleted is reported in a banner that names the lost reply", async ({
  demo,
  page,
}) => {
  await expect(page.getByTestId("storage-banner")).toHaveCount(0);
  await demo.send("What is durable execution?");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  const fiberId = await demo.lastFiberId();

  const cdp = await page.context().newCDPSession(page);
  await cdp.send("ServiceWorker.enable");
  await cdp.send("ServiceWorker.stopAllWorkers");
  const deleted = await page.evaluate(
    () =>
      new Promise<string>((resolve) => {
        const request = indexedDB.deleteDatabase("fiberline");
        request.onsuccess = () => resolve("deleted");
        request.onerror = () => resolve(`error: ${request.error?.name}`);
        request.onblocked = () => resolve("blocked");
      }),
  );
  expect(deleted).toBe("deleted");

  await openDemo(page);
  const banner = page.getByTestId("storage-banner");
  await expect(banner).toContainText("The browser deleted this site's stored data", { timeout: 20_000 });
  await expect(banner).toContainText(fiberId);
  await cdp.detach();
});

test("Settings says whether the browser keeps the demo's storage under pressure", async ({ demo, page }) => {
  // The client asks for persistent storage at the first start.
  await demo.send("Hello");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await page.goto("/#/settings");
  await expect(page.getByTestId("storage-status")).toContainText(/Persistent:|Best effort:/);
  await expect(page.getByTestId("storage-status")).toContainText(/Using [\d.]+ MB of \d+ MB/);
});
