/**
 * A small React page on `useChat` from `@ai-sdk/react` 4 (the AI SDK 7 hook, installed as the
 * npm alias `ai-sdk-react4`; it needs Node 22, so it runs here in real Chromium) with
 * `FiberlineChatTransport`: a reply with reasoning, a tool call and its output streams into the
 * rendered page, each part once; a page reloaded mid-reply and mounted again with `resume: true`
 * and the messages the app saved shows the whole reply once. And what unmounting does: the hook
 * 4 stops a chat it made when its component unmounts (that cancels the fiber), while a `Chat`
 * the app made and passed as `useChat({ chat })` runs on.
 */

import { Chat, useChat } from "ai-sdk-react4";
import type { ChatTransport, UIMessage } from "ai7";
import { createElement as h, useEffect } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, describe, expect, it } from "vitest";
import { defineAgent } from "../agent/agent";
import {
  agentRuntime,
  closeRuntimes,
  heldAfterTool,
  recordingTool,
  type ToolRun,
} from "../agent/agent-harness";
import { ScriptedModel, type ScriptedReply } from "../agent/scripted-model";
import type { ModelProvider } from "../agent/types";
import type { Runtime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { memoryCursorStore } from "./chat-cursors";
import { type ChatFiberClient, FiberlineChatTransport } from "./chat-transport";

const roots: Root[] = [];
afterEach(async () => {
  for (const root of roots.splice(0)) root.unmount();
  document.body.replaceChildren();
  await closeRuntimes();
});

const replies: ScriptedReply[] = [
  {
    reasoning: "They want a.txt removed.",
    text: "Deleting it. ",
    toolCalls: [{ id: "call_0", name: "delete_file", arguments: '{"path":"a.txt"}' }],
  },
  { text: "Done: a.txt is gone." },
];

function setup(model: ModelProvider) {
  const runs: ToolRun[] = [];
  const agent = defineAgent({ name: "assistant", model, tools: [recordingTool(runs)] });
  const runtime = agentRuntime(agent, new MemoryStore());
  const cursors = memoryCursorStore();
  /** A page's transport; aborting `gone` is that page going away (its reads of the fiber end). */
  const pageTransport = (gone?: AbortSignal) =>
    new FiberlineChatTransport({
      agent: "assistant",
      client: pageClient(runtime, gone),
      cursors,
      resetStep: true,
    });
  return { runtime, runs, transport: pageTransport(), pageTransport };
}

/** The runtime as a page's client whose reads end when `gone` aborts: a reload runs no more code. */
function pageClient(runtime: Runtime, gone: AbortSignal | undefined): ChatFiberClient {
  return {
    start: (name, input, options) => runtime.start(name, input, options),
    get: (id) => runtime.get(id),
    inspect: (id) => runtime.inspect(id),
    sendEvent: (id, name, payload) => runtime.sendEvent(id, name, payload),
    cancel: (id, reason) => runtime.cancel(id, reason),
    events: (id, options) =>
      runtime.events(id, {
        ...options,
        signal: gone && options.signal ? AbortSignal.any([gone, options.signal]) : (gone ?? options.signal),
      }),
  };
}

interface PageProps {
  transport?: FiberlineChatTransport;
  /** A chat the app made and keeps (`useChat({ chat })`) instead of `transport`. */
  chat?: Chat<UIMessage>;
  initial?: UIMessage[];
  ask?: string;
  /** Called with the messages on every render: what the app would save. */
  onMessages?: (messages: UIMessage[]) => void;
}

/** The page under test: `useChat` with the transport, each part rendered as an element. */
function ChatPage({ transport, chat, initial, ask, onMessages }: PageProps) {
  const { messages, sendMessage, status } = useChat(
    chat
      ? { chat }
      : {
          id: "react-chat",
          transport: asAi7(transport as FiberlineChatTransport),
          ...(initial ? { messages: initial } : {}),
          resume: initial !== undefined,
        },
  );
  onMessages?.(messages);
  useEffect(() => {
    if (ask) void sendMessage({ text: ask });
  }, [ask, sendMessage]);
  return h(
    "main",
    { "data-status": status },
    messages.map((message) =>
      h(
        "article",
        { key: message.id, "data-role": message.role },
        message.parts.map((part, i) => {
          const key = `${message.id}:${i}`;
          if (part.type === "text") return h("p", { key, "data-part": "text" }, part.text);
          if (part.type === "reasoning") return h("details", { key, "data-part": "reasoning" }, part.text);
          if (part.type === "tool-delete_file")
            return h(
              "output",
              { key, "data-part": "tool", "data-state": part.state },
              `${JSON.stringify(part.input)} -> ${JSON.stringify(part.output ?? null)}`,
            );
          return h("span", { key, "data-part": part.type });
        }),
      ),
    ),
  );
}

/** An app on ai 7 passes the transport as is; only this repository sees two UIMessage types. */
const asAi7 = (transport: FiberlineChatTransport) => transport as unknown as ChatTransport<UIMessage>;

function mount(props: PageProps): HTMLElement {
  const container = document.createElement("div");
  document.body.append(container);
  const root = createRoot(container);
  roots.push(root);
  root.render(h(ChatPage, props));
  return container;
}

/** What the page shows: one line per rendered part, in order. */
function rendered(container: HTMLElement): string[] {
  return [...container.querySelectorAll("article")].flatMap((article) => [
    `${article.dataset.role}:`,
    ...[...article.querySelectorAll<HTMLElement>("[data-part]")].map(
      (el) => `${el.dataset.part}${el.dataset.state ? `(${el.dataset.state})` : ""}:${el.textContent}`,
    ),
  ]);
}

const whole = [
  "user:",
  "text:delete a.txt",
  "assistant:",
  "step-start:",
  "reasoning:They want a.txt removed.",
  "text:Deleting it. ",
  'tool(output-available):{"path":"a.txt"} -> "deleted a.txt"',
  "step-start:",
  "text:Done: a.txt is gone.",
];

describe("useChat from @ai-sdk/react 4 with FiberlineChatTransport, rendered by React in Chromium", () => {
  it("renders the reply's parts as they stream: reasoning, text, the tool call with its output, then the answer", async () => {
    const { transport, runs } = setup(new ScriptedModel({ replies }).provider());
    const page = mount({ transport, ask: "delete a.txt" });
    await expect.poll(() => rendered(page)).toEqual(whole);
    await expect.poll(() => page.querySelector("main")?.dataset.status).toBe("ready");
    expect(rendered(page)).toEqual(whole);
    expect(runs.map((run) => run.path)).toEqual(["a.txt"]);
  });

  it("a page reloaded mid-reply and mounted with resume: true shows the whole reply once, the tool run once", async () => {
    const { model, release } = heldAfterTool(new ScriptedModel({ replies }).provider());
    const { pageTransport, runs } = setup(model);
    let saved: UIMessage[] = [];
    const reload = new AbortController();
    const first = mount({
      transport: pageTransport(reload.signal),
      ask: "delete a.txt",
      onMessages: (m) => (saved = m),
    });
    await expect
      .poll(() => rendered(first).some((line) => line.startsWith("tool(output-available)")))
      .toBe(true);
    // The reload: what the app saved is what the page had; the old page runs no more code (no
    // React cleanup either), so its reads just stop.
    const snapshot = structuredClone(saved);
    reload.abort();
    first.remove();

    const second = mount({ transport: pageTransport(), initial: snapshot });
    // What the app saved shows at once, then the resumed reply replaces it in place.
    await expect
      .poll(() => rendered(second).filter((line) => line.startsWith("text:Deleting it.")))
      .toHaveLength(1);
    await expect.poll(() => second.querySelector("main")?.dataset.status).toBe("streaming");
    expect(rendered(second)).toEqual(whole.slice(0, 7));
    release();
    await expect.poll(() => rendered(second)).toEqual(whole);
    await expect.poll(() => second.querySelector("main")?.dataset.status).toBe("ready");
    expect(rendered(second)).toEqual(whole);
    expect(runs.map((run) => run.path)).toEqual(["a.txt"]);
  });

  it("unmounting a useChat({ id, transport }) page mid-reply stops its chat: the hook 4 calls stop(), which cancels the fiber", async () => {
    const { model } = heldAfterTool(new ScriptedModel({ replies }).provider());
    const { transport, runtime } = setup(model);
    let saved: UIMessage[] = [];
    const page = mount({ transport, ask: "delete a.txt", onMessages: (m) => (saved = m) });
    await expect
      .poll(() => rendered(page).some((line) => line.startsWith("tool(output-available)")))
      .toBe(true);
    const fiberId = String(saved.at(-1)?.id);
    (roots.shift() as Root).unmount();
    await expect.poll(async () => (await runtime.get(fiberId))?.status).toBe("cancelled");
  });

  it("a Chat the app keeps (useChat({ chat })) runs on while no component shows it, and shows the whole reply when mounted again", async () => {
    const { model, release } = heldAfterTool(new ScriptedModel({ replies }).provider());
    const { transport, runtime, runs } = setup(model);
    const chat = new Chat<UIMessage>({ id: "kept-chat", transport: asAi7(transport) });
    const page = mount({ chat, ask: "delete a.txt" });
    await expect
      .poll(() => rendered(page).some((line) => line.startsWith("tool(output-available)")))
      .toBe(true);
    const fiberId = String(chat.messages.at(-1)?.id);
    (roots.shift() as Root).unmount();
    release();
    await expect.poll(async () => (await runtime.get(fiberId))?.status).toBe("completed");

    const again = mount({ chat });
    await expect.poll(() => rendered(again)).toEqual(whole);
    expect(runs.map((run) => run.path)).toEqual(["a.txt"]);
  });
});
