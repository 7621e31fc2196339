/**
 * A second worker version installed while a fiber runs (an update with `skipWaiting`) never runs
 * the fiber in two places: Web Locks and fencing decide. The fixture's effects fiber records every
 * step execution with the worker instance that ran it, so these specs can check that no step
 * completed twice and that no two executions overlapped.
 */

import type { Page } from "@playwright/test";
import type { Execution } from "./fixture/effects-db";
import { expect, readerDone, seenAtLeast, seenBy, startFiber, test } from "./support/fixtures";

const STEPS = 16;

async function deployVersion2(page: Page): Promise<void> {
  await page.evaluate(() => navigator.serviceWorker.register("/sw.js?v=2", { type: "module", scope: "/" }));
}

/** The fiber completed, the page saw every chunk once, and every step completed exactly once, never overlapping. */
async function expectRanOnce(page: Page, id: string, steps = STEPS): Promise<Execution[]> {
  await readerDone(page, id);
  const log = await seenBy(page, id);
  expect(log.map((c) => c.seq)).toEqual(log.map((_, i) => i + 1));
  expect(log.filter((c) => c.type === "effect").map((c) => (c.data as { i: number }).i)).toEqual(
    Array.from({ length: steps }, (_, i) => i + 1),
  );
  expect(log.at(-1)?.data).toEqual({ status: "completed", result: { steps } });
  const runs: Execution[] = await page.evaluate((fiberId) => window.fx.executions(fiberId), id);
  const completed = runs.filter((r) => r.endedAt !== undefined).map((r) => r.key);
  expect(completed).toHaveLength(steps);
  expect(new Set(completed).size).toBe(steps);
  const ordered = runs.toSorted((a, b) => a.beganAt - b.beganAt);
  for (let i = 1; i < ordered.length; i++) {
    const previous = ordered[i - 1] as Execution;
    const next = ordered[i] as Execution;
    // An execution cut off by a worker stop has no end; any other one ended before the next began.
    if (previous.endedAt !== undefined)
      expect(previous.endedAt, `${next.key} by ${next.runner}`).toBeLessThanOrEqual(next.beganAt);
  }
  return runs;
}

test("a new version installed mid-run leaves the running fiber to the old one: every step runs once", async ({
  session,
}) => {
  const page = await session.open();
  const { id } = await startFiber(page, "effects", { steps: STEPS, stepMs: 250 });
  await session.goto(page, `/?read=${id}`);
  await seenAtLeast(page, id, 4);
  // Version 2 installs (and runs recover() in its install event) while version 1 runs the fiber.
  await deployVersion2(page);
  await expect
    .poll(() => page.evaluate(() => navigator.serviceWorker.controller?.scriptURL))
    .toMatch(/\?v=2$/);
  await expectRanOnce(page, id);
  await expect
    .poll(() =>
      page.evaluate(async () => (await (await window.fx.client()).heartbeat()).scriptUrl).catch(() => ""),
    )
    .toMatch(/\?v=2$/);
});

test("the old version stopped mid-run after a new one installed: the new version finishes the fiber", async ({
  session,
}) => {
  const page = await session.open();
  // Long enough (100 x 200 ms) that version 1 is still running when version 2 has installed: the
  // stop must land mid-run for version 2 to have anything to finish. It lands 7-9 s in, so 40 steps
  // (8 s) left version 2 nothing in one clean-clone CI run in three.
  const steps = 100;
  const { id } = await startFiber(page, "effects", { steps, stepMs: 200 });
  await session.goto(page, `/?read=${id}`);
  await seenAtLeast(page, id, 4);
  await deployVersion2(page);
  // Version 2 waits to activate while version 1 is busy; stop version 1 mid-run.
  await expect
    .poll(() =>
      page.evaluate(async () => {
        const registration = await navigator.serviceWorker.getRegistration("/");
        return (registration?.waiting ?? registration?.active)?.scriptURL ?? "";
      }),
    )
    .toMatch(/\?v=2$/);
  await session.stopWorkers(page);
  const runs = await expectRanOnce(page, id, steps);
  const versions = new Set(runs.map((r) => r.runner.split(":")[0]));
  expect(versions).toEqual(new Set(["v1", "v2"]));
  // Version 1 never ran a step after version 2 began.
  const firstByV2 = Math.min(...runs.filter((r) => r.runner.startsWith("v2:")).map((r) => r.beganAt));
  expect(runs.filter((r) => r.runner.startsWith("v1:") && r.beganAt > firstByV2)).toEqual([]);
});
