/**
 * Conversations that cannot get stuck (issue 16), as a user sees them: a message whose reply
 * cannot start fails its turn with a reason and leaves the chat usable; Delete is always there,
 * also while a reply runs; "Ask again" retries a failed reply; and the history goes by reference,
 * so a long conversation with large pastes never hits the payload limit.
 */

import type { Page } from "@playwright/test";
import { ASSISTANT_SYSTEM_PROMPT } from "../../app/worker/assistant";
import type { AgentInput } from "../../src/agent/agent";
import { mockReply } from "../../src/agent/mock-model";
import type { ChatMessage } from "../../src/agent/types";
import { expect, saveSettings, squash, test } from "./fixtures";

const ASSISTANT = '[data-testid="message"][data-role="assistant"]';

/** The mock model's reply to `conversation` as the demo's assistant sends it. */
function expectedText(conversation: ChatMessage[]): string {
  return mockReply([{ role: "system", content: ASSISTANT_SYSTEM_PROMPT }, ...conversation], {
    tools: ["calculator", "clock", "delete_file"],
  }).text;
}

async function assistantFibers(page: Page): Promise<Array<{ id: string; status: string; input: unknown }>> {
  return await page.evaluate(async () => {
    const all = (await window.fiberline?.list({ name: "assistant" })) ?? [];
    return all.map((f) => ({ id: f.id, status: f.status, input: f.input }));
  });
}

test("a message too large to start fails its turn with a reason; the chat stays usable", async ({
  demo,
  page,
}) => {
  await demo.setMockDelay(0);
  await demo.send(`Please read this: ${"lorem ipsum ".repeat(100_000)}`);
  const reply = demo.lastReply();
  await expect(reply).toHaveAttribute("data-outcome", "failed");
  const note = reply.getByTestId("failure-note");
  await expect(note).toContainText("This message is too large to send (1.2 MB");
  await expect(reply.locator(".spinner")).toHaveCount(0);
  await expect(reply).not.toHaveAttribute("data-fiber-id", /./);
  // The technical reason is one click away.
  await expect(note.getByText("payload_too_large")).toBeHidden();
  await note.getByText("Details").click();
  await expect(note.getByText(/payload_too_large/)).toBeVisible();
  // Nothing runs: the composer takes input, Delete is there, the sidebar shows no running reply.
  await expect(page.getByTestId("composer-send")).toBeVisible();
  await expect(page.getByTestId("composer-stop")).toHaveCount(0);
  await expect(page.getByTestId("composer-input")).toHaveAttribute("placeholder", /Ask something/);
  await expect(page.getByRole("button", { name: "Delete" })).toBeVisible();
  await expect(page.locator('[data-testid="conversation-link"] .dot.live')).toHaveCount(0);
  expect(await assistantFibers(page)).toEqual([]);

  // The same after a reload.
  await page.reload();
  await expect(demo.lastReply()).toHaveAttribute("data-outcome", "failed");
  await expect(demo.lastReply().getByTestId("failure-note")).toContainText("too large to send");
  await expect(page.getByTestId("conversation-link")).toHaveCount(1);
  await expect(page.locator('[data-testid="conversation-link"] .dot.live')).toHaveCount(0);

  // The conversation goes on; the refused message is not part of what the model is asked.
  await demo.send("Explain durable execution in two sentences");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await expect(demo.lastReply().getByTestId("message-text")).toHaveText(
    squash(expectedText([{ role: "user", content: "Explain durable execution in two sentences" }])),
    { useInnerText: true },
  );

  // And it can be deleted.
  page.once("dialog", (dialog) => void dialog.accept());
  await page.getByRole("button", { name: "Delete" }).click();
  await expect(page.getByTestId("conversation-link")).toHaveCount(0);
  await expect(page.getByRole("heading", { name: "Chat with an agent that survives crashes" })).toBeVisible();
});

test("Delete is offered while a reply runs, and deleting stops the reply", async ({ demo, page }) => {
  await demo.setMockDelay(80);
  await demo.send("Talk slowly about deleting things");
  await expect(demo.lastReply()).toHaveAttribute("data-status", "streaming");
  await expect(demo.lastReply().getByTestId("message-text")).not.toHaveText("");
  const fiberId = await demo.lastFiberId();
  let question = "";
  page.once("dialog", (dialog) => {
    question = dialog.message();
    void dialog.accept();
  });
  await page.getByRole("button", { name: "Delete" }).click();
  await expect(page.getByTestId("conversation-link")).toHaveCount(0);
  expect(question).toContain("Its running reply is stopped.");
  await expect
    .poll(() => page.evaluate((id) => window.fiberline?.get(id).then((r) => r?.status), fiberId))
    .toBe("cancelled");
  await expect(page.getByTestId("composer-send")).toBeVisible();
});

test("Ask again retries a failed reply with a new fiber", async ({ demo, page }) => {
  // An endpoint that answers 404: the model call fails at once, without retries.
  await saveSettings(page, {
    provider: "custom",
    baseUrl: `${new URL(page.url()).origin}/no-such-endpoint/v1`,
    model: "mock",
  });
  await demo.send("Explain durable execution in two sentences");
  const reply = demo.lastReply();
  await expect(reply).toHaveAttribute("data-outcome", "failed");
  await expect(reply.getByTestId("failure-note")).toContainText("The reply failed");
  const failedFiber = await demo.lastFiberId();
  await expect(page.getByTestId("composer-send")).toBeVisible();

  await saveSettings(page, { provider: "mock", mockDelayMs: 0 });
  await reply.getByRole("button", { name: "Ask again" }).click();
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await expect(demo.lastReply().getByTestId("failure-note")).toHaveCount(0);
  await expect(demo.lastReply().getByTestId("message-text")).toHaveText(
    squash(expectedText([{ role: "user", content: "Explain durable execution in two sentences" }])),
    { useInnerText: true },
  );
  // Still one question and one answer, now from another fiber.
  await expect(page.locator('[data-testid="message"][data-role="user"]')).toHaveCount(1);
  await expect(page.locator(ASSISTANT)).toHaveCount(1);
  expect(await demo.lastFiberId()).not.toBe(failedFiber);
  await expect(demo.lastReply().getByRole("button", { name: "Ask again" })).toHaveCount(0);
});

test("the history goes by reference: replies answer the whole conversation, inputs hold one message", async ({
  demo,
  page,
}) => {
  await demo.setMockDelay(0);
  const first = "Explain durable execution in two sentences";
  const second = "And why does that matter for agents?";
  await demo.send(first);
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  await expect(page.getByTestId("composer-send")).toBeVisible();
  await demo.send(second);
  await expect(page.locator(ASSISTANT)).toHaveCount(2);
  await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
  const conversation: ChatMessage[] = [
    { role: "user", content: first },
    { role: "assistant", content: expectedText([{ role: "user", content: first }]) },
    { role: "user", content: second },
  ];
  const answer = expectedText(conversation);
  expect(answer).not.toBe(expectedText([{ role: "user", content: second }]));
  await expect(demo.lastReply().getByTestId("message-text")).toHaveText(squash(answer), {
    useInnerText: true,
  });
  const input = (await page.evaluate((id) => window.fiberline?.get(id), await demo.lastFiberId()))
    ?.input as AgentInput;
  expect(input.messages).toEqual([{ role: "user", content: second }]);
  expect(input.historyRef).toMatch(/\//);
});

test("three 400 KB pastes in one conversation all get replies (the inputs do not add up)", async ({
  demo,
  page,
}) => {
  test.setTimeout(120_000);
  await demo.setMockDelay(0);
  for (let turn = 1; turn <= 3; turn++) {
    await demo.send(`Paste ${turn}: ${"0123456789".repeat(40_000)}`);
    await expect(page.locator(ASSISTANT)).toHaveCount(turn);
    await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
    await expect(page.getByTestId("composer-send")).toBeVisible();
  }
  await expect(page.locator(`${ASSISTANT}[data-outcome="completed"]`)).toHaveCount(3);
  const inputs = await assistantFibers(page);
  expect(inputs).toHaveLength(3);
  for (const fiber of inputs) expect(JSON.stringify(fiber.input).length).toBeLessThan(401_000);
});

test("a conversation saved by the previous version (history in every input) opens and continues", async ({
  page,
}) => {
  const first = "Explain durable execution in two sentences";
  const second = "And why does that matter for agents?";
  const reply = expectedText([{ role: "user", content: first }]);
  // Write the version-1 database before the app ever opens it (any page of the origin will do).
  await page.goto("/manifest.webmanifest");
  const conversationId = await page.evaluate(
    async ({ first, reply }) => {
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const request = indexedDB.open("fiberline-demo-chat", 1);
        request.onupgradeneeded = () =>
          request.result
            .createObjectStore("conversations", { keyPath: "id" })
            .createIndex("updatedAt", "updatedAt");
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      const now = Date.now();
      const user = { role: "user", content: first };
      const assistant = { role: "assistant", content: reply };
      const final = {
        segments: [{ kind: "text", messageId: "chat-old:m1", text: reply }],
        seq: 9,
        outcome: "completed",
        recoveries: [],
        resets: 0,
      };
      const conversation = {
        id: "old-conversation",
        title: first,
        createdAt: now,
        updatedAt: now,
        history: [user, assistant],
        turns: [{ id: "old-turn", fiberId: "chat-old", user: first, startedAt: now, input: [user], final }],
      };
      await new Promise<void>((resolve, reject) => {
        const tx = db.transaction("conversations", "readwrite");
        tx.objectStore("conversations").put(conversation);
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(tx.error);
      });
      db.close();
      return conversation.id;
    },
    { first, reply },
  );
  await page.goto(`/#/chat/${conversationId}`);
  await expect.poll(() => page.evaluate(() => window.fiberline !== undefined)).toBe(true);
  const replies = page.locator(ASSISTANT);
  await expect(replies).toHaveCount(1);
  await expect(replies.first().getByTestId("message-text")).toHaveText(squash(reply), { useInnerText: true });
  await page.getByTestId("composer-input").fill(second);
  await page.getByTestId("composer-send").click();
  await expect(replies).toHaveCount(2);
  await expect(replies.last()).toHaveAttribute("data-status", "done");
  const answer = expectedText([
    { role: "user", content: first },
    { role: "assistant", content: reply },
    { role: "user", content: second },
  ]);
  await expect(replies.last().getByTestId("message-text")).toHaveText(squash(answer), { useInnerText: true });
});
