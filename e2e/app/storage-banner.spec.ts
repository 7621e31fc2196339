/**
 * The demo's storage banner (issue 17): the worker's store is wrapped by `watchStorage`, and the
 * app shows what it reports. Here, the browser's rare wipe of the site's IndexedDB after an
 * unclean shutdown, done by hand while the worker is stopped: at the next start the banner names
 * the fiber that was lost. (Running out of space is tested on a storage bucket with a quota in
 * `e2e/storage.spec.ts`; the banner reads the same report, and its Try again button calls the same
 * `retryPaused()`.)
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

test("Try again asks the worker to retry paused replies; the banner goes once the worker has room", async ({
  demo,
  page,
}) => {
  await demo.send("Hello");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  // The demo's own origin cannot be run out of space here (e2e/storage.spec.ts does that with a
  // storage bucket on the fixture); so another context of the origin says what the worker would
  // say while full, and the worker, which has room, answers the banner's retry.
  await page.evaluate(() => {
    const channel = new BroadcastChannel("fiberline/storage");
    // What every page of the origin hears from now on (the worker answers a retry to all of them).
    const heard: string[] = [];
    (window as unknown as { heard: string[] }).heard = heard;
    channel.addEventListener("message", (event) => heard.push(event.data.health.state));
    channel.postMessage({
      type: "fiberline/storage",
      health: { state: "quota_exceeded", paused: ["reply-1"], lost: [], persisted: false, since: Date.now() },
    });
  });
  const banner = page.getByTestId("storage-banner");
  await expect(banner).toContainText("1 reply is paused, with nothing lost");
  expect(await page.evaluate(() => (window as unknown as { heard: string[] }).heard)).toEqual([]);
  await page.getByRole("button", { name: "Try again" }).click();
  await expect(banner).toHaveCount(0);
  // The answer came from the worker, which told every page.
  await expect
    .poll(() => page.evaluate(() => (window as unknown as { heard: string[] }).heard))
    .toEqual(["ok"]);
});

test("Settings says whether the browser keeps the demo's storage under pressure", async ({ demo, page }) => {
  // The client asks for persistent storage at the first start.
  await demo.send("Hello");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await page.goto("/#/settings");
  await expect(page.getByTestId("storage-status")).toContainText(/Persistent:|Best effort:/);
  await expect(page.getByTestId("storage-status")).toContainText(/Using [\d.]+ MB of \d+ MB/);
});
