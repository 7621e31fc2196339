/**
 * Issue 4's real-Chromium agent test, through the demo's chat UI: a two-turn conversation whose
 * second turn calls the calculator, the browser SIGKILLed while the answer written from the tool's
 * result streams, then relaunched on the same profile. The conversation completes; every
 * assistant text equals the mock model's uninterrupted reply (computed with `mockReply`, and the
 * same conversation run without a crash); the tool ran once; the page shows each text once.
 */

import type { BrowserContext, Locator, Page } from "@playwright/test";
import type { AgentInput } from "../../src/agent/agent";
import type { ChatMessage } from "../../src/agent/types";
import type { FiberEvent } from "../../src/core/records";
import { expectedReply, inspect, type Subject, setMockDelay } from "./demo";
import { expect, test } from "./scenario";

const FIRST = "Explain durable execution for agent loops in a few sentences";
const SECOND = "What is 12 * 7?";
/** Per-token delay of the answer after the tool result: slow enough to land the crash inside it. */
const SLOW_MS = 120;

const ASSISTANT = '[data-testid="message"][data-role="assistant"]';

/** Whitespace-normalized, as rendered Markdown is compared with its source. */
const squash = (text: string) => text.replace(/\s+/g, " ").trim();

/** The sentences of a reply (split after . ! ?), squashed. */
const sentences = (text: string) =>
  squash(text)
    .split(/(?<=[.!?])\s+/)
    .filter((s) => s !== "");

/**
 * Records, in every page of `context`, each distinct text an assistant message (by fiber id)
 * renders, in order: a reply that only ever grows never showed a word twice, even for a moment.
 */
async function watchRenders(context: BrowserContext): Promise<void> {
  await context.addInitScript(() => {
    const renders: Record<string, string[]> = {};
    (window as unknown as { __renders: typeof renders }).__renders = renders;
    const record = () => {
      for (const message of document.querySelectorAll('[data-testid="message"][data-role="assistant"]')) {
        const id = message.getAttribute("data-fiber-id");
        if (!id) continue;
        const text = [...message.querySelectorAll('[data-testid="message-text"]')]
          .map((e) => e.textContent ?? "")
          .join("\n");
        const seen = renders[id] ?? [];
        renders[id] = seen;
        if (seen[seen.length - 1] !== text) seen.push(text);
      }
    };
    new MutationObserver(record).observe(document, { subtree: true, childList: true, characterData: true });
  });
}

async function rendersOf(page: Page, fiberId: string): Promise<string[]> {
  return await page.evaluate(
    (id) => (window as unknown as { __renders: Record<string, string[]> }).__renders[id] ?? [],
    fiberId,
  );
}

/** Types `text` in the composer and sends it, as a user does. */
async function send(page: Page, text: string): Promise<void> {
  await page.getByTestId("composer-input").fill(text);
  await page.getByTestId("composer-send").click();
}

/** The assistant message of turn `n` (1-based) of the open conversation. */
const reply = (page: Page, n: number): Locator => page.locator(ASSISTANT).nth(n - 1);

/** Waits until turn `n` is done and frozen into the conversation (the composer offers Send again). */
async function turnDone(page: Page, n: number): Promise<string> {
  await expect(page.locator(ASSISTANT)).toHaveCount(n);
  await expect(reply(page, n)).toHaveAttribute("data-status", "done", { timeout: 60_000 });
  await expect(page.getByTestId("composer-send")).toBeVisible();
  const id = await reply(page, n).getAttribute("data-fiber-id");
  if (!id) throw new Error(`Turn ${n} has no fiber id.`);
  return id;
}

/** The rendered text segments of turn `n`, squashed. */
async function renderedText(page: Page, n: number): Promise<string> {
  return squash((await reply(page, n).getByTestId("message-text").allTextContents()).join(" "));
}

/** The final assistant content of a completed assistant fiber. */
async function finalContent(page: Page, fiberId: string): Promise<string | null | undefined> {
  const output = (await inspect(page, fiberId)).record.result as { messages: ChatMessage[] } | undefined;
  const last = output?.messages.at(-1);
  return last?.role === "assistant" ? last.content : undefined;
}

/**
 * An assistant fiber of the chat as a crash-suite subject (its input read back from the worker).
 * The chat passes the earlier turns by reference, so the caller says what they were.
 */
async function subject(
  page: Page,
  fiberId: string,
  log: Subject["log"],
  history: ChatMessage[] = [],
): Promise<Subject> {
  const input = (await inspect(page, fiberId)).record.input as AgentInput;
  return { kind: "assistant", id: fiberId, input: { messages: input.messages }, log, history };
}

const deltasOf = (events: readonly FiberEvent[], messageId: string) =>
  events.filter((e) => e.type === "text.delta" && (e.data as { messageId?: string }).messageId === messageId);

test("SIGKILL while the answer after a tool result streams: the chat completes once, as uninterrupted", async ({
  app,
  expectIntact,
}) => {
  // The mock's uninterrupted replies, computed from the conversation alone (system prompt and
  // tools included): turn 1 is prose, turn 2 calls the calculator, then answers from its result.
  const first = expectedReply([{ role: "user", content: FIRST }]);
  expect(first.toolCalls).toEqual([]);
  const history: ChatMessage[] = [
    { role: "user", content: FIRST },
    { role: "assistant", content: first.text },
    { role: "user", content: SECOND },
  ];
  const call = expectedReply(history);
  expect(call.toolCalls).toEqual([
    { id: expect.any(String), name: "calculator", arguments: JSON.stringify({ expression: "12 * 7" }) },
  ]);
  const callId = call.toolCalls[0]?.id ?? "";
  const answer = expectedReply([
    ...history,
    {
      role: "assistant",
      content: null,
      tool_calls: [
        {
          id: callId,
          type: "function",
          function: { name: "calculator", arguments: call.toolCalls[0]?.arguments ?? "" },
        },
      ],
    },
    { role: "tool", tool_call_id: callId, content: JSON.stringify({ expression: "12 * 7", value: 84 }) },
  ]);
  expect(answer.toolCalls).toEqual([]);
  expect(answer.text).toMatch(/^12 \* 7 = 84\. \S/);

  await watchRenders(app.context);
  const page = await app.openTab("/#/chat");
  // A desktop width: the conversation list (and its "+ New" button) is a drawer at 800 px or less.
  await page.setViewportSize({ width: 1280, height: 800 });

  // The same conversation, uninterrupted, in its own conversation: the reference a user would get.
  await setMockDelay(page, 0);
  await send(page, FIRST);
  const reference1 = await turnDone(page, 1);
  await send(page, SECOND);
  const reference2 = await turnDone(page, 2);
  const reference = [await finalContent(page, reference1), await finalContent(page, reference2)];
  expect(reference).toEqual([first.text, answer.text]);
  expect([await renderedText(page, 1), await renderedText(page, 2)]).toEqual([
    squash(first.text),
    squash(answer.text),
  ]);

  // A new conversation: turn 1 completes, then turn 2 runs slowly.
  await page.getByRole("button", { name: "+ New" }).click();
  await expect(page.locator(ASSISTANT)).toHaveCount(0);
  await send(page, FIRST);
  const turn1 = await turnDone(page, 1);
  const log1 = app.follow(turn1);
  await setMockDelay(page, SLOW_MS);
  await send(page, SECOND);
  await expect(page.locator(ASSISTANT)).toHaveCount(2);
  const turn2 = (await reply(page, 2).getAttribute("data-fiber-id")) ?? "";
  expect(turn2).toMatch(/^chat-/);
  expect(turn2).not.toBe(turn1);
  const log2 = app.follow(turn2);
  const m2 = `${turn2}:m2`;
  // The tool has answered and the second model call is streaming its answer, on the page too.
  await log2.waitFor((events) => deltasOf(events, m2).length >= 3);
  await expect(reply(page, 2).getByTestId("message-text")).not.toHaveText("");
  const chatPath = `/${new URL(page.url()).hash}`;
  expect(chatPath).toMatch(/^\/#\/chat\/./);

  await app.crashBrowser();
  await app.relaunch();
  await watchRenders(app.context);
  const again = await app.openTab(chatPath);

  expect(await turnDone(again, 2)).toBe(turn2);
  await expectIntact(
    await subject(again, turn1, log1),
    await subject(again, turn2, log2, history.slice(0, 2)),
  );

  // The crash landed inside the answer: some of it streamed before, the rest after the recovery,
  // continued from the partial text (no reset), in one message.start/message.end.
  const events = log2.events;
  const types = events.map((e) => e.type);
  expect(types.filter((t) => t === "fiber.recovered")).toHaveLength(1);
  expect(types).not.toContain("message.reset");
  const recovered = types.indexOf("fiber.recovered");
  const m2Deltas = deltasOf(events, m2).map((e) => events.indexOf(e));
  expect(m2Deltas.filter((i) => i < recovered).length).toBeGreaterThanOrEqual(3);
  expect(m2Deltas.filter((i) => i > recovered).length).toBeGreaterThan(0);
  const m2End = events.findIndex(
    (e) => e.type === "message.end" && (e.data as { messageId?: string }).messageId === m2,
  );
  expect(m2End).toBeGreaterThan(recovered);
  const streamed = deltasOf(events, m2)
    .map((e) => (e.data as { delta: string }).delta)
    .join("");
  expect(streamed).toBe(answer.text);
  expect(log1.events.map((e) => e.type)).not.toContain("fiber.recovered");

  // The final texts equal the uninterrupted run's.
  expect([await finalContent(again, turn1), await finalContent(again, turn2)]).toEqual(reference);

  // The calculator ran exactly once, under its call's key: one call, one result, one step that
  // completed in its first attempt before the crash and never started again.
  const journal2 = (await inspect(again, turn2)).journal;
  const toolSteps = journal2.filter((e) => e.key.startsWith("tool:"));
  expect(toolSteps).toEqual([
    expect.objectContaining({ key: `tool:${callId}#1`, status: "completed", attempt: 1 }),
  ]);
  const calls = events.filter((e) => e.type === "tool.call");
  const results = events.filter((e) => e.type === "tool.result");
  expect(calls.map((e) => (e.data as { toolCallId: string }).toolCallId)).toEqual([callId]);
  // A result names its call by reply and position too (the call id alone can repeat).
  expect(results.map((e) => e.data)).toEqual([
    {
      toolCallId: callId,
      messageId: expect.any(String),
      index: 0,
      name: "calculator",
      status: "ok",
      result: { expression: "12 * 7", value: 84 },
    },
  ]);
  expect(events.indexOf(results[0] as FiberEvent)).toBeLessThan(recovered);
  expect(toolSteps[0]?.endedAt).toBeLessThanOrEqual((results[0] as FiberEvent).at);
  expect((await inspect(again, turn1)).journal.filter((e) => e.key.startsWith("tool:"))).toEqual([]);
  // The interrupted model call was the only step that ran again.
  const models = journal2.filter((e) => e.key.startsWith("model#")).map((e) => [e.key, e.status, e.attempt]);
  expect(models).toEqual([
    ["model#1", "completed", 1],
    ["model#2", "completed", 2],
  ]);

  // The page: one user and one assistant message per turn, each text once, the tool card once.
  await expect(again.locator('[data-testid="message"][data-role="user"]')).toHaveText([FIRST, SECOND]);
  await expect(again.locator(ASSISTANT)).toHaveCount(2);
  await expect(again.locator(`${ASSISTANT}[data-status="done"]`)).toHaveCount(2);
  expect(await renderedText(again, 1)).toBe(squash(first.text));
  expect(await renderedText(again, 2)).toBe(squash(answer.text));
  await expect(reply(again, 2).getByTestId("message-text")).toHaveCount(1);
  await expect(reply(again, 2).getByTestId("resumed-marker")).toHaveAttribute("data-reason", "recovered");
  await expect(reply(again, 1).getByTestId("resumed-marker")).toHaveCount(0);
  const card = reply(again, 2).getByTestId("tool-card");
  await expect(card).toHaveCount(1);
  await expect(card).toHaveAttribute("data-tool", "calculator");
  await expect(card).toHaveAttribute("data-status", "ok");
  await expect(card.getByTestId("tool-result")).toContainText('"value": 84');
  const shown = squash((await again.locator(".messages").textContent()) ?? "");
  for (const sentence of [...sentences(first.text), ...sentences(answer.text)])
    expect(shown.split(sentence).length - 1, sentence).toBe(1);
  // While it caught up after the relaunch, the answer only ever grew: no text shown twice.
  const renders = await rendersOf(again, turn2);
  expect(renders.length).toBeGreaterThan(0);
  for (let i = 1; i < renders.length; i++)
    expect(
      (renders[i] ?? "").startsWith(renders[i - 1] ?? ""),
      JSON.stringify(renders.slice(i - 1, i + 1)),
    ).toBe(true);
  expect(squash(renders.at(-1) ?? "")).toBe(squash(answer.text));
});
