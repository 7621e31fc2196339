/**
 * A fiber's stream survives everything that can happen to the page, the worker and the browser:
 * in each scenario the fiber completes and the page's reader saw every seq exactly once, in order.
 */

import {
  expect,
  expectCompleteTickerLog,
  readerDone,
  seenAtLeast,
  seenBy,
  startFiber,
  test,
} from "./support/fixtures";

const TICKS = 40;
const INTERVAL_MS = 100;

test("page reload mid-stream: the reloaded page resumes after the last seq it logged", async ({
  session,
}) => {
  const page = await session.open();
  const { id } = await startFiber(page, "ticker", { ticks: TICKS, intervalMs: INTERVAL_MS });
  await session.goto(page, `/?read=${id}`);
  await seenAtLeast(page, id, 6);
  await page.reload();
  await readerDone(page, id);
  const log = await seenBy(page, id);
  expectCompleteTickerLog(log, TICKS);
  // Two page loads contributed, one after the other.
  const loads = [...new Set(log.map((c) => c.load))];
  expect(loads).toHaveLength(2);
});

test("tab closed mid-stream, then a new tab: the fiber kept running and the new tab resumes", async ({
  session,
}) => {
  const first = await session.open();
  const { id } = await startFiber(first, "ticker", { ticks: TICKS, intervalMs: INTERVAL_MS });
  await session.goto(first, `/?read=${id}`);
  await seenAtLeast(first, id, 6);
  const before = (await seenBy(first, id)).length;
  await first.close();
  const second = await session.open(`/?read=${id}`);
  await readerDone(second, id);
  const log = await seenBy(second, id);
  expectCompleteTickerLog(log, TICKS);
  // The closed tab's chunks (it may have logged one more while closing), then the new tab's.
  const firstLoad = log.filter((c) => c.load === log[0]?.load).length;
  expect(firstLoad).toBeGreaterThanOrEqual(before);
  const secondLoad = await second.evaluate(() => window.fx.load);
  expect(new Set(log.slice(firstLoad).map((c) => c.load))).toEqual(new Set([secondLoad]));
});

test("Service Worker stopped mid-stream: the reader reconnects and the fiber recovers", async ({
  session,
}) => {
  const page = await session.open();
  const { id } = await startFiber(page, "ticker", { ticks: TICKS, intervalMs: INTERVAL_MS });
  await session.goto(page, `/?read=${id}`);
  await seenAtLeast(page, id, 6);
  await session.stopWorkers(page);
  await readerDone(page, id);
  const log = await seenBy(page, id);
  expectCompleteTickerLog(log, TICKS);
  // One reader, one page load: the reconnect happened inside client.events().
  expect(new Set(log.map((c) => c.load)).size).toBe(1);
  // The worker really died mid-run: the new instance recovered the fiber.
  expect(log.filter((c) => c.type === "fiber.recovered")).toHaveLength(1);
});

test("browser SIGKILLed mid-stream and relaunched on the same profile: the fiber completes", async ({
  session,
}) => {
  const page = await session.open();
  const { id } = await startFiber(page, "ticker", { ticks: TICKS, intervalMs: INTERVAL_MS });
  await session.goto(page, `/?read=${id}`);
  await seenAtLeast(page, id, 6);
  await session.crash();
  await session.relaunch();
  const after = await session.open(`/?read=${id}`);
  await readerDone(after, id);
  const log = await seenBy(after, id);
  expectCompleteTickerLog(log, TICKS);
  expect(log.filter((c) => c.type === "fiber.recovered")).toHaveLength(1);
});

test("two readers in two tabs see identical sequences", async ({ session }) => {
  const a = await session.open();
  const b = await session.open();
  const { id } = await startFiber(a, "ticker", { ticks: 15, intervalMs: 50 });
  const [fromA, fromB] = await Promise.all([
    a.evaluate((fiberId) => window.fx.collect(fiberId), id),
    b.evaluate((fiberId) => window.fx.collect(fiberId), id),
  ]);
  expect(fromA.map((e) => e.seq)).toEqual(Array.from({ length: 17 }, (_, i) => i + 1));
  expect(fromB).toEqual(fromA);
});
