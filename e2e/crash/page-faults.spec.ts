/**
 * Faults of the page alone (the worker and the browser live on): a reload mid-stream, the only tab
 * closed and another opened, two tabs reading one fiber. Each fiber completes once and every reader
 * sees each chunk once, in order.
 */

import { startTicker } from "./demo";
import { expect, test } from "./scenario";

test("reload mid-stream: the reloaded page resumes after the last seq it received", async ({
  app,
  open,
  expectIntact,
}) => {
  const effects = await open();
  const ticker = await startTicker(app, { count: 30, intervalMs: 100 });
  await ticker.log.count(8, "tick");
  await app.reload();
  await expectIntact(ticker, effects);
  // Two page-side readers contributed: the one before the reload and the one after it.
  expect(ticker.log.attachments).toBe(2);
});

test("tab closed mid-stream and another opened: the fiber kept running, the new tab reads on", async ({
  app,
  open,
  expectIntact,
}) => {
  const effects = await open();
  const ticker = await startTicker(app, { count: 30, intervalMs: 100 });
  await ticker.log.count(8, "tick");
  await app.closeTab();
  expect(app.pages).toHaveLength(0);
  await app.openTab("/");
  await expectIntact(ticker, effects);
  expect(ticker.log.attachments).toBe(2);
});

test("two tabs reading one fiber see the same chunks, each once and in order", async ({
  app,
  open,
  expectIntact,
}) => {
  const effects = await open();
  const ticker = await startTicker(app, { count: 20, intervalMs: 80 });
  const second = await app.openTab("/");
  const [first] = app.pages;
  if (!first) throw new Error("the first tab is gone");
  await ticker.log.count(3, "tick");
  const [fromFirst, fromSecond] = await Promise.all([
    app.readEvents(ticker.id, { page: first }),
    app.readEvents(ticker.id, { page: second }),
  ]);
  expect(fromSecond).toEqual(fromFirst);
  expect(fromFirst.map((e) => e.seq)).toEqual(fromFirst.map((_, i) => i + 1));
  await expectIntact(ticker, effects);
});
