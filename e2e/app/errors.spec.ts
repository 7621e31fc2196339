/**
 * Errors and retries a person understands (issue 16): a model that cannot be reached shows each
 * retry as it happens, also on a page reloaded after the worker stopped during a retry's wait,
 * and ends with a sentence plus details; offline, a reply waits for the
 * network instead of spending attempts; settings refuse a key or model id that could never work;
 * a key that slipped in before that fails the reply at once; a problem shown for one
 * conversation does not follow to another; and a lost stream is picked up again without reload.
 */

import type { Page } from "@playwright/test";
import type { ModelCallStatus } from "../../app/shared/demo-api";
import { expect, openDemo, saveSettings, test } from "./fixtures";

/** The worker's view of a reply's model call. */
function modelCall(page: Page, fiberId: string): Promise<ModelCallStatus | null> {
  return page.evaluate(
    (id) => fetch(`/demo-api/model-call?fiberId=${encodeURIComponent(id)}`).then((r) => r.json()),
    fiberId,
  );
}

test("an unreachable model: each retry is shown, then a sentence and the details", async ({ demo, page }) => {
  // Nothing listens on port 9: every request fails at once, as an unreachable endpoint does.
  await saveSettings(page, { provider: "custom", baseUrl: "http://127.0.0.1:9/v1", model: "gpt-4o-mini" });
  await demo.send("Hello?");
  const reply = demo.lastReply();
  const progress = reply.getByTestId("model-progress");
  await expect(progress).toContainText(/Attempt 2 of 5, next in \d+ s/);
  await expect(reply.getByTestId("model-progress-reason")).toContainText("Could not reach");
  await expect(progress).toContainText(/Attempt [345] of 5, next in \d+ s/, { timeout: 30_000 });

  await expect(reply).toHaveAttribute("data-outcome", "failed", { timeout: 45_000 });
  const note = reply.getByTestId("failure-note");
  await expect(note).toContainText(
    "The reply failed: the model could not be reached. Check your connection and the base URL in Settings",
  );
  const details = note.locator("details");
  await expect(details.locator("pre")).toBeHidden();
  await details.locator("summary").click();
  await expect(details.locator("pre")).toContainText("model_error: Could not reach");
  const fiberId = await demo.lastFiberId();
  expect(await modelCall(page, fiberId)).toMatchObject({ attempt: 5, maxAttempts: 5, state: "failed" });
  await expect(reply.getByRole("button", { name: "Ask again" })).toBeVisible();
});

test("a worker stopped during a retry's wait: the reloaded page shows the same attempt, and the count goes on", async ({
  demo,
  page,
}) => {
  test.setTimeout(90_000);
  await saveSettings(page, { provider: "custom", baseUrl: "http://127.0.0.1:9/v1", model: "gpt-4o-mini" });
  await demo.send("Hello?");
  const progress = demo.lastReply().getByTestId("model-progress");
  // Attempts 1 and 2 failed; the 2 s wait before attempt 3 has begun.
  await expect(progress).toContainText(/Attempt 3 of 5, next in \d+ s/, { timeout: 30_000 });
  const fiberId = await demo.lastFiberId();

  // Every text the reply's progress line shows after the reload, in order, as painted (frame by frame).
  await page.addInitScript(() => {
    const seen: string[] = [];
    (window as unknown as { __progress: string[] }).__progress = seen;
    const look = () => {
      const text = document.querySelector('[data-testid="model-progress"]')?.textContent ?? "";
      if (text !== "" && text !== seen.at(-1)) seen.push(text);
      requestAnimationFrame(look);
    };
    requestAnimationFrame(look);
  });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("ServiceWorker.enable");
  await cdp.send("ServiceWorker.stopAllWorkers");
  await page.reload();
  await openDemo(page, page.url());

  const reply = page.locator(`[data-testid="message"][data-fiber-id="${fiberId}"]`);
  await expect(reply.getByTestId("model-progress")).toContainText(/[Aa]ttempt 4 of 5/, { timeout: 30_000 });
  const shown = await page.evaluate(() => (window as unknown as { __progress: string[] }).__progress);
  const attempts = shown.flatMap((text) => /[Aa]ttempt (\d) of 5/.exec(text)?.[1] ?? []).map(Number);
  // The reloaded page picked up at attempt 3 or later (from the stream), never at 1 or 2 as a
  // worker counting in memory would after its restart, and never went back.
  expect(attempts[0]).toBeGreaterThanOrEqual(3);
  expect(attempts).toEqual([...attempts].sort((a, b) => a - b));
  await expect(reply.getByTestId("model-progress-reason")).toContainText("Could not reach");

  await expect(reply).toHaveAttribute("data-outcome", "failed", { timeout: 45_000 });
  const events = await demo.readStream(fiberId);
  // The worker did restart mid-call, and the agent went on counting: 5 requests in all.
  expect(events.some((e) => e.type === "fiber.recovered")).toBe(true);
  expect(
    events.filter((e) => e.type === "message.retry").map((e) => (e.data as { attempt: number }).attempt),
  ).toEqual([2, 3, 4, 5]);
});

test("the AI SDK chat shows the retries too, and again after a reload during a wait", async ({
  demo,
  page,
}) => {
  test.setTimeout(90_000);
  await saveSettings(page, { provider: "custom", baseUrl: "http://127.0.0.1:9/v1", model: "gpt-4o-mini" });
  await page.getByRole("link", { name: "AI SDK chat" }).click();
  await page.getByTestId("ai-input").fill("Hello?");
  await page.getByTestId("ai-send").click();
  const retry = page.getByTestId("ai-retry");
  await expect(retry).toContainText(/Attempt 2 of 5, next in \d+ s/);
  await expect(retry).toContainText("Could not reach");
  // The 4 s wait before attempt 4: long enough to reload into.
  await expect(retry).toContainText(/Attempt 4 of 5, next in \d+ s/, { timeout: 30_000 });
  await page.reload();
  await openDemo(page, page.url());
  await expect(page.getByTestId("ai-retry")).toContainText(/Attempt [45] of 5, next in \d+ s/, {
    timeout: 30_000,
  });
  await expect(page.getByTestId("ai-error")).toBeVisible({ timeout: 45_000 });
  await expect(page.getByTestId("ai-retry")).toHaveCount(0);
  await demo.setMockDelay(0);
});

test("offline: the reply says so and waits for the network, then completes", async ({
  demo,
  page,
  context,
}) => {
  await demo.setMockDelay(0);
  await context.setOffline(true);
  await demo.send("What is 6 * 7?");
  const reply = demo.lastReply();
  await expect(reply.getByTestId("model-progress")).toContainText(
    "You are offline. The reply waits for the network and goes on by itself when you are back online.",
  );
  const fiberId = await demo.lastFiberId();
  // The worker holds the request back instead of spending attempts on a network that is not there.
  await expect.poll(() => modelCall(page, fiberId)).toMatchObject({ attempt: 1, state: "offline" });
  await expect(reply).toHaveAttribute("data-outcome", "running");

  const back = Date.now();
  await context.setOffline(false);
  await expect(reply.getByTestId("tool-card")).toBeVisible();
  // Reported, not asserted: docs/demo.md quotes it (FIBERLINE_MEASURE=1 prints it).
  const resumedAfterMs = Date.now() - back;
  test.info().annotations.push({ type: "back online to first output", description: `${resumedAfterMs} ms` });
  if (process.env.FIBERLINE_MEASURE)
    console.log(`back online to the reply's first output: ${resumedAfterMs} ms`);
  await expect(reply).toHaveAttribute("data-outcome", "completed");
  await expect(reply.getByTestId("tool-card")).toHaveAttribute("data-status", "ok");
  expect(await modelCall(page, fiberId)).toMatchObject({ attempt: 1, state: "done" });
});

test("settings refuse an API key or model id that could never work, saying why", async ({ demo }) => {
  const { page } = demo;
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByTestId("provider-custom").check();
  await page.getByLabel("Base URL").fill("https://api.example.com/v1");
  await page.getByTestId("model").fill("gpt-4o-mini");
  await page.getByLabel("API key").fill("sk-🔑-ключ");
  await expect(page.getByTestId("key-problem")).toContainText("an HTTP header cannot carry");
  await page.getByTestId("save-settings").click();
  await expect(page.getByTestId("settings-status")).toContainText("The API key contains “🔑”");
  await page.getByLabel("API key").fill("sk-valid-key-123");
  await expect(page.getByTestId("key-problem")).toHaveCount(0);
  await page.getByTestId("model").fill("m".repeat(100_000));
  await expect(page.getByTestId("model-problem")).toContainText("100000 characters long");
  await page.getByTestId("model").fill("gpt 4o");
  await expect(page.getByTestId("model-problem")).toContainText("contains a space");
  await page.getByTestId("model").fill("meta-llama/Llama-3.1-8B-Instruct:free");
  await page.getByTestId("save-settings").click();
  await expect(page.getByTestId("settings-status")).toHaveText("Saved. The next reply uses these settings.");

  // The worker applies the same rules to anything that reaches it.
  const refused = await page.evaluate(async () => {
    const put = (body: unknown) =>
      fetch("/demo-api/settings", {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }).then(async (r) => ({ status: r.status, body: await r.json() }));
    return [await put({ apiKey: "ключ" }), await put({ model: "x".repeat(300) })];
  });
  expect(refused[0]).toMatchObject({ status: 400, body: { error: { code: "invalid_settings" } } });
  expect(refused[0]?.body.error.message).toContain("The API key contains “к”");
  expect(refused[1]?.body.error.message).toContain("300 characters long");
});

test("a key saved before validation fails the reply at once, saying what to fix", async ({ demo, page }) => {
  await saveSettings(page, {
    provider: "custom",
    baseUrl: new URL("/mock-model/v1", page.url()).href,
    model: "mock",
  });
  // Written straight into the worker's settings store, as an older version of the demo allowed.
  await page.evaluate(
    () =>
      new Promise<void>((resolve, reject) => {
        const open = indexedDB.open("fiberline-demo");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const tx = open.result.transaction("settings", "readwrite");
          const store = tx.objectStore("settings");
          const read = store.get("assistant");
          read.onsuccess = () => store.put({ ...read.result, apiKey: "sk-ключ" }, "assistant");
          tx.oncomplete = () => resolve();
          tx.onerror = () => reject(tx.error);
        };
      }),
  );
  await demo.send("Hello?");
  const reply = demo.lastReply();
  await expect(reply).toHaveAttribute("data-outcome", "failed");
  await expect(reply.getByTestId("failure-note")).toContainText(
    "the API key holds a character that HTTP headers cannot carry. Save the key again in Settings",
  );
  await expect(reply.getByTestId("failure-note").locator("pre")).toContainText("ISO-8859-1");
  // Failed on the first attempt: no retry could have changed it.
  expect(await modelCall(page, await demo.lastFiberId())).toMatchObject({ attempt: 1, state: "failed" });
});

test("a problem shown in the composer stays with its conversation", async ({ demo, page }) => {
  await demo.setMockDelay(0);
  await demo.send("What time is it?");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  const first = page.url();
  await page.getByRole("button", { name: "+ New" }).click();
  await demo.setMockDelay(400);
  await demo.send("Explain durable execution in two sentences");
  await expect(page.getByTestId("composer-stop")).toBeVisible();
  // A Stop the worker refuses: the composer says why.
  await page.evaluate(() => {
    const client = window.fiberline;
    if (client) client.cancel = () => Promise.reject(new Error("The worker refused to stop this reply."));
  });
  await page.getByTestId("composer-stop").click();
  await expect(page.getByRole("alert").filter({ hasText: "refused to stop" })).toBeVisible();
  await page.goto(first);
  await expect(page.getByTestId("composer-send")).toBeVisible();
  await expect(page.getByText("refused to stop")).toHaveCount(0);
});

test("a reply whose stream was lost picks it up again without a reload", async ({ demo, page }) => {
  await demo.setMockDelay(60);
  // The page's next read of an event stream is refused (as a proxy might), the ones after pass.
  await page.evaluate(() => {
    const original = window.fetch.bind(window);
    let refused = false;
    window.fetch = (input, init) => {
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      if (!refused && url.includes("/events")) {
        refused = true;
        const body = JSON.stringify({ error: { code: "bad_request", message: "Refused by a proxy." } });
        return Promise.resolve(
          new Response(body, {
            status: 400,
            headers: { "content-type": "application/json", "x-fiberline": "1" },
          }),
        );
      }
      return original(input, init);
    };
  });
  await demo.send("Explain durable execution in two sentences");
  const reply = demo.lastReply();
  await expect(reply.getByTestId("lost-track")).toContainText("Reconnecting in 1 s");
  await expect(reply).toHaveAttribute("data-outcome", "completed");
  await expect(reply.getByTestId("lost-track")).toHaveCount(0);
  await expect(reply.getByTestId("message-text")).toContainText("durable");
});
