/**
 * The demo chat, as a user sees it: a reply streams token by token and completes; a reload or a
 * stopped worker mid-reply continues it with no duplicated text and a "resumed" marker; Stop
 * really cancels the fiber; tool calls show as cards; approvals gate a tool; model output cannot
 * run script.
 */

import type { Page } from "@playwright/test";
import { expect, finalAnswer, openDemo, squash, streamedText, test } from "./fixtures";

/** The rendered text of the assistant message of `fiberId` (text segments only). */
async function renderedText(page: Page, fiberId: string): Promise<string> {
  const parts = await page
    .locator(`[data-testid="message"][data-fiber-id="${fiberId}"] [data-testid="message-text"]`)
    .allTextContents();
  return squash(parts.join(" "));
}

async function lastReplyLength(page: Page): Promise<number> {
  const parts = await page
    .locator('[data-testid="message"][data-role="assistant"]')
    .last()
    .getByTestId("message-text")
    .allTextContents();
  return parts.join("").length;
}

/** The full reply the mock model gives to `prompt` as a first message, run uninterrupted. */
async function uninterruptedReply(page: Page, prompt: string): Promise<string> {
  return await page.evaluate(async (content) => {
    const client = window.fiberline;
    if (!client) throw new Error("not connected");
    const started = await client.start("assistant", { messages: [{ role: "user", content }] });
    const output = await client.result(started);
    const last = output.messages[output.messages.length - 1];
    return last?.role === "assistant" ? (last.content ?? "") : "";
  }, prompt);
}

test("a reply streams token by token into one message and completes", async ({ demo, page }) => {
  await demo.setMockDelay(25);
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { __texts: string[] }).__texts = seen;
    new MutationObserver(() => {
      const replies = document.querySelectorAll('[data-testid="message"][data-role="assistant"]');
      const last = replies[replies.length - 1];
      if (!last) return;
      const text = [...last.querySelectorAll('[data-testid="message-text"]')]
        .map((e) => e.textContent)
        .join("");
      if (text !== "" && seen[seen.length - 1] !== text) seen.push(text);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await demo.send("Explain durable execution in two sentences");
  await expect(page.locator('[data-testid="message"][data-role="user"]')).toHaveText(
    "Explain durable execution in two sentences",
  );
  await expect(demo.lastReply()).toHaveAttribute("data-status", "streaming");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  const fiberId = await demo.lastFiberId();
  const answer = await finalAnswer(page, fiberId);
  expect(answer.length).toBeGreaterThan(100);
  const texts = await page.evaluate(() => (window as unknown as { __texts: string[] }).__texts);
  // Many intermediate renders, each one the previous text plus more: token by token, in order.
  expect(texts.length).toBeGreaterThan(10);
  for (let i = 1; i < texts.length; i++) expect(texts[i]?.startsWith(texts[i - 1] ?? "")).toBe(true);
  expect(squash(texts[texts.length - 1] ?? "")).toBe(squash(answer));
  expect(await renderedText(page, fiberId)).toBe(squash(answer));
  // The conversation is listed and survives a reload.
  await expect(page.getByTestId("conversation-link")).toHaveCount(1);
  await page.reload();
  await expect(page.getByTestId("conversation-link")).toHaveCount(1);
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  expect(await renderedText(page, fiberId)).toBe(squash(answer));
});

test("reload mid-reply: the reply continues with no duplicated text and a resumed marker", async ({
  demo,
  page,
}) => {
  await demo.setMockDelay(60);
  await demo.send("Tell me why a reload does not lose this reply");
  await expect.poll(() => lastReplyLength(page)).toBeGreaterThan(30);
  const fiberId = await demo.lastFiberId();
  await page.reload();
  await openDemo(page, page.url());
  const reply = page.locator(`[data-testid="message"][data-fiber-id="${fiberId}"]`);
  await expect(reply.getByTestId("resumed-marker")).toHaveAttribute("data-reason", "reattached");
  await expect(reply).toHaveAttribute("data-status", "done");
  const answer = await finalAnswer(page, fiberId);
  expect(await renderedText(page, fiberId)).toBe(squash(answer));
  expect(streamedText(await demo.readStream(fiberId))).toBe(answer);
  await demo.setMockDelay(0);
  expect(answer).toBe(await uninterruptedReply(page, "Tell me why a reload does not lose this reply"));
});

test("worker stopped mid-reply: the fiber is recovered, the reply continues seamlessly", async ({
  demo,
  page,
}) => {
  await demo.setMockDelay(60);
  const prompt = "What happens when the Service Worker dies mid-sentence?";
  await demo.send(prompt);
  await expect.poll(() => lastReplyLength(page)).toBeGreaterThan(30);
  const fiberId = await demo.lastFiberId();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("ServiceWorker.enable");
  await cdp.send("ServiceWorker.stopAllWorkers");
  const reply = page.locator(`[data-testid="message"][data-fiber-id="${fiberId}"]`);
  await expect(reply.getByTestId("resumed-marker")).toHaveAttribute("data-reason", "recovered");
  await expect(reply).toHaveAttribute("data-status", "done");
  const events = await demo.readStream(fiberId);
  expect(events.filter((e) => e.type === "fiber.recovered")).toHaveLength(1);
  const answer = await finalAnswer(page, fiberId);
  expect(streamedText(events)).toBe(answer);
  expect(await renderedText(page, fiberId)).toBe(squash(answer));
  // Continued, not restarted or repeated: the same words as an uninterrupted run.
  await demo.setMockDelay(0);
  expect(answer).toBe(await uninterruptedReply(page, prompt));
});

test("a provider that cannot continue: the cut-off reply restarts after message.reset and shows once", async ({
  demo,
  page,
}) => {
  // The mock endpoint as a custom provider without prefix continuation (like OpenAI's own API).
  const saved = await page.evaluate(async () => {
    const response = await fetch("/demo-api/settings", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        provider: "custom",
        baseUrl: `${location.origin}/mock-model/v1`,
        model: "mock",
        continuation: false,
      }),
    });
    return response.status;
  });
  expect(saved).toBe(200);
  await demo.send("Why is a reset better than a garbled reply?");
  await expect.poll(() => lastReplyLength(page)).toBeGreaterThan(30);
  const fiberId = await demo.lastFiberId();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("ServiceWorker.enable");
  await cdp.send("ServiceWorker.stopAllWorkers");
  const reply = page.locator(`[data-testid="message"][data-fiber-id="${fiberId}"]`);
  await expect(reply.getByTestId("resumed-marker")).toHaveAttribute("data-reason", "recovered");
  await expect(reply).toHaveAttribute("data-status", "done");
  const events = await demo.readStream(fiberId);
  expect(events.filter((e) => e.type === "message.reset")).toHaveLength(1);
  const answer = await finalAnswer(page, fiberId);
  expect(streamedText(events)).toBe(answer);
  expect(await renderedText(page, fiberId)).toBe(squash(answer));
  // The partial text did stream before the reset; the page dropped it instead of showing it twice.
  const raw = events
    .filter((e) => e.type === "text.delta")
    .map((e) => (e.data as { delta: string }).delta)
    .join("");
  expect(raw.length).toBeGreaterThan(answer.length);
});

test("Stop cancels the reply's fiber; the text stops where it was", async ({ demo, page }) => {
  await demo.setMockDelay(80);
  const prompt = "Talk slowly about cancellation";
  await demo.send(prompt);
  await expect.poll(() => lastReplyLength(page)).toBeGreaterThan(20);
  const fiberId = await demo.lastFiberId();
  await page.getByTestId("composer-stop").click();
  const reply = page.locator(`[data-testid="message"][data-fiber-id="${fiberId}"]`);
  await expect(reply).toHaveAttribute("data-outcome", "cancelled");
  await expect(reply.getByTestId("stopped-note")).toBeVisible();
  await expect(page.getByTestId("composer-send")).toBeVisible();
  expect(await page.evaluate((id) => window.fiberline?.get(id).then((r) => r?.status), fiberId)).toBe(
    "cancelled",
  );
  const events = await demo.readStream(fiberId);
  expect(events[events.length - 1]).toMatchObject({ type: "fiber.end", data: { status: "cancelled" } });
  const stopped = streamedText(events);
  expect(await renderedText(page, fiberId)).toBe(squash(stopped));
  await demo.setMockDelay(0);
  const full = await uninterruptedReply(page, prompt);
  expect(full.startsWith(stopped)).toBe(true);
  expect(stopped.length).toBeLessThan(full.length);
});

test("a calculator prompt shows a tool card with arguments, status and result", async ({ demo }) => {
  await demo.setMockDelay(5);
  await demo.send("What is (17 + 4) * 12?");
  const card = demo.lastReply().getByTestId("tool-card");
  await expect(card).toHaveAttribute("data-tool", "calculator");
  await expect(card).toHaveAttribute("data-status", "ok");
  await expect(card).toContainText('"expression": "(17 + 4) * 12"');
  await expect(card.getByTestId("tool-result")).toContainText('"value": 252');
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await expect(demo.lastReply().getByTestId("message-text")).toContainText("(17 + 4) * 12 = 252");
});

test("approval: approving runs the tool, denying does not", async ({ demo, page }) => {
  await demo.setMockDelay(5);
  await demo.send('Please delete "report.txt"');
  const card = demo.lastReply().getByTestId("tool-card");
  await expect(card).toHaveAttribute("data-status", "awaiting-approval");
  await expect(card).toContainText('"path": "report.txt"');
  await card.getByTestId("approve").click();
  await expect(card).toHaveAttribute("data-status", "ok");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await expect(demo.lastReply().getByTestId("message-text")).toContainText("I deleted report.txt");
  const deletions = await page.evaluate(() => fetch("/demo-api/deletions").then((r) => r.json()));
  expect(deletions).toEqual([expect.objectContaining({ path: "report.txt" })]);

  await demo.send('Now delete "budget.xlsx"');
  const second = demo.lastReply().getByTestId("tool-card");
  await expect(second).toHaveAttribute("data-status", "awaiting-approval");
  await second.getByTestId("deny").click();
  await expect(second).toHaveAttribute("data-status", "denied");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await expect(demo.lastReply().getByTestId("message-text")).toContainText("I did not delete budget.xlsx");
  const after = await page.evaluate(() => fetch("/demo-api/deletions").then((r) => r.json()));
  expect(after).toHaveLength(1);
});

test("hostile Markdown from the model is inert: no script runs, no javascript: link exists", async ({
  demo,
  page,
}) => {
  const dialogs: string[] = [];
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  await demo.setMockDelay(0);
  await demo.send("Show me some hostile markdown");
  const reply = demo.lastReply();
  await expect(reply).toHaveAttribute("data-status", "done");
  await expect(reply.getByTestId("message-text")).toContainText("hostile markdown for the XSS test");
  await expect(reply.getByText("A harmless-looking link")).toBeVisible();
  expect(
    await page.evaluate(() => (window as unknown as { __fiberlineXss?: boolean }).__fiberlineXss),
  ).toBeUndefined();
  expect(dialogs).toEqual([]);
  expect(await page.locator('[href^="javascript:" i]').count()).toBe(0);
  expect(await reply.locator("script, img, iframe, [onerror]").count()).toBe(0);
});

test("keyboard only: the composer is labelled, Enter sends, the reply is announced politely", async ({
  demo,
  page,
}) => {
  await demo.setMockDelay(0);
  const input = page.getByLabel("Message", { exact: true });
  await input.focus();
  await page.keyboard.type("What time is it?");
  await page.keyboard.press("Enter");
  await expect(page.locator('[data-testid="message"][data-role="user"]')).toHaveText("What time is it?");
  await expect(demo.lastReply().getByTestId("tool-card")).toHaveAttribute("data-tool", "clock");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await expect(input).toBeFocused();
  await expect(page.locator(".messages")).toHaveAttribute("aria-live", "polite");
});

test("phone width: nothing overflows sideways and the conversation drawer opens", async ({ demo, page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await demo.setMockDelay(0);
  await demo.send("Hello from a phone");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  for (const hash of ["#/chat", "#/inspector", "#/lab", "#/settings"]) {
    await page.evaluate((h) => {
      window.location.hash = h;
    }, hash);
    await expect
      .poll(() =>
        page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth),
      )
      .toBeLessThanOrEqual(0);
  }
  await page.evaluate(() => {
    window.location.hash = "#/chat";
  });
  await expect(page.getByTestId("conversation-link")).toBeHidden();
  await page.getByRole("button", { name: "Conversations" }).click();
  await expect(page.getByTestId("conversation-link")).toBeVisible();
});

test("the model's reasoning shows collapsed above its answer, and opens on request", async ({ demo }) => {
  await demo.setMockDelay(0);
  await demo.send("Think it over: why do agent loops need durable execution?");
  const reply = demo.lastReply();
  await expect(reply).toHaveAttribute("data-status", "done");
  const reasoning = reply.getByTestId("reasoning");
  await expect(reasoning).toHaveCount(1);
  await expect(reasoning).not.toHaveAttribute("open");
  const text = reasoning.locator(".reasoning-text");
  await expect(text).toBeHidden();
  await reasoning.locator("summary").click();
  await expect(text).toBeVisible();
  await expect(text).not.toBeEmpty();
  // The answer is text of its own; the reasoning is not part of it.
  const answer = (await reply.getByTestId("message-text").textContent()) ?? "";
  expect(answer.length).toBeGreaterThan(0);
  expect(answer).not.toContain(((await text.textContent()) ?? "").slice(0, 40));
});
