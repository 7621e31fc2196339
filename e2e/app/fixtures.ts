/**
 * Fixtures for the demo app's specs (`e2e/app/`): a page on the built demo (served by `vite
 * preview` on port 5199) connected to its worker, and helpers to talk to it as a user would.
 * Each test gets a fresh, off-the-record context: its own worker, IndexedDB and settings.
 */

import { test as base, expect, type Locator, type Page } from "@playwright/test";
import type { FiberEvent } from "../../src/core/records";

export { expect };

/** The demo page, connected. */
export interface DemoPage {
  page: Page;
  /** Sets the mock model's delay between tokens (worker settings, via the demo API). */
  setMockDelay(ms: number): Promise<void>;
  /** Types `text` in the composer and sends it with the Send button. */
  send(text: string): Promise<void>;
  /** The last assistant message. */
  lastReply(): Locator;
  /** The fiber id of the last assistant message. */
  lastFiberId(): Promise<string>;
  /** Every chunk of a fiber's stream, read through `window.fiberline.events()`. */
  readStream(fiberId: string): Promise<FiberEvent[]>;
}

/** Opens the demo at `path` and waits until `window.fiberline` is connected. */
export async function openDemo(page: Page, path = "/"): Promise<void> {
  await page.goto(path);
  await expect.poll(() => page.evaluate(() => window.fiberline !== undefined)).toBe(true);
}

export const test = base.extend<{ demo: DemoPage }>({
  demo: async ({ page }, use) => {
    await openDemo(page);
    const demo: DemoPage = {
      page,
      async setMockDelay(ms) {
        const status = await page.evaluate(async (mockDelayMs) => {
          const response = await fetch("/demo-api/settings", {
            method: "PUT",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ mockDelayMs }),
          });
          return response.status;
        }, ms);
        expect(status).toBe(200);
      },
      async send(text) {
        await page.getByTestId("composer-input").fill(text);
        await page.getByTestId("composer-send").click();
      },
      lastReply: () => page.locator('[data-testid="message"][data-role="assistant"]').last(),
      async lastFiberId() {
        const id = await demo.lastReply().getAttribute("data-fiber-id");
        if (!id) throw new Error("The last assistant message has no fiber id.");
        return id;
      },
      readStream: (fiberId) =>
        page.evaluate(async (id) => {
          const client = window.fiberline;
          if (!client) throw new Error("not connected");
          const events = [];
          for await (const event of client.events(id, { after: 0 })) events.push(event);
          return events;
        }, fiberId),
    };
    await use(demo);
  },
});

/** Saves provider settings through the demo API, as the settings page does; expects them accepted. */
export async function saveSettings(page: Page, update: Record<string, unknown>): Promise<void> {
  const status = await page.evaluate(async (body) => {
    const response = await fetch("/demo-api/settings", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return response.status;
  }, update);
  expect(status).toBe(200);
}

/** The assistant text a fiber's stream carries (honouring `message.reset`), as one string. */
export function streamedText(events: FiberEvent[]): string {
  const byMessage = new Map<string, string>();
  for (const event of events) {
    const data = event.data as { messageId?: string; delta?: string };
    if (event.type === "text.delta" && data.messageId)
      byMessage.set(data.messageId, (byMessage.get(data.messageId) ?? "") + (data.delta ?? ""));
    if (event.type === "message.reset" && data.messageId) byMessage.delete(data.messageId);
  }
  return [...byMessage.values()].join("");
}

/** The final assistant content of a completed assistant fiber, from its result. */
export async function finalAnswer(page: Page, fiberId: string): Promise<string> {
  return await page.evaluate(async (id) => {
    // A read issued while the worker restarts is rejected with worker_restarted; reads are safe to repeat.
    const get = async (attempt = 1): Promise<unknown> => {
      try {
        return await window.fiberline?.get(id);
      } catch (error) {
        if ((error as { code?: string }).code !== "worker_restarted" || attempt >= 3) throw error;
        return get(attempt + 1);
      }
    };
    const record = (await get()) as { result?: unknown } | undefined;
    const messages = (record?.result as { messages?: Array<{ role: string; content: string | null }> })
      ?.messages;
    return messages?.[messages.length - 1]?.content ?? "";
  }, fiberId);
}

/** Normalizes rendered text for comparison with Markdown source (whitespace only). */
export function squash(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}
