/**
 * Takes the README's screenshots from the real app (opt-in: `FIBERLINE_SCREENSHOTS=1 npx
 * playwright test e2e/app/screenshots.spec.ts --project app`): the chat mid-conversation with tool cards and an
 * approval prompt, and the inspector with a fiber's journal. Writes `docs/screenshots/*.png`.
 */

import { expect, test } from "./fixtures";

const out = (name: string) => new URL(`../../docs/screenshots/${name}`, import.meta.url).pathname;

test.skip(!process.env.FIBERLINE_SCREENSHOTS, "set FIBERLINE_SCREENSHOTS=1 to refresh docs/screenshots");
test.use({ viewport: { width: 1280, height: 860 }, deviceScaleFactor: 1, colorScheme: "light" });

test("chat and inspector screenshots", async ({ demo, page }) => {
  await demo.setMockDelay(0);
  await demo.send("Explain durable execution in two sentences");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await demo.send("What is (17 + 4) * 12?");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await demo.send('Please delete "draft.txt"');
  await expect(demo.lastReply().getByTestId("tool-card")).toHaveAttribute("data-status", "awaiting-approval");
  await page.evaluate(() => {
    const messages = document.querySelector(".messages");
    if (messages) messages.scrollTop = messages.scrollHeight;
  });
  await page.getByTestId("composer-input").fill("What time is it?");
  await page.screenshot({ path: out("chat.png") });

  await demo.lastReply().getByTestId("approve").click();
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  const assistantId = await page.evaluate(async () => {
    const client = window.fiberline;
    if (!client) throw new Error("not connected");
    await client.start("lab.effects", { count: 12, intervalMs: 50 });
    await client.start("lab.ticker", { count: 400, intervalMs: 400 });
    const all = await client.list();
    return all.filter((f) => f.name === "assistant")[1]?.id ?? "";
  });
  await page.goto(`/#/inspector/${assistantId}`);
  const detail = page.getByTestId("fiber-detail");
  await expect(detail.getByTestId("journal-row")).toHaveCount(3);
  await expect(page.getByTestId("fiber-row")).toHaveCount(5);
  await expect(page.locator('[data-testid="fiber-row"][data-status="running"]')).toHaveCount(1);
  await page.screenshot({ path: out("inspector.png") });
});
