/**
 * Faults of the Service Worker alone (pages and browser live on): stopped mid-step and
 * mid-stream over CDP, as Chromium stops an idle worker, and a new worker version deployed while a
 * fiber runs. The fixture app's `e2e/version-takeover.spec.ts` proves, with per-execution records,
 * that two versions never overlap on one fiber; here the same takeover runs on the demo and is
 * judged by its effect ledger and the reader.
 */

import { effectsOf, executionsAgainstJournal, rpc, startEffects, startTicker } from "./demo";
import { expect, test } from "./scenario";

test("worker stopped mid-step: the new instance recovers the fiber, the cut-off step runs again once", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  const effects = await startEffects(app, { count: 6, intervalMs: 800 });
  await effects.log.count(1, "progress");
  await expect
    .poll(
      async () =>
        (await effectsOf(app.page, effects.id)).keys -
        effects.log.events.filter((e) => e.type === "progress").length,
    )
    .toBe(1);
  await app.stopServiceWorker();
  await expectIntact(effects, background);
  expect(effects.log.events.filter((e) => e.type === "fiber.recovered")).toHaveLength(1);
  expect((await effectsOf(app.page, effects.id)).reExecutions).toBeLessThanOrEqual(1);
  for (const step of await executionsAgainstJournal(app.page, effects.id)) {
    expect(step.executions, step.key).toBeLessThanOrEqual(step.attempts);
  }
  // The page's reader reconnected by itself: one reader for the whole stream.
  expect(effects.log.attachments).toBe(1);
});

test("worker stopped mid-stream: the page's reader reconnects after its last seq", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  const ticker = await startTicker(app, { count: 30, intervalMs: 100 });
  await ticker.log.count(8, "tick");
  await app.stopServiceWorker();
  await expectIntact(ticker, background);
  expect(ticker.log.events.filter((e) => e.type === "fiber.recovered")).toHaveLength(1);
  expect(ticker.log.attachments).toBe(1);
});

test("a new worker version deployed mid-run: no fiber runs twice, no step is executed again", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  const effects = await startEffects(app, { count: 10, intervalMs: 300 });
  await effects.log.count(3, "progress");
  // A different script URL is a new version to the browser: it installs (running recover() on
  // install) and, with skipWaiting, takes over while the old one still runs the fiber.
  await app.page.evaluate(() =>
    navigator.serviceWorker.register("/sw.js?v=2", { type: "module", scope: "/" }),
  );
  await expect
    .poll(() => app.page.evaluate(() => navigator.serviceWorker.controller?.scriptURL ?? ""))
    .toMatch(/\?v=2$/);
  await expectIntact(effects, background);
  // No crash: every step body ran exactly once, whichever version ran it.
  const ledger = await effectsOf(app.page, effects.id);
  expect(ledger).toMatchObject({ keys: 10, executions: 10, reExecutions: 0 });
  expect(effects.log.events.filter((e) => e.type === "fiber.recovered")).toHaveLength(0);
  await expect
    .poll(async () => (await rpc<{ scriptUrl: string }>(app.page, "heartbeat")).scriptUrl)
    .toMatch(/\?v=2$/);
});
