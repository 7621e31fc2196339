/**
 * `fiberline/extension` in real Chromium: the example extension (`examples/extension`) loaded
 * unpacked, its assistant and reminder fibers driven from the side panel page. The background
 * worker is stopped mid-reply, the browser is SIGKILLed mid-reply, a reminder sleeps through a
 * stopped worker: each time the fiber finishes with every extension page closed, woken by the
 * host's alarm or by the browser starting, and the side panel's stream is contiguous and has
 * each chunk once.
 */

import type { Page } from "@playwright/test";
import type { AgentOutput } from "../../src/agent/index";
import { type ExtensionBrowser, expect, panelLog, submit, test } from "./extension-browser";

// Up to one heartbeat alarm (30 s) of waiting per test, plus a reply of ~7 s.
test.describe.configure({ timeout: 120_000 });

/** Waits, with no extension page open, until the fiber has ended; returns its record. */
async function endsInBackground(ext: ExtensionBrowser, id: string, timeout: number) {
  await expect
    .poll(async () => (await ext.fiber(id).catch(() => undefined))?.status, { timeout, intervals: [1_000] })
    .toBe("completed");
  expect(ext.extensionPagesOpen()).toBe(false);
  const record = await ext.fiber(id);
  if (!record) throw new Error(`fiber ${id} vanished`);
  return record;
}

/** The panel shows fiber `id` whole: seq 1..n each once, one fiber.start, ending in fiber.end. */
async function expectWholeStream(panel: Page): Promise<void> {
  await expect.poll(async () => (await panelLog(panel)).at(-1)?.type, { timeout: 30_000 }).toBe("fiber.end");
  const log = await panelLog(panel);
  expect(log.map((c) => c.seq)).toEqual(log.map((_, i) => i + 1));
  expect(log.filter((c) => c.type === "fiber.start")).toHaveLength(1);
  expect(log.filter((c) => c.type === "fiber.end")).toHaveLength(1);
}

/** The reply the panel shows is the agent's final message: the cut-off reply continued seamlessly. */
async function expectSeamlessReply(panel: Page, result: unknown): Promise<void> {
  const final = (result as AgentOutput).messages.at(-1);
  expect(final?.role).toBe("assistant");
  expect(typeof final?.content === "string" && final.content.length > 100).toBe(true);
  await expect(panel.locator("#reply")).toHaveText(String(final?.content));
}

test("the worker stopped mid-reply with every page closed resumes the reply when its alarm starts it", async ({
  ext,
}) => {
  const panel = await ext.openPanel();
  const id = await submit(panel, "#ask", { "#prompt": "Tell me about durable execution" });
  await expect
    .poll(async () => (await panelLog(panel)).filter((c) => c.type === "text.delta").length)
    .toBeGreaterThan(5);
  await ext.closeExtensionPages();
  await ext.stopWorker();
  expect(await ext.workerRunning()).toBe(false);

  // Nothing but the host's heartbeat alarm (at most 30 s away) can start the worker now.
  await expect.poll(() => ext.workerRunning(), { timeout: 45_000, intervals: [1_000] }).toBe(true);
  const record = await endsInBackground(ext, id, 30_000);
  expect(record.recovery?.count).toBeGreaterThanOrEqual(1);

  const again = await ext.openPanel(id);
  await expectWholeStream(again);
  expect((await panelLog(again)).some((c) => c.type === "fiber.recovered")).toBe(true);
  await expectSeamlessReply(again, record.result);
});

test("the browser SIGKILLed mid-reply finishes the reply when it starts again, with no page open", async ({
  ext,
}) => {
  const panel = await ext.openPanel();
  const id = await submit(panel, "#ask", { "#prompt": "Write a long story about a lighthouse" });
  await expect
    .poll(async () => (await panelLog(panel)).filter((c) => c.type === "text.delta").length)
    .toBeGreaterThan(5);
  await ext.crashAndRelaunch();
  expect(ext.extensionPagesOpen()).toBe(false);

  // The worker starts with the browser (runtime.onStartup) and recovers the fiber.
  const record = await endsInBackground(ext, id, 45_000);
  expect(record.recovery?.count).toBeGreaterThanOrEqual(1);

  const again = await ext.openPanel(id);
  await expectWholeStream(again);
  await expectSeamlessReply(again, record.result);
});

test("a reminder's timer fires while the worker is stopped and every extension page is closed", async ({
  ext,
}) => {
  const panel = await ext.openPanel();
  const id = await submit(panel, "#remind", { "#remind-text": "Stretch your legs", "#remind-seconds": "6" });
  await expect.poll(async () => (await ext.fiber(id))?.status).toBe("sleeping");
  const wakeAt = (await ext.fiber(id))?.wakeAt ?? 0;
  await ext.closeExtensionPages();
  await ext.stopWorker();
  expect(await ext.workerRunning()).toBe(false);

  // The alarm (an unpacked extension's minimum delay is 1 s) starts the worker for the timer.
  await expect.poll(() => ext.workerRunning(), { timeout: 45_000, intervals: [500] }).toBe(true);
  const record = await endsInBackground(ext, id, 30_000);
  const { firedAt } = record.result as { firedAt: number };
  expect(firedAt).toBeGreaterThanOrEqual(wakeAt); // never early

  const again = await ext.openPanel(id);
  await expectWholeStream(again);
  await expect(again.locator("#reply")).toHaveText("⏰ Stretch your legs");
});

test("the side panel's stream stays contiguous and exactly once across a worker stop while it reads", async ({
  ext,
}) => {
  const panel = await ext.openPanel();
  await submit(panel, "#ask", { "#prompt": "What makes a loop durable?" });
  await expect
    .poll(async () => (await panelLog(panel)).filter((c) => c.type === "text.delta").length)
    .toBeGreaterThan(5);
  await ext.stopWorker();
  // The panel's reader sees its port drop and reconnects from its last seq, which starts the worker.
  await expectWholeStream(panel);
  expect((await panelLog(panel)).some((c) => c.type === "fiber.recovered")).toBe(true);
  const id = await panel.evaluate(() => localStorage.getItem("fiberline-example/current"));
  const record = await ext.fiber(String(id));
  await expectSeamlessReply(panel, record?.result);
});
