/**
 * A reply's layout while it streams and when it ends (issue 16), measured with bounding boxes in
 * the page on every change of the reply: the streaming caret stays on the line of the last word,
 * and nothing moves when the reply ends (the header keeps its height, the text and the reply
 * their place, and the caret going away cannot rewrap the text), so the thread does not jump.
 * Both at laptop and phone width.
 */

import type { Page } from "@playwright/test";
import { expect, test } from "./fixtures";

const WIDTHS = { laptop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } } as const;

/** What one look at the reply measured. */
interface Sample {
  streaming: boolean;
  /** How far the last text block's box reaches below its last line of text, in px. */
  belowLastLine: number | null;
  lineHeight: number;
  headHeight: number;
  /** The first text block's top, relative to the reply's top. */
  textTop: number | null;
  /** The reply's top in the viewport, and its height. */
  top: number;
  height: number;
  text: string;
}

/**
 * Starts measuring the last assistant reply on every DOM change (the measurements force layout,
 * so each is what a person saw). `window.__replyLayout` collects the samples.
 */
async function watchLastReply(page: Page): Promise<void> {
  await page.evaluate(() => {
    const samples: Sample[] = [];
    (window as unknown as { __replyLayout: Sample[] }).__replyLayout = samples;
    const measure = () => {
      const reply = [...document.querySelectorAll('[data-testid="message"][data-role="assistant"]')].at(-1);
      if (!reply) return;
      const head = reply.querySelector(".message-head");
      const texts = reply.querySelectorAll('[data-testid="message-text"]');
      const first = texts[0];
      const last = texts[texts.length - 1]?.lastElementChild;
      if (!head || !first || !last) return;
      // The text's own line boxes: the caret is a pseudo-element, which a Range does not see.
      const range = document.createRange();
      range.selectNodeContents(last);
      const lines = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
      const lastLine = lines.at(-1);
      const style = getComputedStyle(last);
      const lineHeight = Number.parseFloat(style.lineHeight) || Number.parseFloat(style.fontSize) * 1.2;
      samples.push({
        streaming: reply.getAttribute("data-status") === "streaming",
        belowLastLine: lastLine ? last.getBoundingClientRect().bottom - lastLine.bottom : null,
        lineHeight,
        headHeight: head.getBoundingClientRect().height,
        textTop: first.getBoundingClientRect().top - reply.getBoundingClientRect().top,
        top: reply.getBoundingClientRect().top,
        height: reply.getBoundingClientRect().height,
        text: (last.textContent ?? "").slice(-40),
      });
    };
    new MutationObserver(measure).observe(document.body, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
    });
  });
}

const samplesOf = (page: Page) =>
  page.evaluate(() => (window as unknown as { __replyLayout: Sample[] }).__replyLayout);

for (const [name, viewport] of Object.entries(WIDTHS)) {
  test(`${name}: the caret follows the last word, and the reply does not jump when it ends`, async ({
    demo,
    page,
  }) => {
    await page.setViewportSize(viewport);
    await demo.setMockDelay(15);
    await watchLastReply(page);
    await demo.send("Explain durable execution for agent loops in a few sentences");
    await expect(demo.lastReply()).toHaveAttribute("data-status", "done", { timeout: 30_000 });
    const samples = await samplesOf(page);
    const streaming = samples.filter((s) => s.streaming && s.belowLastLine !== null);
    const done = samples.filter((s) => !s.streaming);
    // Enough looks at a reply that wraps over several lines, and at least one after it ended.
    expect(streaming.length).toBeGreaterThan(20);
    expect(done.length).toBeGreaterThan(0);

    // The caret on a line of its own would leave the block a whole line below its last text.
    const caretAlone = streaming.filter((s) => (s.belowLastLine ?? 0) > s.lineHeight / 2);
    expect(caretAlone.map((s) => `${s.belowLastLine} px below "${s.text}"`)).toEqual([]);

    // When the reply ends, the header keeps its height and the text its place.
    const before = streaming.at(-1);
    const after = done.at(-1);
    expect(after?.headHeight).toBe(before?.headHeight);
    expect(after?.textTop).toBe(before?.textTop);
    expect(after?.top).toBe(before?.top);

    // The caret takes no room: the finished reply with the caret put back at the end of its
    // text has the same height, so the reply cannot shrink when its caret goes.
    const heights = await demo.lastReply().evaluate((reply) => {
      const texts = reply.querySelectorAll('[data-testid="message-text"]');
      const last = texts[texts.length - 1];
      if (!last) throw new Error("The reply has no text.");
      const without = reply.getBoundingClientRect().height;
      last.classList.add("streaming");
      const withCaret = reply.getBoundingClientRect().height;
      last.classList.remove("streaming");
      return { without, withCaret };
    });
    expect(heights.withCaret).toBe(heights.without);
  });
}
