/**
 * `FiberlineChatTransport` under the next major of the AI SDK, `ai` 7 (installed beside ai 6 as
 * the npm alias `ai7`; it needs Node 22, so it runs here in real Chromium): its own chat
 * (`AbstractChat`, what `useChat` 4 wraps) drives the transport built against ai 6 over a real
 * runtime. A reply with reasoning, text, a tool call and its output; a reply resumed in place
 * after a "reload", also while an approved tool runs; an approval that reaches the fiber; the
 * parts of a regenerated model call marked discarded; `stop()` cancelling the fiber.
 */

import {
  AbstractChat,
  type ChatInit,
  type ChatState,
  type ChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  type UIMessage,
} from "ai7";
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
import type { Runtime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { memoryCursorStore } from "./chat-cursors";
import { FiberlineChatTransport } from "./chat-transport";
import { isDiscardedPart } from "./ui-chunks";

afterEach(closeRuntimes);

/** The chat state `useChat` keeps in React, as plain arrays. */
class ArrayState implements ChatState<UIMessage> {
  status: ChatState<UIMessage>["status"] = "ready";
  error: Error | undefined = undefined;
  messages: UIMessage[];
  readonly #changed: ((message: UIMessage) => void) | undefined;
  constructor(messages: UIMessage[] = [], changed?: (message: UIMessage) => void) {
    this.messages = messages;
    this.#changed = changed;
  }
  pushMessage = (message: UIMessage): void => {
    this.messages = [...this.messages, message];
    this.#changed?.(message);
  };
  popMessage = (): void => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index: number, message: UIMessage): void => {
    this.messages = this.messages.map((m, i) => (i === index ? this.snapshot(message) : m));
    this.#changed?.(message);
  };
  snapshot = <T>(thing: T): T => structuredClone(thing);
}

/** ai 7's chat without React. */
class Chat7 extends AbstractChat<UIMessage> {
  constructor(
    init: Omit<ChatInit<UIMessage>, "transport"> & {
      transport: FiberlineChatTransport;
      /** Called with each message the chat writes, as it writes it. */
      changed?: (message: UIMessage) => void;
    },
  ) {
    // Only here is a cast needed: this repository builds against ai 6 and holds both majors, so
    // TypeScript sees two unrelated UIMessage types. In an app on ai 7, fiberline/ai's declarations
    // import their types from "ai", which is then ai 7.
    super({
      ...init,
      transport: init.transport as unknown as ChatTransport<UIMessage>,
      state: new ArrayState(init.messages, init.changed),
    });
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

function setup(model: ModelProvider, requiresApproval = false, resetStep = false) {
  const runs: ToolRun[] = [];
  const agent = defineAgent({
    name: "assistant",
    model,
    tools: [recordingTool(runs, { requiresApproval })],
    modelRetry: { maxAttempts: 3, initialDelayMs: 1 },
  });
  const runtime: Runtime = agentRuntime(agent, new MemoryStore());
  const transport = new FiberlineChatTransport({
    agent: "assistant",
    client: runtime,
    cursors: memoryCursorStore(),
    resetStep,
    endGraceMs: 10,
  });
  return { runtime, runs, transport };
}

const summary = (message: UIMessage | undefined) =>
  message?.parts.map((p) => (p.type === "text" || p.type === "reasoning" ? `${p.type}:${p.text}` : p.type));

/** The message with its fiber id replaced, to compare two runs. */
function normalized(message: UIMessage | undefined): unknown {
  if (!message) return message;
  return JSON.parse(JSON.stringify(message).replaceAll(message.id, "<fiber>"));
}

describe("FiberlineChatTransport with ai 7's chat, in Chromium", () => {
  it("answers with one assistant message: a step per model call, reasoning, text, the tool call and its output", async () => {
    const { transport, runs } = setup(new ScriptedModel({ replies }).provider());
    const chat = new Chat7({ id: "chat-1", transport });
    // ai 7's chat, not ai 6's: only ai 7 has dispose().
    expect(typeof (chat as { dispose?: unknown }).dispose).toBe("function");
    await chat.sendMessage({ text: "delete a.txt" });

    expect(chat.error).toBeUndefined();
    expect(chat.status).toBe("ready");
    const reply = chat.messages.at(-1);
    expect(reply?.id).toMatch(/^ai\/chat-1\//);
    expect(summary(reply)).toEqual([
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

  it("resumes a reply after a reload in place: the same message, nothing twice, nothing missing", async () => {
    const reference = setup(new ScriptedModel({ replies }).provider());
    const whole = new Chat7({ id: "chat-3", transport: reference.transport });
    await whole.sendMessage({ text: "delete a.txt" });

    // The second model call waits, so the page "reloads" in the middle of the reply.
    const { model: held, release } = heldAfterTool(new ScriptedModel({ replies }).provider());
    const live = setup(held);
    const first = new Chat7({ id: "chat-3", transport: live.transport });
    const sending = first.sendMessage({ text: "delete a.txt" });
    await expect
      .poll(() =>
        first.messages
          .at(-1)
          ?.parts.some((p) => p.type === "tool-delete_file" && p.state === "output-available"),
      )
      .toBe(true);

    const second = new Chat7({
      id: "chat-3",
      transport: live.transport,
      messages: structuredClone(first.messages),
    });
    const resuming = second.resumeStream();
    release();
    await Promise.all([resuming, sending]);

    expect(second.error).toBeUndefined();
    expect(second.messages).toHaveLength(2);
    expect(normalized(second.messages.at(-1))).toEqual(normalized(whole.messages.at(-1)));
    expect(live.runs).toHaveLength(1);
  });

  it("ends the stream at an approval request; the chat's approval reaches the fiber and the tool runs once", async () => {
    const { transport, runs, runtime } = setup(new ScriptedModel({ replies }).provider(), true);
    const chat = new Chat7({
      id: "chat-4",
      transport,
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    await chat.sendMessage({ text: "delete a.txt" });
    const tool = chat.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file");
    expect(tool).toMatchObject({ state: "approval-requested" });
    const fiberId = String(chat.messages.at(-1)?.id);
    await expect.poll(async () => (await runtime.get(fiberId))?.status).toBe("waiting");

    await chat.addToolApprovalResponse({
      id: (tool as { approval: { id: string } }).approval.id,
      approved: true,
    });
    await expect.poll(async () => (await runtime.get(fiberId))?.status).toBe("completed");
    await expect
      .poll(() => chat.status === "ready" && chat.messages.at(-1)?.parts.at(-1)?.type === "text")
      .toBe(true);
    expect(chat.messages).toHaveLength(2);
    expect(chat.messages.at(-1)?.parts.filter((p) => p.type === "tool-delete_file")).toMatchObject([
      { state: "output-available" },
    ]);
    expect(runs).toHaveLength(1);
  });

  it.each([
    { resetStep: false, shown: "input-available" },
    { resetStep: true, shown: "approval-responded" },
  ])(
    "resumes in place a reply reloaded while its approved tool runs, with no part twice and no question asked again (resetStep: $resetStep)",
    async ({ resetStep, shown }) => {
      // ai 7 resumes such a message from its saved parts (a tool part in "approval-responded"),
      // so a transport that replays the reply from its start must say so (resumeStreamIsReplay).
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
        resetStep,
      });
      const first = new Chat7({
        id: "chat-8",
        transport,
        sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
      });
      await first.sendMessage({ text: "delete a.txt" });
      const tool = first.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file") as {
        approval: { id: string };
      };
      void first.addToolApprovalResponse({ id: tool.approval.id, approved: true });
      await expect.poll(() => held.runs()).toBe(1);
      const saved = structuredClone(first.messages);
      expect(saved.at(-1)?.parts.find((p) => p.type === "tool-delete_file")).toMatchObject({
        state: "approval-responded",
      });

      const states: string[] = [];
      const second = new Chat7({
        id: "chat-8",
        transport,
        messages: saved,
        changed: (message) => {
          const part = message.parts.find((p) => p.type === "tool-delete_file") as
            | { state: string }
            | undefined;
          if (part && part.state !== states.at(-1)) states.push(part.state);
        },
      });
      const resuming = second.resumeStream();
      // The replay leaves the call answered (ai 7's tool-approval-response) or, without resetStep,
      // running: never as a question to answer again.
      await expect.poll(() => states.at(-1)).toBe(shown);
      const replayed = () => second.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file");
      if (resetStep) expect(replayed()).toMatchObject({ approval: { id: tool.approval.id, approved: true } });
      held.release();
      await resuming;
      await expect
        .poll(() => first.status === "ready" && first.messages.at(-1)?.parts.at(-1)?.type === "text")
        .toBe(true);

      expect(second.error).toBeUndefined();
      expect(summary(second.messages.at(-1))).toEqual([
        "step-start",
        "reasoning:They want a.txt removed.",
        "text:Deleting it. ",
        "tool-delete_file",
        "step-start",
        "text:Done: a.txt is gone.",
      ]);
      expect(held.runs()).toBe(1);
    },
  );

  it("marks the parts of a model call regenerated after a cut as discarded; the reply shown is whole", async () => {
    const script = new ScriptedModel({
      replies: [{ text: "A reply that the network cuts in two." }],
      cut: (request, body) => (request === 0 ? Math.floor(body.length / 2) : undefined),
    });
    const { transport } = setup(script.provider({ continuation: "none" }));
    const chat = new Chat7({ id: "chat-7", transport });
    await chat.sendMessage({ text: "hello" });
    const parts = chat.messages.at(-1)?.parts ?? [];
    expect(parts.filter(isDiscardedPart).length).toBeGreaterThan(0);
    expect(
      parts.filter((p) => !isDiscardedPart(p) && p.type === "text").map((p) => (p as { text: string }).text),
    ).toEqual(["A reply that the network cuts in two."]);
  });

  it("with resetStep, takes a regenerated model call's parts back with reset-step: the message equals an uncut run's", async () => {
    const reference = setup(new ScriptedModel({ replies }).provider({ continuation: "none" }), false, true);
    const whole = new Chat7({ id: "chat-9", transport: reference.transport });
    await whole.sendMessage({ text: "delete a.txt" });

    // The first attempt streams reasoning, half a sentence and a tool call, waits until the chat
    // shows them, then its connection drops; the retry regenerates the reply from scratch.
    let shown: () => void = () => {};
    const onScreen = new Promise<void>((resolve) => {
      shown = resolve;
    });
    const inner = new ScriptedModel({ replies }).provider({ continuation: "none" });
    let calls = 0;
    const cutOnce: ModelProvider = {
      ...inner,
      async *stream(request) {
        if (calls++ > 0) return yield* inner.stream(request);
        yield { type: "reasoning", delta: "Hmm, which file?" };
        yield { type: "text", delta: "Deleting b" };
        yield { type: "tool_call", id: "call_9", name: "delete_file", arguments: '{"path":"b.txt"}' };
        await onScreen;
        throw new TypeError("terminated");
      },
    };
    const { transport, runs } = setup(cutOnce, false, true);
    const chat = new Chat7({ id: "chat-9", transport });
    const state = (chat as unknown as { state: ArrayState }).state;
    const replace = state.replaceMessage;
    let sawCutText = false;
    state.replaceMessage = (index, message) => {
      const texts = message.parts.flatMap((p) => (p.type === "text" ? [p.text] : []));
      if (texts.includes("Deleting b") && message.parts.some((p) => p.type === "tool-delete_file")) {
        sawCutText = true;
        shown();
      }
      replace(index, message);
    };
    await chat.sendMessage({ text: "delete a.txt" });

    expect(chat.error).toBeUndefined();
    expect(sawCutText).toBe(true);
    const reply = chat.messages.at(-1);
    expect(reply?.parts.some(isDiscardedPart)).toBe(false);
    expect(summary(reply)).toEqual([
      "step-start",
      "reasoning:They want a.txt removed.",
      "text:Deleting it. ",
      "tool-delete_file",
      "step-start",
      "text:Done: a.txt is gone.",
    ]);
    // Part ids count the taken-back parts too (ai 7 keeps a reasoning part's id): compare without.
    const withoutPartIds = (m: unknown) => JSON.parse(JSON.stringify(m).replace(/:p\d+"/g, ':p"'));
    expect(withoutPartIds(normalized(reply))).toEqual(withoutPartIds(normalized(whole.messages.at(-1))));
    // The taken-back call never ran: only a.txt was deleted.
    expect(runs.map((run) => run.path)).toEqual(["a.txt"]);
  });

  it("stop() cancels the fiber; there is nothing to resume afterwards", async () => {
    const endless: ModelProvider = {
      name: "endless",
      model: "endless",
      supportsContinuation: false,
      async *stream({ signal }) {
        yield { type: "text", delta: "Thinking for a long time" };
        await new Promise((_, reject) => signal?.addEventListener("abort", () => reject(signal.reason)));
      },
    };
    const { transport, runtime } = setup(endless);
    const chat = new Chat7({ id: "chat-6", transport });
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

  it("a page shown a call as answered, whose reply is then stopped elsewhere, closes the call and sends nothing again", async () => {
    const held = heldApprovalTool();
    const agent = defineAgent({
      name: "assistant",
      model: new ScriptedModel({ replies }).provider(),
      tools: [held.tool],
    });
    const runtime = agentRuntime(agent, new MemoryStore());
    const cursors = memoryCursorStore();
    const page = () =>
      new FiberlineChatTransport({
        agent: "assistant",
        client: runtime,
        cursors,
        resetStep: true,
        endGraceMs: 10,
      });
    const first = new Chat7({
      id: "chat-9",
      transport: page(),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    await first.sendMessage({ text: "delete a.txt" });
    const fiberId = String(first.messages.at(-1)?.id);
    const tool = first.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file") as {
      approval: { id: string };
    };
    void first.addToolApprovalResponse({ id: tool.approval.id, approved: true });
    await expect.poll(() => held.runs()).toBe(1);

    // A second tab opens the chat while the approved tool runs: it shows the call answered.
    const other = page();
    let sends = 0;
    const send = other.sendMessages.bind(other);
    other.sendMessages = (options) => {
      if (++sends > 20) return Promise.reject(new Error("sent over and over"));
      return send(options);
    };
    const second = new Chat7({
      id: "chat-9",
      transport: other,
      messages: structuredClone(first.messages).slice(0, 1),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    const resuming = second.resumeStream();
    const shown = () => second.messages.at(-1)?.parts.find((p) => p.type === "tool-delete_file");
    await expect.poll(() => (shown() as { state?: string } | undefined)?.state).toBe("approval-responded");
    // The first tab stops the reply.
    await first.stop();
    await resuming;
    await new Promise((resolve) => setTimeout(resolve, 200));
    held.release();

    expect((await runtime.get(fiberId))?.status).toBe("cancelled");
    expect(sends).toBe(0);
    expect(shown()).toMatchObject({ state: "output-error" });
  });
});
