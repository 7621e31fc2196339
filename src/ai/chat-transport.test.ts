/**
 * `FiberlineChatTransport` driven by the AI SDK's own chat (`AbstractChat` from `ai`, what
 * `useChat` wraps) over a real runtime: the reply as one assistant message, a doubled send that
 * joins one fiber, a "reload" that resumes the reply in place with no part twice, approvals that
 * reach the fiber as its durable event, `stop()` cancelling the fiber, and a regenerated step.
 */

import type { LanguageModelV3StreamPart } from "@ai-sdk/provider";
import {
  AbstractChat,
  type ChatInit,
  type ChatState,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  type UIMessage,
  type UIMessageChunk,
} from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { afterEach, describe, expect, it } from "vitest";
import { defineAgent } from "../agent/agent";
import {
  agentRuntime,
  closeRuntimes,
  heldAfterTool,
  heldApprovalTool,
  recordingTool,
  type ToolRun,
} from "../agent/agent-harness";
import { ScriptedModel, type ScriptedReply } from "../agent/scripted-model";
import type { ModelProvider } from "../agent/types";
import { defineFiber } from "../core/define";
import { createRuntime, type Runtime } from "../core/runtime";
import type { Store, WriteGroup } from "../core/store";
import { MemoryStore } from "../store/memory-store";
import { aiSdkModel } from "./ai-sdk-model";
import { type ChatCursorStore, memoryCursorStore } from "./chat-cursors";
import { fiberIdFor, toAgentMessages } from "./chat-input";
import { answersIn, FiberlineChatTransport } from "./chat-transport";
import { isDiscardedPart } from "./ui-chunks";

afterEach(closeRuntimes);

/** The chat state `useChat` keeps in React, as plain arrays. */
class ArrayState implements ChatState<UIMessage> {
  status: ChatState<UIMessage>["status"] = "ready";
  error: Error | undefined = undefined;
  messages: UIMessage[];
  constructor(messages: UIMessage[] = []) {
    this.messages = messages;
  }
  pushMessage = (message: UIMessage): void => {
    this.messages = [...this.messages, message];
  };
  popMessage = (): void => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index: number, message: UIMessage): void => {
    this.messages = this.messages.map((m, i) => (i === index ? this.snapshot(message) : m));
  };
  snapshot = <T>(thing: T): T => structuredClone(thing);
}

/** The AI SDK's chat without React: what `useChat` drives. */
class TestChat extends AbstractChat<UIMessage> {
  constructor(init: ChatInit<UIMessage>) {
    super({ ...init, state: new ArrayState(init.messages) });
  }
}

const replies: ScriptedReply[] = [
  {
    reasoning: "They want a.txt removed.",
    text: "Deleting it. ",
    toolCalls: [{ id: "call_0", name: "delete_file", arguments: '{"path":"a.txt"}' }],
  },
  { text: "Done: a.txt is gone." },
];

interface Setup {
  runtime: Runtime;
  runs: ToolRun[];
  cursors: ChatCursorStore;
  transport: FiberlineChatTransport;
}

function setup(
  model: ModelProvider,
  options: { requiresApproval?: boolean; cursors?: ChatCursorStore; endGraceMs?: number } = {},
): Setup {
  const runs: ToolRun[] = [];
  const agent = defineAgent({
    name: "assistant",
    model,
    tools: [recordingTool(runs, { requiresApproval: options.requiresApproval ?? false })],
    modelRetry: { maxAttempts: 3, initialDelayMs: 1 },
  });
  const runtime = agentRuntime(agent, new MemoryStore());
  const cursors = options.cursors ?? memoryCursorStore();
  return {
    runtime,
    runs,
    cursors,
    transport: new FiberlineChatTransport({
      agent: "assistant",
      client: runtime,
      cursors,
      endGraceMs: options.endGraceMs ?? 10,
    }),
  };
}

/** The assistant message with the fiber id (in its id, tool call ids and part ids) replaced. */
function normalized(message: UIMessage | undefined): unknown {
  if (!message) return message;
  return JSON.parse(JSON.stringify(message).replaceAll(message.id, "<fiber>"));
}

describe("FiberlineChatTransport with the AI SDK's chat", () => {
  it("answers with one assistant message: a step per model call, reasoning, text, the tool call and its output", async () => {
    const { transport, runs } = setup(new ScriptedModel({ replies }).provider());
    const chat = new TestChat({ id: "chat-1", transport });
    await chat.sendMessage({ text: "delete a.txt" });

    expect(chat.status).toBe("ready");
    const reply = chat.messages.at(-1);
    expect(reply?.role).toBe("assistant");
    expect(reply?.id).toMatch(/^ai\/chat-1\//);
    expect(
      reply?.parts.map((p) => (p.type === "text" || p.type === "reasoning" ? `${p.type}:${p.text}` : p.type)),
    ).toEqual([
      "step-start",
      "reasoning:They want a.txt removed.",
      "text:Deleting it. ",
      "tool-delete_file",
      "step-start",
      "text:Done: a.txt is gone.",
    ]);
    expect(reply?.parts[3]).toMatchObject({
      state: "output-available",
      input: { path: "a.txt" },
      output: "deleted a.txt",
    });
    expect(runs).toHaveLength(1);
  });

  it("joins the running fiber when the same message is sent twice", async () => {
    const { transport, runtime } = setup(new ScriptedModel({ replies }).provider());
    const request = {
      chatId: "chat-2",
      trigger: "submit-message" as const,
      messageId: undefined,
      messages: [
        { id: "u1", role: "user" as const, parts: [{ type: "text" as const, text: "delete a.txt" }] },
      ],
      abortSignal: undefined,
    };
    const [first, second] = await Promise.all([
      transport.sendMessages(request),
      transport.sendMessages(request),
    ]);
    const read = async (stream: ReadableStream<UIMessageChunk>) => {
      const out: UIMessageChunk[] = [];
      const reader = stream.getReader();
      for (let next = await reader.read(); !next.done; next = await reader.read()) out.push(next.value);
      return out;
    };
    const [a, b] = await Promise.all([read(first), read(second)]);
    expect(a).toEqual(b);
    expect(await runtime.list({ name: "assistant" })).toHaveLength(1);
  });

  it("regenerate() answers again with a new fiber, in place of the old reply", async () => {
    const { transport, runtime } = setup(
      new ScriptedModel({ replies: [{ text: "One answer." }] }).provider(),
    );
    const chat = new TestChat({ id: "chat-r", transport });
    await chat.sendMessage({ text: "hello" });
    const first = chat.messages.at(-1)?.id;
    await chat.regenerate();
    const second = chat.messages.at(-1)?.id;
    expect(chat.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(second).not.toBe(first);
    expect(second).toMatch(/\/again\//);
    expect((await runtime.list({ name: "assistant" })).map((f) => f.id).sort()).toEqual(
      [first, second].sort(),
    );
  });

  it("resumes a reply after a reload in place: the same message, nothing twice, nothing missing; then null", async () => {
    const reference = setup(new ScriptedModel({ replies }).provider());
    const whole = new TestChat({ id: "chat-3", transport: reference.transport });
    await whole.sendMessage({ text: "delete a.txt" });

    // The second model call waits, so the page "reloads" in the middle of the reply.
    const { model: held, release } = heldAfterTool(new ScriptedModel({ replies }).provider());
    const live = setup(held);
    const first = new TestChat({ id: "chat-3", transport: live.transport });
    const sending = first.sendMessage({ text: "delete a.txt" });
    await expect
      .poll(() =>
        first.messages
          .at(-1)
          ?.parts.some((p) => p.type === "tool-delete_file" && p.state === "output-available"),
      )
      .toBe(true);

    // The page goes away (nothing is aborted: `ai` aborts only on stop()); a new page restores
    // what the app had saved, and resumes.
    const saved = structuredClone(first.messages);
    const second = new TestChat({ id: "chat-3", transport: live.transport, messages: saved });
    const resuming = second.resumeStream();
    release();
    await Promise.all([resuming, sending]);

    expect(second.messages).toHaveLength(2);
    expect(normalized(second.messages.at(-1))).toEqual(normalized(whole.messages.at(-1)));
    expect(live.runs).toHaveLength(1);
    await expect.poll(async () => (await live.cursors.get("chat-3"))?.done).toBe(true);
    expect(await live.transport.reconnectToStream({ chatId: "chat-3" })).toBeNull();
  });

  it("ends the stream at an approval request; the chat's approval reaches the fiber and the tool runs once", async () => {
    const { transport, runs, runtime } = setup(new ScriptedModel({ replies }).provider(), {
      requiresApproval: true,
    });
    const chat = new TestChat({
      id: "chat-4",
      transport,
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    await chat.sendMessage({ text: "delete a.txt" });
    const tool = chat.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file");
    expect(tool).toMatchObject({ state: "approval-requested" });
    expect(runs).toHaveLength(0);
    const fiberId = String(chat.messages.at(-1)?.id);
    await expect.poll(async () => (await runtime.get(fiberId))?.status).toBe("waiting");

    const approvalId = (tool as { approval: { id: string } }).approval.id;
    expect(approvalId).toMatch(/^approval:/);
    await chat.addToolApprovalResponse({ id: approvalId, approved: true });
    await expect
      .poll(() => chat.status === "ready" && chat.messages.at(-1)?.parts.at(-1)?.type === "text")
      .toBe(true);

    const reply = chat.messages.at(-1);
    expect(chat.messages).toHaveLength(2);
    expect(reply?.parts.filter((p) => p.type === "tool-delete_file")).toMatchObject([
      { state: "output-available" },
    ]);
    expect(reply?.parts.filter((p) => p.type === "text").map((p) => (p as { text: string }).text)).toEqual([
      "Deleting it. ",
      "Done: a.txt is gone.",
    ]);
    expect(runs).toHaveLength(1);
    expect((await runtime.get(fiberId))?.status).toBe("completed");
  });

  it("shows a denial as output-denied and the tool never runs", async () => {
    const { transport, runs } = setup(new ScriptedModel({ replies }).provider(), { requiresApproval: true });
    const chat = new TestChat({
      id: "chat-5",
      transport,
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    await chat.sendMessage({ text: "delete a.txt" });
    const tool = chat.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file") as {
      approval: { id: string };
    };
    await chat.addToolApprovalResponse({ id: tool.approval.id, approved: false, reason: "not today" });
    await expect
      .poll(() => chat.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file"))
      .toMatchObject({
        state: "output-denied",
      });
    await expect.poll(() => chat.status).toBe("ready");
    expect(runs).toHaveLength(0);
  });

  it("stop() cancels the fiber; there is nothing to resume afterwards", async () => {
    const model = new MockLanguageModelV3({
      doStream: async ({ abortSignal }) => ({
        stream: new ReadableStream<LanguageModelV3StreamPart>({
          start(controller) {
            controller.enqueue({ type: "text-start", id: "t" });
            controller.enqueue({ type: "text-delta", id: "t", delta: "Thinking for a long time" });
            abortSignal?.addEventListener("abort", () => controller.error(abortSignal.reason));
          },
        }),
      }),
    });
    const { transport, runtime } = setup(aiSdkModel(model));
    const chat = new TestChat({ id: "chat-6", transport });
    const sending = chat.sendMessage({ text: "go on forever" });
    await expect.poll(() => chat.messages.at(-1)?.role === "assistant").toBe(true);
    const fiberId = String(chat.messages.at(-1)?.id);
    await chat.stop();
    await sending;

    await expect.poll(async () => (await runtime.get(fiberId))?.status).toBe("cancelled");
    expect(chat.status).toBe("ready");
    await expect.poll(async () => (await transport.cursor("chat-6"))?.done).toBe(true);
    expect(await transport.reconnectToStream({ chatId: "chat-6" })).toBeNull();
  });

  it("marks the parts of a step regenerated while watched as discarded, and a replay leaves them out", async () => {
    const script = new ScriptedModel({
      replies: [{ text: "A reply that the network cuts in two." }],
      cut: (request, body) => (request === 0 ? Math.floor(body.length / 2) : undefined),
    });
    const { transport, cursors } = setup(script.provider({ continuation: "none" }));
    const chat = new TestChat({ id: "chat-7", transport });
    await chat.sendMessage({ text: "hello" });

    const live = chat.messages.at(-1);
    const discarded = live?.parts.filter(isDiscardedPart) ?? [];
    expect(discarded.length).toBeGreaterThan(0);
    const shown = live?.parts.filter((p) => !isDiscardedPart(p) && p.type === "text");
    expect(shown?.map((p) => (p as { text: string }).text)).toEqual([
      "A reply that the network cuts in two.",
    ]);
    // The next turn sends the model what it said, not the cut attempt's text before it.
    expect(toAgentMessages(chat.messages).at(-1)).toEqual({
      role: "assistant",
      content: "A reply that the network cuts in two.",
    });

    // A page that crashed before the end was delivered resumes: the replay has the final reply only.
    const cursor = await transport.cursor("chat-7");
    if (cursor) await cursors.set("chat-7", { ...cursor, done: false, delivered: 0 });
    const again = new TestChat({ id: "chat-7", transport, messages: structuredClone(chat.messages) });
    await again.resumeStream();
    const replayed = again.messages.at(-1);
    expect(replayed?.parts.some(isDiscardedPart)).toBe(false);
    expect(replayed?.parts.filter((p) => p.type === "text").map((p) => (p as { text: string }).text)).toEqual(
      ["A reply that the network cuts in two."],
    );
  });
});

describe("FiberlineChatTransport after an approval of a call regenerated while watched (ai 6)", () => {
  it("streams the rest under the ids the page's message has (~1), so the output reaches the call", async () => {
    const script = new ScriptedModel({
      replies,
      cut: (request, body) => (request === 0 ? Math.floor(body.length / 2) : undefined),
    });
    const { transport, runs } = setup(script.provider({ continuation: "none" }), { requiresApproval: true });
    const chat = new TestChat({
      id: "chat-regenerated",
      transport,
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    await chat.sendMessage({ text: "delete a.txt" });
    const live = (chat.messages.at(-1)?.parts ?? []).filter(
      (p) => p.type === "tool-delete_file" && !isDiscardedPart(p),
    );
    expect(live).toMatchObject([{ state: "approval-requested", toolCallId: expect.stringMatching(/~1$/) }]);
    const { approval } = live[0] as unknown as { approval: { id: string } };
    await chat.addToolApprovalResponse({ id: approval.id, approved: true });
    await expect
      .poll(() => chat.status === "ready" && chat.messages.at(-1)?.parts.at(-1)?.type === "text")
      .toBe(true);

    expect(chat.error).toBeUndefined();
    const after = (chat.messages.at(-1)?.parts ?? []).filter(
      (p) => p.type === "tool-delete_file" && !isDiscardedPart(p),
    );
    expect(after).toMatchObject([{ state: "output-available", output: "deleted a.txt" }]);
    expect(runs).toHaveLength(1);
  });
});

describe("toAgentMessages", () => {
  it("keeps the text of user and assistant messages and a user's images, and drops tool parts", () => {
    const messages: UIMessage[] = [
      {
        id: "u1",
        role: "user",
        parts: [
          { type: "text", text: "What is in " },
          { type: "text", text: "this picture?" },
          { type: "file", mediaType: "image/png", url: "data:image/png;base64,iVBORw0KGgo=" },
        ],
      },
      {
        id: "a1",
        role: "assistant",
        parts: [
          { type: "step-start" },
          { type: "reasoning", text: "Look closely." },
          { type: "text", text: "A cat." },
        ],
      },
      { id: "u2", role: "user", parts: [{ type: "text", text: "Thanks" }] },
    ];
    expect(toAgentMessages(messages)).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "What is in this picture?" },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
        ],
      },
      { role: "assistant", content: "A cat." },
      { role: "user", content: "Thanks" },
    ]);
  });
});

/** A model that answers `echo(<n>): <last user text>`, n counting its calls; `gate` holds a call's text. */
function echoModel(gate?: (text: string) => Promise<void>) {
  let calls = 0;
  return aiSdkModel(
    new MockLanguageModelV3({
      doStream: async ({ prompt }) => {
        const user = prompt.findLast((m) => m.role === "user");
        const said = user?.content.map((p) => (p.type === "text" ? p.text : "")).join("") ?? "";
        const text = `echo(${++calls}): ${said}`;
        await gate?.(said);
        return {
          stream: new ReadableStream<LanguageModelV3StreamPart>({
            start(controller) {
              controller.enqueue({ type: "text-start", id: "t" });
              controller.enqueue({ type: "text-delta", id: "t", delta: text });
              controller.enqueue({ type: "text-end", id: "t" });
              controller.enqueue({
                type: "finish",
                finishReason: { unified: "stop", raw: "stop" },
                usage: {
                  inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
                  outputTokens: { total: 1, text: 1, reasoning: 0 },
                },
              });
              controller.close();
            },
          }),
        };
      },
    }),
  );
}

function textOf(message: UIMessage | undefined): string {
  return (message?.parts ?? []).map((p) => (p.type === "text" ? p.text : "")).join("");
}

async function readAllChunks(stream: ReadableStream<UIMessageChunk>): Promise<UIMessageChunk[]> {
  const out: UIMessageChunk[] = [];
  const reader = stream.getReader();
  for (;;) {
    const next = await reader.read();
    if (next.done) return out;
    out.push(next.value);
  }
}

describe("FiberlineChatTransport keeps each reply its own", () => {
  it("answers an edited message anew instead of replaying the reply to its first text", async () => {
    const { transport, runtime } = setup(echoModel());
    const chat = new TestChat({ id: "chat-edit", transport });
    await chat.sendMessage({ text: "first question" });
    const userId = String(chat.messages[0]?.id);
    await chat.sendMessage({ text: "edited question", messageId: userId });
    expect(chat.messages.map((m) => `${m.role}:${textOf(m)}`)).toEqual([
      "user:edited question",
      "assistant:echo(2): edited question",
    ]);
    expect(await runtime.list({ name: "assistant" })).toHaveLength(2);
  });

  it("asks the model again on every regenerate() from a user message", async () => {
    const { transport, runtime } = setup(echoModel());
    const chat = new TestChat({ id: "chat-again", transport });
    await chat.sendMessage({ text: "q" });
    const userId = String(chat.messages[0]?.id);
    await chat.regenerate({ messageId: userId });
    expect(textOf(chat.messages.at(-1))).toBe("echo(2): q");
    await chat.regenerate({ messageId: userId });
    expect(textOf(chat.messages.at(-1))).toBe("echo(3): q");
    expect(await runtime.list({ name: "assistant" })).toHaveLength(3);
  });

  it("leaves the chat's cursor to the latest reply when an earlier reply's stream ends after it started", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const { transport, cursors } = setup(echoModel((said) => (said === "one" ? held : Promise.resolve())));
    const user = (id: string, text: string): UIMessage => ({
      id,
      role: "user",
      parts: [{ type: "text", text }],
    });
    const request = (messages: UIMessage[]) => ({
      chatId: "chat-two",
      messages,
      trigger: "submit-message" as const,
      messageId: undefined,
      abortSignal: undefined,
    });
    const first = await transport.sendMessages(request([user("u1", "one")]));
    const second = await transport.sendMessages(request([user("u1", "one"), user("u2", "two")]));
    const latest = (await cursors.get("chat-two"))?.fiberId;
    expect(latest).toMatch(/\/u2\//);
    await readAllChunks(second);
    release();
    await readAllChunks(first);
    await expect.poll(() => cursors.get("chat-two")).toMatchObject({ fiberId: latest, done: true });
  });

  it("marks the reply done only once the page has read its end and outlived the grace", async () => {
    const { transport, cursors } = setup(echoModel(), { endGraceMs: 300 });
    const stream = await transport.sendMessages({
      chatId: "chat-end",
      messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: "hi" }] }],
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: undefined,
    });
    const reader = stream.getReader();
    let chunk = await reader.read();
    while (!chunk.done && chunk.value.type !== "finish") chunk = await reader.read();
    expect(chunk.value?.type).toBe("finish");
    // The page crashing now would have its finish in hand but not handled: a reload resumes.
    expect(await cursors.get("chat-end")).toMatchObject({ done: false });
    expect((await reader.read()).done).toBe(true);
    // Nor its message saved, maybe (`onFinish` comes after): done once the page outlived the grace.
    expect(await cursors.get("chat-end")).toMatchObject({ done: false });
    await expect.poll(() => cursors.get("chat-end")).toMatchObject({ done: true });
  });

  it("sends approvals answered in an earlier assistant message (messageId) to that reply's fiber", async () => {
    const { transport, runs, runtime } = setup(new ScriptedModel({ replies }).provider(), {
      requiresApproval: true,
    });
    const chat = new TestChat({ id: "chat-earlier", transport });
    await chat.sendMessage({ text: "delete a.txt" });
    const waiting = chat.messages.at(-1) as UIMessage;
    const tool = waiting.parts.find((p) => p.type === "tool-delete_file") as { approval: { id: string } };
    await chat.addToolApprovalResponse({ id: tool.approval.id, approved: true });
    // A newer user message follows the reply that waits for its approval.
    const messages = [
      ...structuredClone(chat.messages),
      { id: "u-later", role: "user" as const, parts: [{ type: "text" as const, text: "and then?" }] },
    ];
    const stream = await transport.sendMessages({
      chatId: "chat-earlier",
      messages,
      trigger: "submit-message",
      messageId: waiting.id,
      abortSignal: undefined,
    });
    await readAllChunks(stream);
    await expect.poll(async () => (await runtime.get(waiting.id))?.status).toBe("completed");
    expect(runs).toHaveLength(1);
  });

  it("gives chats whose ids hold a slash replies of their own", async () => {
    expect(await fiberIdFor(["a/b", "c", "d1"])).not.toBe(await fiberIdFor(["a", "b/c", "d1"]));
    expect(await fiberIdFor(["chat-1", "u1"])).toBe("ai/chat-1/u1");
  });
});

describe("FiberlineChatTransport across reloads and the chat's own races", () => {
  it("replays a reply the page ended just before it went away: an unsaved reply comes back whole, a saved one stays single", async () => {
    const { transport, runtime, cursors } = setup(new ScriptedModel({ replies }).provider(), {
      endGraceMs: 5_000,
    });
    const chat = new TestChat({ id: "chat-grace", transport });
    await chat.sendMessage({ text: "delete a.txt" });
    const whole = structuredClone(chat.messages);
    const reloaded = () =>
      new FiberlineChatTransport({ agent: "assistant", client: runtime, cursors, endGraceMs: 5_000 });

    // The page died before its save of the reply committed: the new page has the question only.
    const unsaved = new TestChat({ id: "chat-grace", transport: reloaded(), messages: whole.slice(0, 1) });
    await unsaved.resumeStream();
    expect(unsaved.messages).toEqual(whole);
    // The save did commit: the replay rebuilds the same message in its place.
    const saved = new TestChat({ id: "chat-grace", transport: reloaded(), messages: structuredClone(whole) });
    await saved.resumeStream();
    expect(saved.messages).toEqual(whole);
  });

  it("a second resumeStream() takes the reply over from the first without cancelling it", async () => {
    const reference = setup(new ScriptedModel({ replies }).provider());
    const whole = new TestChat({ id: "chat-twice", transport: reference.transport });
    await whole.sendMessage({ text: "delete a.txt" });

    // The second model call waits, so the page "reloads" in the middle of the reply.
    const { model: held, release } = heldAfterTool(new ScriptedModel({ replies }).provider());
    const live = setup(held);
    const first = new TestChat({ id: "chat-twice", transport: live.transport });
    const sending = first.sendMessage({ text: "delete a.txt" });
    await expect
      .poll(() => first.messages.at(-1)?.parts.some((p) => p.type === "tool-delete_file"))
      .toBe(true);
    const fiberId = String(first.messages.at(-1)?.id);

    const page = new TestChat({
      id: "chat-twice",
      transport: live.transport,
      messages: structuredClone(first.messages),
    });
    const resuming = page.resumeStream();
    await expect.poll(() => page.status).toBe("streaming");
    // ai aborts the running resume's signal to start this one, as stop() would.
    const again = page.resumeStream();
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    await Promise.all([resuming, again, sending]);

    expect((await live.runtime.get(fiberId))?.status).toBe("completed");
    expect(normalized(page.messages.at(-1))).toEqual(normalized(whole.messages.at(-1)));
    expect(live.runs).toHaveLength(1);
  });

  it("shows an approved call as running after a reload, with no approval buttons to press again", async () => {
    const held = heldApprovalTool();
    const agent = defineAgent({
      name: "assistant",
      model: new ScriptedModel({ replies }).provider(),
      tools: [held.tool],
    });
    const runtime = agentRuntime(agent, new MemoryStore());
    const cursors = memoryCursorStore();
    const page = () =>
      new FiberlineChatTransport({ agent: "assistant", client: runtime, cursors, endGraceMs: 10 });
    const chat = new TestChat({
      id: "chat-approved",
      transport: page(),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    await chat.sendMessage({ text: "delete a.txt" });
    const requested = chat.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file") as {
      approval: { id: string };
    };
    void chat.addToolApprovalResponse({ id: requested.approval.id, approved: true });
    await expect.poll(() => held.runs()).toBe(1);

    // The page reloads while the approved tool runs.
    const reloaded = new TestChat({
      id: "chat-approved",
      transport: page(),
      messages: structuredClone(chat.messages),
    });
    const resuming = reloaded.resumeStream();
    const tool = () => reloaded.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file");
    // ai 6 has no chunk that shows an answer: the call shows as running, not as a question.
    await expect.poll(() => (tool() as { state?: string } | undefined)?.state).toBe("input-available");
    held.release();
    await resuming;
    expect(tool()).toMatchObject({ state: "output-available", output: "deleted a.txt" });
    expect(held.runs()).toBe(1);
  });

  it("replays the fiber's own events in every stream: to a resume that replaces another, and to a chat remounted after a stop", async () => {
    const progress = defineFiber("assistant", {
      async run(ctx) {
        ctx.emit("progress", { n: 1 });
        await ctx.waitForEvent("go");
        ctx.emit("progress", { n: 2 });
      },
    });
    const runtime = createRuntime({
      store: new MemoryStore(),
      fibers: [progress],
      leaseMs: 30,
      pollIntervalMs: 10,
    });
    const cursors = memoryCursorStore();
    const transport = new FiberlineChatTransport({
      agent: "assistant",
      client: runtime,
      cursors,
      endGraceMs: 10,
    });
    const seen: unknown[][] = [[], [], []];
    const first = new TestChat({ id: "chat-data", transport, onData: (part) => seen[0]?.push(part.data) });
    void first.sendMessage({ text: "work" }).catch(() => {});
    await expect.poll(() => seen[0]).toEqual([{ n: 1 }]);
    const fiberId = String((await cursors.get("chat-data"))?.fiberId);

    // A page that resumes the reply, then resumes it again: the second replays them, as state.
    const page = new TestChat({ id: "chat-data", transport, onData: (part) => seen[1]?.push(part.data) });
    const resuming = page.resumeStream();
    await expect.poll(() => seen[1]).toEqual([{ n: 1 }]);
    const again = page.resumeStream();
    // ai 7's useChat stops a chat when its component unmounts; a component of the same chat id
    // mounted in the same commit resumes with a new chat, which must get every event.
    const stopping = page.stop();
    const other = new TestChat({ id: "chat-data", transport, onData: (part) => seen[2]?.push(part.data) });
    const remounted = other.resumeStream();
    await expect.poll(() => seen[2]).toEqual([{ n: 1 }]);
    await runtime.sendEvent(fiberId, "go");
    await Promise.all([resuming, again, stopping, remounted]);

    expect((await runtime.get(fiberId))?.status).toBe("completed");
    expect(seen[1]?.slice(0, 1)).toEqual([{ n: 1 }]);
    expect(seen[2]).toEqual([{ n: 1 }, { n: 2 }]);
    await runtime.close();
  });
});

describe("FiberlineChatTransport at an approval that other chunks follow", () => {
  /** A store that stops answering right after the commit that holds a `tool.approval` chunk: a worker that died there. */
  function dyingAfterApproval(inner: Store): { store: Store; dead: () => boolean } {
    let dead = false;
    const store = new Proxy(inner, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          if (dead && prop !== "close") return new Promise(() => {});
          const result = value.apply(target, args);
          const groups = prop === "commit" ? (args[0] as WriteGroup[]) : [];
          if (!groups.some((g) => g.chunks?.some((c) => c.type === "tool.approval"))) return result;
          return (result as Promise<unknown>).then(() => {
            dead = true;
            return new Promise(() => {});
          });
        };
      },
    });
    return { store, dead: () => dead };
  }

  it("pauses at it after a crash between the request and the fiber's wait (fiber.recovered after it), and the approval goes through", async () => {
    const disk = new MemoryStore();
    const held = heldApprovalTool();
    const agent = defineAgent({
      name: "assistant",
      model: new ScriptedModel({ replies }).provider(),
      tools: [held.tool],
    });
    const dying = dyingAfterApproval(disk);
    const first = agentRuntime(agent, dying.store);
    const cursors = memoryCursorStore();
    const chat = new TestChat({
      id: "chat-crash",
      transport: new FiberlineChatTransport({ agent: "assistant", client: first, cursors, endGraceMs: 10 }),
    });
    void chat.sendMessage({ text: "delete a.txt" }).catch(() => {});
    await expect.poll(() => dying.dead()).toBe(true);
    const fiberId = String((await cursors.get("chat-crash"))?.fiberId);

    // The next worker picks the fiber up: its fiber.recovered lands after the request.
    await new Promise((resolve) => setTimeout(resolve, 60));
    const second = agentRuntime(agent, disk);
    await second.recover();
    await expect.poll(async () => (await second.get(fiberId))?.status).toBe("waiting");
    const stored = (await disk.readStream(fiberId, 0)).map((c) => c.type);
    expect(stored.slice(stored.indexOf("tool.approval"))).toEqual(["tool.approval", "fiber.recovered"]);

    const page = new TestChat({
      id: "chat-crash",
      transport: new FiberlineChatTransport({ agent: "assistant", client: second, cursors, endGraceMs: 10 }),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    await page.resumeStream(); // ends at the request: the chat is ready for an answer
    const tool = () =>
      page.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file") as
        | { state?: string; approval?: { id: string } }
        | undefined;
    expect(page.status).toBe("ready");
    expect(tool()?.state).toBe("approval-requested");
    await page.addToolApprovalResponse({ id: String(tool()?.approval?.id), approved: true });
    await expect.poll(() => held.runs()).toBe(1);
    held.release();
    await expect.poll(() => page.status === "ready" && tool()?.state === "output-available").toBe(true);
    await expect.poll(async () => (await second.get(fiberId))?.status).toBe("completed");
    expect(held.runs()).toBe(1);
  });

  it("pauses at it when the fiber emits its own chunk before it waits, on the first page and after a reload", async () => {
    const noting = defineFiber("assistant", {
      async run(ctx) {
        const where = { messageId: `${ctx.id}:m1`, index: 0, toolCallId: "c0" };
        ctx.emit("message.start", { messageId: where.messageId, turn: 1, model: "x" });
        ctx.emit("tool.call", { ...where, name: "delete_file", arguments: "{}" });
        ctx.emit("message.end", { messageId: where.messageId, finishReason: "tool_calls", usage: null });
        ctx.emit("tool.approval", { ...where, name: "delete_file", arguments: {}, event: "approval:k" });
        ctx.emit("status", { text: "waiting for your approval" });
        const decision = await ctx.waitForEvent<{ approved: boolean }>("approval:k");
        ctx.emit("tool.result", {
          ...where,
          name: "delete_file",
          status: decision.approved ? "ok" : "denied",
          result: "done",
        });
      },
    });
    const runtime = agentRuntime(noting, new MemoryStore());
    const cursors = memoryCursorStore();
    const transport = () =>
      new FiberlineChatTransport({ agent: "assistant", client: runtime, cursors, endGraceMs: 10 });
    const tool = (chat: TestChat) =>
      chat.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file") as
        | { state?: string }
        | undefined;
    const chat = new TestChat({ id: "chat-note", transport: transport() });
    await chat.sendMessage({ text: "go" });
    expect([chat.status, tool(chat)?.state]).toEqual(["ready", "approval-requested"]);
    const page = new TestChat({
      id: "chat-note",
      transport: transport(),
      messages: structuredClone(chat.messages),
    });
    await page.resumeStream();
    expect([page.status, tool(page)?.state]).toEqual(["ready", "approval-requested"]);
  });
});

describe("FiberlineChatTransport at a failed reply's end", () => {
  it("marks the reply done once its error was read: a reload resumes nothing and reports no error again", async () => {
    const failing = defineFiber("assistant", {
      async run(ctx) {
        ctx.emit("message.start", { messageId: `${ctx.id}:m1`, turn: 1, model: "x" });
        ctx.emit("text.delta", { messageId: `${ctx.id}:m1`, delta: "partial" });
        throw new Error("model exploded");
      },
    });
    const runtime = agentRuntime(failing, new MemoryStore());
    const cursors = memoryCursorStore();
    const transport = () =>
      new FiberlineChatTransport({ agent: "assistant", client: runtime, cursors, endGraceMs: 10 });
    const errors: string[] = [];
    const chat = new TestChat({
      id: "chat-failed",
      transport: transport(),
      onError: (e) => errors.push(e.message),
    });
    await chat.sendMessage({ text: "go" });
    await expect.poll(() => errors).toEqual(["model exploded"]);
    await expect.poll(async () => (await cursors.get("chat-failed"))?.done).toBe(true);

    const page = new TestChat({
      id: "chat-failed",
      transport: transport(),
      messages: structuredClone(chat.messages),
      onError: (e) => errors.push(e.message),
    });
    await page.resumeStream();
    expect(page.status).toBe("ready");
    expect(errors).toEqual(["model exploded"]);
  });
});

describe("FiberlineChatTransport: stop() while a resume is still looking", () => {
  it("cancels the reply: the chat was stopped (ai 7's useChat unmounting), not replaced", async () => {
    const waiting = defineFiber("assistant", {
      async run(ctx) {
        ctx.emit("progress", { n: 1 });
        await ctx.waitForEvent("go");
      },
    });
    const runtime = createRuntime({
      store: new MemoryStore(),
      fibers: [waiting],
      leaseMs: 30,
      pollIntervalMs: 10,
    });
    const cursors = memoryCursorStore();
    const transport = () =>
      new FiberlineChatTransport({ agent: "assistant", client: runtime, cursors, endGraceMs: 10 });
    const first = new TestChat({ id: "chat-lookup", transport: transport() });
    void first.sendMessage({ text: "work" }).catch(() => {});
    await expect.poll(async () => (await cursors.get("chat-lookup"))?.fiberId).toBeDefined();
    const fiberId = String((await cursors.get("chat-lookup"))?.fiberId);

    // After a reload the page resumes, and is stopped before the transport found the reply.
    const page = new TestChat({ id: "chat-lookup", transport: transport() });
    const resuming = page.resumeStream();
    await page.stop();
    await resuming;

    await expect.poll(async () => (await runtime.get(fiberId))?.status).toBe("cancelled");
    await expect.poll(async () => (await cursors.get("chat-lookup"))?.done).toBe(true);
    await runtime.close();
  });
});

describe("FiberlineChatTransport when a reply ends without running an approved call", () => {
  it("closes the call with an error, so the chat does not send its approval again and again", async () => {
    const held = heldApprovalTool();
    const agent = defineAgent({
      name: "assistant",
      model: new ScriptedModel({ replies }).provider(),
      tools: [held.tool],
    });
    const runtime = agentRuntime(agent, new MemoryStore());
    const transport = new FiberlineChatTransport({
      agent: "assistant",
      client: runtime,
      cursors: memoryCursorStore(),
      endGraceMs: 10,
    });
    let sends = 0;
    const send = transport.sendMessages.bind(transport);
    transport.sendMessages = (options) => {
      if (++sends > 20) return Promise.reject(new Error("sent over and over"));
      return send(options);
    };
    const chat = new TestChat({
      id: "chat-cut",
      transport,
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    await chat.sendMessage({ text: "delete a.txt" });
    const fiberId = String(chat.messages.at(-1)?.id);
    const requested = chat.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file") as {
      approval: { id: string };
    };
    const approving = chat.addToolApprovalResponse({ id: requested.approval.id, approved: true });
    await expect.poll(() => held.runs()).toBe(1);
    // Stopped elsewhere (another tab, the inspector) while the approved tool runs.
    await runtime.cancel(fiberId, "Stopped in another tab.");
    await approving;
    await expect.poll(() => chat.status).toBe("ready");
    await new Promise((resolve) => setTimeout(resolve, 200));
    held.release();

    expect(sends).toBe(2); // the question, then the approval; nothing after the end
    expect(chat.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file")).toMatchObject({
      state: "output-error",
      errorText: "The reply was stopped before this call finished.",
    });
  });
});

describe("answersIn", () => {
  it("takes the decision the fiber consumed, else the first to arrive; a payload that is no decision denies", () => {
    expect(
      answersIn([
        { name: "approval:a", seq: 1, payload: { approved: true } },
        {
          name: "approval:a",
          seq: 2,
          payload: { approved: false, reason: "changed my mind" },
          consumedBy: 7,
        },
        { name: "approval:b", seq: 3, payload: { approved: false, reason: "no" } },
        { name: "approval:b", seq: 4, payload: { approved: true } },
        { name: "approval:c", seq: 5, payload: "yes" },
      ]),
    ).toEqual(
      new Map([
        ["approval:a", { approved: false, reason: "changed my mind" }],
        ["approval:b", { approved: false, reason: "no" }],
        ["approval:c", { approved: false }],
      ]),
    );
  });
});
