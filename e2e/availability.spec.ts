/**
 * Where a page can and cannot reach its worker: an insecure origin gets a clear
 * `ServiceWorkerUnavailableError`; a hard reload (which leaves the page uncontrolled) still
 * connects, because the client asks the active worker to claim the page.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeBrowser, launchBrowser } from "./support/browser";
import { expect, readerDone, seenBy, startFiber, test } from "./support/fixtures";

test("an insecure origin gets ServiceWorkerUnavailableError saying why and what to do", async ({
  baseURL,
}) => {
  const port = new URL(baseURL ?? "http://localhost").port;
  const userDataDir = mkdtempSync(join(tmpdir(), "fiberline-e2e-"));
  // http://fiberline.test is not localhost, so it is not a secure context: no navigator.serviceWorker.
  const browser = await launchBrowser({
    userDataDir,
    args: ["--host-resolver-rules=MAP fiberline.test 127.0.0.1"],
  });
  try {
    const page = await browser.context.newPage();
    await page.goto(`http://fiberline.test:${port}/`);
    const outcome = await page.evaluate(async () =>
      window.fx.client().then(
        () => null,
        (e: unknown) => ({
          ofClass: e instanceof window.fx.errors.ServiceWorkerUnavailableError,
          code: (e as { code?: string }).code,
          message: (e as Error).message,
          secure: window.isSecureContext,
        }),
      ),
    );
    expect(outcome).toMatchObject({ ofClass: true, code: "service_worker_unavailable", secure: false });
    expect(outcome?.message).toContain("not a secure context");
    expect(outcome?.message).toContain("HTTPS");
  } finally {
    await closeBrowser(browser);
    rmSync(userDataDir, { recursive: true, force: true });
  }
});

test("a hard reload leaves the page uncontrolled; the client has it claimed and reads on", async ({
  session,
}) => {
  const page = await session.open();
  const { id } = await startFiber(page, "ticker", { ticks: 20, intervalMs: 50 });
  const cdp = await page.context().newCDPSession(page);
  // Like Shift+Reload: bypasses the cache and the Service Worker for this load.
  await cdp.send("Page.reload", { ignoreCache: true, scriptToEvaluateOnLoad: "" });
  await cdp.detach();
  await expect(page.locator("body[data-connected=true]")).toBeAttached();
  expect(await page.evaluate(() => window.fx.controlledAtLoad)).toBe(false);
  await page.evaluate((fiberId) => window.fx.read(fiberId), id);
  await readerDone(page, id);
  const log = await seenBy(page, id);
  expect(log.map((c) => c.seq)).toEqual(log.map((_, i) => i + 1));
  expect(log.at(-1)?.type).toBe("fiber.end");
});
