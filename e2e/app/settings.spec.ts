/**
 * Settings round trip: a custom OpenAI-compatible endpoint with an API key is saved in the
 * worker and used for replies, yet the key never reaches the page, the journal or the stream.
 */

import { expect, test } from "./fixtures";

const KEY = "sk-fiberline-e2e-secret-7f3a9c";

test("settings round trip without the API key ever reaching the page", async ({ demo, page }) => {
  await page.getByRole("link", { name: "Settings" }).click();
  await expect(page.getByTestId("provider-mock")).toBeChecked();
  await page.getByTestId("provider-custom").check();
  // The demo's own mock endpoint, reached as any OpenAI-compatible URL would be.
  await page.getByLabel("Base URL").fill(new URL("/mock-model/v1", page.url()).href);
  await page.getByLabel("Model", { exact: true }).fill("mock");
  await page.getByLabel("API key").fill(KEY);
  await page.getByTestId("save-settings").click();
  await expect(page.getByTestId("settings-status")).toHaveText("Saved. The next reply uses these settings.");
  await expect(page.getByTestId("key-saved")).toBeVisible();
  await expect(page.getByLabel("API key")).toHaveValue("");

  const saved = await page.evaluate(() => fetch("/demo-api/settings").then((r) => r.text()));
  expect(JSON.parse(saved)).toMatchObject({ provider: "custom", model: "mock", hasApiKey: true });
  expect(saved).not.toContain(KEY);

  await page.reload();
  await expect(page.getByTestId("provider-custom")).toBeChecked();
  await expect(page.getByTestId("key-saved")).toBeVisible();

  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await demo.send("What is 2 + 3?");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await expect(demo.lastReply().getByTestId("message-text")).toContainText("2 + 3 = 5");
  const fiberId = await demo.lastFiberId();

  // Nowhere the page can look holds the key: the DOM, the fiber's record, journal, stream.
  const inspection = await page.evaluate((id) => window.fiberline?.inspect(id), fiberId);
  const stream = await demo.readStream(fiberId);
  const everything = JSON.stringify([inspection, stream, await page.content()]);
  expect(everything).toContain("2 + 3");
  expect(everything).not.toContain(KEY);
  expect(everything).not.toContain("Bearer");

  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByTestId("remove-key").click();
  await expect(page.getByTestId("settings-status")).toHaveText("The key was removed from the worker.");
  await page.getByRole("button", { name: "Use the mock model" }).click();
  await expect(page.getByTestId("settings-status")).toHaveText("Back to the mock model.");
  const after = await page.evaluate(() => fetch("/demo-api/settings").then((r) => r.json()));
  expect(after).toMatchObject({ provider: "mock", hasApiKey: false });
});

test("invalid settings are refused with a message that says what to fix", async ({ demo }) => {
  const { page } = demo;
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByTestId("provider-custom").check();
  await page.getByLabel("Base URL").fill("https://api.example.com/v1");
  await page.getByTestId("save-settings").click();
  // The browser's own validation stops an empty required model first.
  const model = page.getByLabel("Model", { exact: true });
  expect(await model.evaluate((input) => (input as HTMLInputElement).validity.valueMissing)).toBe(true);
  const refused = await page.evaluate(() =>
    fetch("/demo-api/settings", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ provider: "custom", baseUrl: "ftp://example.com", model: "x" }),
    }).then(async (r) => ({ status: r.status, body: await r.json() })),
  );
  expect(refused).toEqual({
    status: 400,
    body: { error: { code: "invalid_settings", message: '"ftp://example.com" is not an http(s) URL.' } },
  });
});
