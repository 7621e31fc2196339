/**
 * Accessibility (issue 16): axe-core (`@axe-core/playwright`, WCAG 2.1 A and AA rules) over every
 * screen of the demo (chat with a tool card, an approval and a failed reply; the AI SDK chat with
 * reasoning open, a tool and an approval; settings; the inspector with a fiber open; the crash
 * lab), in light and dark, at 1280x800 and 390x844. No
 * serious or critical violation is allowed. And every action of the chat is reachable by Tab.
 */

import AxeBuilder from "@axe-core/playwright";
import type { Page } from "@playwright/test";
import { type DemoPage, expect, saveSettings, test } from "./fixtures";

const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const;

/** Serious and critical violations on the page as it is, as "rule: target (summary)" lines. */
async function violations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page })
    .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"])
    .analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .flatMap((v) =>
      v.nodes.map((n) => `${v.id}: ${n.target.join(" ")} (${n.failureSummary?.split("\n")[1]?.trim()})`),
    );
}

/** A conversation with a tool card, an approval waiting and a failed reply, and a fiber to inspect. */
async function fillTheApp(demo: DemoPage): Promise<void> {
  const { page } = demo;
  await demo.setMockDelay(0);
  await demo.send("What is (17 + 4) * 12?");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await saveSettings(page, {
    provider: "custom",
    baseUrl: `${new URL(page.url()).origin}/nowhere/v1`,
    model: "m",
  });
  await demo.send("Hello?");
  await expect(demo.lastReply()).toHaveAttribute("data-outcome", "failed");
  await saveSettings(page, { provider: "mock", mockDelayMs: 0 });
  await go(page, "#/chat");
  await demo.send("Please delete notes.txt");
  await expect(demo.lastReply().getByRole("button", { name: "Approve" })).toBeVisible();
}

/** The AI SDK chat with a reply that reasoned (opened), a tool's output, and an approval waiting. */
async function fillTheAiChat(page: Page): Promise<void> {
  const assistant = page.locator('[data-testid="ai-message"][data-role="assistant"]');
  const ask = async (text: string) => {
    await page.getByTestId("ai-input").fill(text);
    await page.getByTestId("ai-send").click();
  };
  await ask("Think about it: what is 12 * 7?");
  await expect(page.getByTestId("ai-chat")).toHaveAttribute("data-status", "ready");
  await expect(assistant.last().getByTestId("ai-tool-output")).toBeVisible();
  await assistant.last().locator("summary").first().click();
  await ask("Please delete notes.txt");
  await expect(page.getByTestId("ai-approve")).toBeVisible();
}

async function go(page: Page, hash: string): Promise<void> {
  await page.evaluate((h) => {
    window.location.hash = h;
  }, hash);
}

/** Violations of `page` as it stands, in the light scheme and in the dark one (one fill, both). */
async function inBothSchemes(page: Page): Promise<string[]> {
  const found: string[] = [];
  for (const colorScheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme });
    found.push(...(await violations(page)).map((v) => `${colorScheme}: ${v}`));
  }
  return found;
}

for (const [size, viewport] of Object.entries(VIEWPORTS)) {
  test(`axe: every screen, light and dark, ${size}`, async ({ demo, page }) => {
    test.setTimeout(120_000);
    await page.setViewportSize(viewport);
    await fillTheApp(demo);
    const found: Record<string, string[]> = {};

    found.chat = await inBothSchemes(page);
    if (size === "phone") {
      await page.getByRole("button", { name: "☰ Conversations" }).click();
      found["chat, drawer open"] = await inBothSchemes(page);
      await page.keyboard.press("Escape");
    }
    await demo.lastReply().getByRole("button", { name: "Deny" }).click();
    const failed = page.locator('[data-testid="message"][data-outcome="failed"]');
    if (size === "phone") await page.getByRole("button", { name: "☰ Conversations" }).click();
    await page.getByTestId("conversation-link").last().click();
    await failed.locator("summary").click();
    found["chat, failed reply"] = await inBothSchemes(page);

    await go(page, "#/ai-chat");
    await fillTheAiChat(page);
    found["AI SDK chat"] = await inBothSchemes(page);

    await go(page, "#/settings");
    await page.getByTestId("provider-custom").check();
    await page.getByLabel("API key").fill("ключ");
    found.settings = await inBothSchemes(page);

    await go(page, "#/inspector");
    await page.locator('[data-testid="fiber-row"]').first().getByRole("link").click();
    await expect(page.getByTestId("fiber-detail")).toBeVisible();
    found.inspector = await inBothSchemes(page);

    await go(page, "#/lab");
    await page.getByTestId("start-ticker").click();
    await expect(page.getByTestId("lab-run").first()).toBeVisible();
    found.lab = await inBothSchemes(page);

    expect(found).toEqual(Object.fromEntries(Object.keys(found).map((k) => [k, []])));
  });
}

/** What `presses` presses of Tab focus, one "tag:accessible name" line each. */
async function tabThrough(page: Page, presses: number): Promise<string> {
  const reached = new Set<string>();
  for (let i = 0; i < presses; i++) {
    await page.keyboard.press("Tab");
    reached.add(
      await page.evaluate(() => {
        const el = document.activeElement as HTMLElement | null;
        return el
          ? `${el.tagName.toLowerCase()}:${(el.getAttribute("aria-label") ?? el.textContent ?? "").trim()}`
          : "";
      }),
    );
  }
  return [...reached].join("\n");
}

test("keyboard: every action of a reply and the chat is reachable with Tab", async ({ demo, page }) => {
  await fillTheApp(demo);
  const names = await tabThrough(page, 80);
  // The reply waits for its approval, so the composer offers Stop.
  for (const action of [
    "Approve",
    "Deny",
    "Delete",
    "Stop",
    "+ New",
    "Chat",
    "Inspector",
    "Crash lab",
    "Settings",
  ])
    expect(names).toContain(action);
});

test("keyboard: every action of the AI SDK chat is reachable with Tab", async ({ demo, page }) => {
  await demo.setMockDelay(0);
  await go(page, "#/ai-chat");
  await fillTheAiChat(page);
  const names = await tabThrough(page, 40);
  for (const action of ["New chat", "summary:Reasoning", "Approve", "Deny", "input:Message", "Send", "Chat"])
    expect(names).toContain(action);
  // A screen reader hears who said what.
  await expect(page.getByRole("listitem", { name: "You said" })).toHaveCount(2);
  await expect(page.getByRole("listitem", { name: "Assistant" })).toHaveCount(2);
});
