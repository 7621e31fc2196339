/**
 * The fiber inspector lists every fiber live and shows one fiber's record, journal and stream;
 * the crash lab starts lab fibers and shows the effect ledger's counts.
 */

import { expect, test } from "./fixtures";

test("the inspector lists fibers live and shows a fiber's journal", async ({ demo, page }) => {
  await page.getByRole("link", { name: "Inspector" }).click();
  await expect(page.getByRole("heading", { name: "No fibers yet" })).toBeVisible();
  const id = await page.evaluate(async () => {
    const started = await window.fiberline?.start("lab.ticker", { count: 5, intervalMs: 150 });
    return started?.id ?? "";
  });
  const row = page.locator(`[data-testid="fiber-row"][data-fiber-id="${id}"]`);
  await expect(row).toBeVisible();
  await expect(row).toContainText("lab.ticker");
  await expect(row).toHaveAttribute("data-status", "completed");
  await row.getByRole("link", { name: "lab.ticker" }).click();
  const detail = page.getByTestId("fiber-detail");
  await expect(detail).toBeVisible();
  await expect(detail.getByTestId("journal-row")).toHaveCount(5);
  await expect(detail.getByTestId("recoveries")).toHaveText("0");
  // fiber.start, 5 ticks, fiber.end
  await expect(detail.getByTestId("stream-head")).toHaveText("seq 7");
  await expect(detail.locator(".stream-tail li")).toHaveCount(7);

  await demo.setMockDelay(0);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await demo.send("What is 6 * 7?");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await page.getByRole("link", { name: "Inspector" }).click();
  await expect(page.getByTestId("fiber-row")).toHaveCount(2);
  await expect(page.locator('[data-testid="fiber-row"]', { hasText: "assistant" })).toHaveAttribute(
    "data-status",
    "completed",
  );
});

test("the crash lab starts lab.effects and shows one effect per step", async ({ demo }) => {
  const { page } = demo;
  await page.getByRole("link", { name: "Crash lab" }).click();
  await page.getByLabel("Effects", { exact: true }).fill("4");
  await page.getByLabel("Wait after each (ms)").fill("0");
  await page.getByTestId("start-effects").click();
  const counts = page.getByTestId("effect-counts");
  await expect(counts).toHaveText("4 / 4 effects · 4 executions · 0 re-executions");
  const ledger = await page.evaluate(() => fetch("/demo-api/lab/effects").then((r) => r.json()));
  expect(ledger).toMatchObject({ keys: 4, executions: 4, reExecutions: 0 });
  await page.getByLabel("Ticks").fill("3");
  await page.getByLabel("Step duration (ms)").fill("0");
  await page.getByTestId("start-ticker").click();
  await expect(page.getByTestId("tick-count")).toHaveText("3 / 3 ticks");
  await expect(page.getByTestId("worker-instance")).not.toBeEmpty();
});
