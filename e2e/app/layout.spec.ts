/**
 * Layout as a person meets it (issue 16): the phone's conversation drawer is a real modal (a
 * scrim that closes it and takes the taps, Escape, focus in and back) and the phone chat opens
 * at its welcome; a "Resumed" marker stays on its reply; the list's running dot follows replies
 * that end while their conversation is closed; inspector rows say what each fiber is about,
 * disclosures show their triangle, nothing is clipped or scrolls sideways; the crash lab's
 * controls are in view on a laptop, its counts read right and its step duration takes 1.5.
 */

import type { Page } from "@playwright/test";
import { expect, openDemo, test } from "./fixtures";

const PHONE = { width: 390, height: 844 };
const LAPTOP = { width: 1280, height: 800 };

async function stopWorker(page: Page): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("ServiceWorker.enable");
  await cdp.send("ServiceWorker.stopAllWorkers");
}

test("phone: the chat opens at its welcome, and the drawer is a modal with a scrim", async ({
  demo,
  page,
}) => {
  await page.setViewportSize(PHONE);
  await openDemo(page, "/#/chat");
  const welcome = page.getByRole("heading", { name: "Chat with an agent that survives crashes" });
  await expect(welcome).toBeInViewport();
  await demo.setMockDelay(0);
  await demo.send("Hello from a phone");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await page.evaluate(() => {
    window.location.hash = "#/chat";
  });
  await expect(welcome).toBeInViewport();

  const toggle = page.getByRole("button", { name: "☰ Conversations" });
  await toggle.click();
  const drawer = page.getByRole("complementary", { name: "Conversations" });
  await expect(drawer.getByTestId("conversation-link")).toBeVisible();
  // Focus went into the drawer.
  await expect.poll(() => drawer.evaluate((el) => el.contains(document.activeElement))).toBe(true);
  // A tap where a suggestion chip is does not reach it: nothing is sent.
  const chip = page.getByRole("button", { name: "What time is it?" });
  const box = await chip.boundingBox();
  if (!box) throw new Error("the chip has no box");
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await expect(page.getByTestId("conversation-link")).toHaveCount(1);
  await expect(page.locator('[data-testid="message"]')).toHaveCount(0);
  // A tap on the dimmed area beside the drawer closes it.
  await page.mouse.click(PHONE.width - 10, PHONE.height / 2);
  await expect(drawer.getByTestId("conversation-link")).toBeHidden();
  await expect(page.getByTestId("conversation-link")).toHaveCount(1);
  await expect(page.locator('[data-testid="message"]')).toHaveCount(0);
  await expect(toggle).toBeFocused();

  // Escape closes it too, and focus comes back to the toggle.
  await toggle.click();
  await expect(page.getByTestId("drawer-scrim")).toBeVisible();
  await page.keyboard.press("Escape");
  await expect(page.getByTestId("drawer-scrim")).toHaveCount(0);
  await expect(toggle).toBeFocused();
  // Its own close button, reachable inside the drawer.
  await toggle.click();
  await drawer.getByRole("button", { name: "Close the conversation list" }).click();
  await expect(drawer.getByTestId("conversation-link")).toBeHidden();
});

test("the Resumed marker stays on a reply that completed, also after another reload", async ({
  demo,
  page,
}) => {
  await demo.setMockDelay(60);
  await demo.send("Tell me why a reload does not lose this reply");
  await expect(demo.lastReply().getByTestId("message-text")).toBeVisible();
  const fiberId = await demo.lastFiberId();
  await page.reload();
  await openDemo(page, page.url());
  const reply = page.locator(`[data-testid="message"][data-fiber-id="${fiberId}"]`);
  await expect(reply.getByTestId("resumed-marker")).toHaveAttribute("data-reason", "reattached");
  await expect(reply).toHaveAttribute("data-status", "done");
  await expect(reply.getByTestId("resumed-marker")).toBeVisible();
  await page.reload();
  await openDemo(page, page.url());
  await expect(reply).toHaveAttribute("data-status", "done");
  await expect(reply.getByTestId("resumed-marker")).toHaveAttribute("data-reason", "reattached");
});

test("the running dot goes out for a reply that ended while its conversation was closed", async ({
  demo,
  page,
}) => {
  await demo.setMockDelay(40);
  await demo.send("Explain durable execution in two sentences");
  const fiberId = await demo.lastFiberId();
  await page.getByRole("button", { name: "+ New" }).click();
  const link = page.getByTestId("conversation-link");
  await expect(link.locator(".dot.live")).toBeVisible();
  await expect
    .poll(() => page.evaluate((id) => window.fiberline?.get(id).then((r) => r?.status), fiberId), {
      timeout: 30_000,
    })
    .toBe("completed");
  await expect(link.locator(".dot.live")).toHaveCount(0);
  // Opening it shows the finished reply.
  await link.click();
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
});

test("inspector: rows say what each fiber is about; disclosures show a triangle; nothing clipped", async ({
  demo,
  page,
}) => {
  await page.setViewportSize(LAPTOP);
  await demo.setMockDelay(0);
  await demo.send("What is 6 * 7?");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  // Enough fibers for the list to scroll.
  await page.evaluate(async () => {
    for (let i = 0; i < 30; i++) await window.fiberline?.start("lab.ticker", { count: 1, intervalMs: 0 });
  });
  await page.getByRole("link", { name: "Inspector" }).click();
  const assistantRow = page.locator('[data-testid="fiber-row"]', { hasText: "assistant" });
  await expect(assistantRow.getByTestId("fiber-what")).toContainText("“What is 6 * 7?”");
  await expect(assistantRow.getByTestId("fiber-what")).toContainText("in “What is 6 * 7?”");
  await expect(page.getByTestId("fiber-row").first().getByTestId("fiber-what")).toContainText("crash lab");
  // The Stream column stays inside the panel, the list scrolling or not.
  const panel = page.locator(".fiber-list-panel");
  await expect.poll(() => panel.evaluate((el) => el.scrollHeight > el.clientHeight)).toBe(true);
  const overflow = await panel.evaluate((el) => {
    const wrap = el.querySelector(".table-wrap");
    return wrap ? wrap.scrollWidth - wrap.clientWidth : -1;
  });
  expect(overflow).toBe(0);

  await assistantRow.getByRole("link", { name: "assistant" }).click();
  const input = page.getByTestId("fiber-detail").locator("summary", { hasText: "Input" });
  const marker = () => input.evaluate((el) => getComputedStyle(el, "::before").content);
  expect(await marker()).toBe('"▸"');
  const turned = () => input.evaluate((el) => getComputedStyle(el, "::before").transform);
  expect(await turned()).toBe("none");
  await input.click();
  await expect.poll(turned).not.toBe("none");
  await expect(page.getByTestId("fiber-detail").locator("pre", { hasText: "historyRef" })).toBeVisible();

  // On a phone, the journal wraps instead of scrolling sideways.
  await page.setViewportSize(PHONE);
  await expect(page.getByTestId("journal-row").first()).toBeVisible();
  const sideways = await page.evaluate(() =>
    [...document.querySelectorAll(".table-wrap, .fiber-detail, .json-block")]
      .filter((el) => el.scrollWidth > el.clientWidth)
      .map((el) => `${el.className}: ${el.scrollWidth - el.clientWidth} px`),
  );
  expect(sideways).toEqual([]);
});

test("crash lab: controls in view at 1280x800, step duration 1.5, and '1 re-execution'", async ({
  demo,
  page,
}) => {
  await page.setViewportSize(LAPTOP);
  await page.getByRole("link", { name: "Crash lab" }).click();
  await expect(page.getByTestId("start-ticker")).toBeInViewport();
  await expect(page.getByTestId("start-effects")).toBeInViewport();

  const duration = page.getByLabel("Step duration (ms)");
  await duration.fill("1.5");
  expect(await duration.evaluate((el) => (el as HTMLInputElement).validity.valid)).toBe(true);
  await page.getByLabel("Ticks").fill("3");
  await page.getByTestId("start-ticker").click();
  await expect(page.getByTestId("tick-count")).toHaveText("3 / 3 ticks");
  const ticker = await page.evaluate(() => window.fiberline?.list({ name: "lab.ticker" }));
  expect(ticker?.[0]?.input).toEqual({ count: 3, intervalMs: 1.5 });

  // A worker stopped while a step waits after its effect: that step runs again, once.
  await page.getByLabel("Effects", { exact: true }).fill("3");
  await page.getByLabel("Wait after each (ms)").fill("2000");
  await page.getByTestId("start-effects").click();
  const counts = page.getByTestId("effect-counts");
  await expect(counts).toContainText("1 / 3 effects · 1 execution ·");
  await stopWorker(page);
  await expect(counts).toHaveText("3 / 3 effects · 4 executions · 1 re-execution", { timeout: 30_000 });
  await demo.setMockDelay(35);
});
