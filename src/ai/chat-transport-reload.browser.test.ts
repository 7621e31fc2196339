/**
 * A reload in the middle of a reply, in real Chromium with the real chats of both AI SDK majors
 * (`ai` 6's and `ai` 7's `AbstractChat`, what `useChat` 3 and 4 wrap) and the transport's cursors
 * in real IndexedDB: the page is cut off halfway through a text part, a new page (a new transport,
 * a new chat given the messages the app had saved) resumes, and the reply ends up as an
 * uninterrupted run's: each part once, nothing missing, the tool run once.
 */

import {
  AbstractChat as AbstractChat6,
  type ChatState as ChatState6,
  type UIMessage as UIMessage6,
} from "ai";
import {
  AbstractChat as AbstractChat7,
  type ChatState as ChatState7,
  type ChatTransport as ChatTransport7,
  type UIMessage as UIMessage7,
} from "ai7";
import { afterEach, describe, expect, it } from "vitest";
import { defineAgent } from "../agent/agent";
import { agentRuntime, closeRuntimes, recordingTool, type ToolRun } from "../agent/agent-harness";
import type { ModelEvent, ModelProvider } from "../agent/types";
import type { Runtime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { idbCursorStore } from "./chat-cursors";
import { type ChatFiberClient, FiberlineChatTransport } from "./chat-transport";

afterEach(closeRuntimes);

type AnyMessage = UIMessage6 | UIMessage7;

/** The chat state `useChat` keeps in React, as plain arrays. */
class ArrayState<M extends AnyMessage> {
  status: ChatState6<UIMessage6>["status"] = "ready";
  error: Error | undefined = undefined;
  messages: M[];
  constructor(messages: M[] = []) {
    this.messages = messages;
  }
  pushMessage = (message: M): void => {
    this.messages = [...this.messages, message];
  };
  popMessage = (): void => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index: number, message: M): void => {
    this.messages = this.messages.map((m, i) => (i === index ? this.snapshot(message) : m));
  };
  snapshot = <T>(thing: T): T => structuredClone(thing);
}

/** What the test needs of either major's chat. */
interface TestChat {
  readonly messages: AnyMessage[];
  readonly error: Error | undefined;
  sendMessage(message: { text: string }): Promise<void>;
  resumeStream(): Promise<void>;
}

const chats = {
  "ai 6": (id: string, transport: FiberlineChatTransport, messages?: AnyMessage[]): TestChat =>
    new (class extends AbstractChat6<UIMessage6> {})({
      id,
      transport,
      state: new ArrayState(messages as UIMessage6[] | undefined) as ChatState6<UIMessage6>,
    }),
  "ai 7": (id: string, transport: FiberlineChatTransport, messages?: AnyMessage[]): TestChat =>
    new (class extends AbstractChat7<UIMessage7> {})({
      id,
      // The repository builds against ai 6, so TypeScript sees ai 7's UIMessage as another type.
      transport: transport as unknown as ChatTransport7<UIMessage7>,
      state: new ArrayState(messages as UIMessage7[] | undefined) as ChatState7<UIMessage7>,
    }),
};

/** A model that answers with a tool call, then a sentence in pieces; `hold` stops it halfway. */
function storyModel(hold?: Promise<void>): ModelProvider {
  return {
    name: "story",
    model: "story",
    supportsContinuation: false,
    async *stream(request): AsyncGenerator<ModelEvent> {
      if (!request.messages.some((m) => m.role === "tool")) {
        yield { type: "reasoning", delta: "They want a.txt removed." };
        yield { type: "text", delta: "Deleting it. " };
        yield { type: "tool_call", id: "call_0", name: "delete_file", arguments: '{"path":"a.txt"}' };
        yield { type: "finish", reason: "tool_calls" };
        return;
      }
      for (const delta of ["Done: ", "a.txt ", "is "]) yield { type: "text", delta };
      await hold;
      for (const delta of ["gone ", "for ", "good."]) yield { type: "text", delta };
      yield { type: "finish", reason: "stop" };
    },
  };
}

function setup(model: ModelProvider): { runtime: Runtime; runs: ToolRun[] } {
  const runs: ToolRun[] = [];
  const agent = defineAgent({ name: "assistant", model, tools: [recordingTool(runs)] });
  return { runtime: agentRuntime(agent, new MemoryStore()), runs };
}

/**
 * A page's transport: a new instance each "page load", its cursors in the same IndexedDB. Aborting
 * `gone` is the page going away: its reads of the fiber end there (a page that reloads runs no
 * more code), while the fiber runs on in the worker.
 */
function pageTransport(runtime: Runtime, database: string, gone?: AbortSignal): FiberlineChatTransport {
  const client: ChatFiberClient = {
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
  return new FiberlineChatTransport({ agent: "assistant", client, cursors: idbCursorStore(database) });
}

/** The message with its fiber id replaced, to compare two runs. */
function normalized(message: AnyMessage | undefined): unknown {
  if (!message) return message;
  return JSON.parse(JSON.stringify(message).replaceAll(message.id, "<fiber>"));
}

const texts = (message: AnyMessage | undefined): string[] =>
  (message?.parts ?? []).flatMap((p) => (p.type === "text" || p.type === "reasoning" ? [p.text] : []));

for (const [major, makeChat] of Object.entries(chats)) {
  describe(`a reload mid-reply with ${major}'s chat, cursors in IndexedDB`, () => {
    it("resumes halfway through a text part: each part once, nothing missing, the tool run once", async () => {
      const database = `fiberline-ai-reload-${major.replace(" ", "")}-${crypto.randomUUID()}`;
      const reference = setup(storyModel());
      const whole = makeChat("chat-r", pageTransport(reference.runtime, database));
      await whole.sendMessage({ text: "delete a.txt" });
      expect(texts(whole.messages.at(-1))).toEqual([
        "They want a.txt removed.",
        "Deleting it. ",
        "Done: a.txt is gone for good.",
      ]);

      let release: () => void = () => {};
      const hold = new Promise<void>((resolve) => {
        release = resolve;
      });
      const live = setup(storyModel(hold));
      const chatId = "chat-reload";
      const reload = new AbortController();
      const first = makeChat(chatId, pageTransport(live.runtime, database, reload.signal));
      const sending = first.sendMessage({ text: "delete a.txt" });
      // The page shows half of the last text part when it goes away; the app had saved that.
      await expect.poll(() => texts(first.messages.at(-1)).at(-1)).toBe("Done: a.txt is ");
      const saved = structuredClone(first.messages);
      reload.abort();
      await sending;

      // The next page: a new transport (its cursor read back from IndexedDB) and a new chat.
      const second = makeChat(chatId, pageTransport(live.runtime, database), saved);
      const resuming = second.resumeStream();
      release();
      await resuming;

      expect(second.error).toBeUndefined();
      expect(second.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
      expect(second.messages.at(-1)?.id).toBe(saved.at(-1)?.id);
      expect(texts(second.messages.at(-1))).toEqual([
        "They want a.txt removed.",
        "Deleting it. ",
        "Done: a.txt is gone for good.",
      ]);
      expect(normalized(second.messages.at(-1))).toEqual(normalized(whole.messages.at(-1)));
      expect(live.runs.map((run) => run.path)).toEqual(["a.txt"]);

      // Delivered to its end: a third page finds nothing to resume and keeps what it has.
      const third = makeChat(chatId, pageTransport(live.runtime, database), structuredClone(second.messages));
      await third.resumeStream();
      expect(normalized(third.messages.at(-1))).toEqual(normalized(whole.messages.at(-1)));
    });
  });
}
