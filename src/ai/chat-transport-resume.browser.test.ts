/**
 * `FiberlineChatTransport.resume`: a page that kept the assistant message (in its own storage)
 * and builds it with the AI SDK's `readUIMessageStream` gets, after a reload, a stream of only
 * what the message lacks. In real Chromium with both majors' own `readUIMessageStream`, cursors
 * in real IndexedDB read back by a new transport: a message kept at a step's start continues
 * there; one kept halfway through a text part continues from its step's start after `reset-step`
 * (ai 7) or is replayed whole (ai 6); a whole message is `complete`; each way the message ends
 * up as an uninterrupted run's, each part once.
 */

import { readUIMessageStream as read6, type UIMessage } from "ai";
import { readUIMessageStream as read7 } from "ai7";
import { afterEach, describe, expect, it } from "vitest";
import { defineAgent } from "../agent/agent";
import { agentRuntime, closeRuntimes, recordingTool, type ToolRun } from "../agent/agent-harness";
import type { ModelEvent, ModelProvider } from "../agent/types";
import type { Runtime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { idbCursorStore } from "./chat-cursors";
import { type ChatFiberClient, type ChatResume, FiberlineChatTransport } from "./chat-transport";

afterEach(closeRuntimes);

/** Holds the model at one point until `release`. */
interface Hold {
  at: "answer-start" | "mid-text";
  gate: Promise<void>;
}

/** A model that answers with a tool call, then a sentence in pieces. */
function storyModel(hold?: Hold): ModelProvider {
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
      if (hold?.at === "answer-start") await hold.gate;
      for (const delta of ["Done: ", "a.txt ", "is "]) yield { type: "text", delta };
      if (hold?.at === "mid-text") await hold.gate;
      for (const delta of ["gone ", "for ", "good."]) yield { type: "text", delta };
      yield { type: "finish", reason: "stop" };
    },
  };
}

const majors = [
  { major: "ai 6", read: read6 as typeof read6, resetStep: false },
  { major: "ai 7", read: read7 as unknown as typeof read6, resetStep: true },
];

/** The runtime as a page's client whose reads end when `gone` aborts: a reload runs no more code. */
function pageClient(runtime: Runtime, gone?: AbortSignal): ChatFiberClient {
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

/** Everything the page shows of a message: each part's kind, text or tool state, in order. */
const shown = (message: UIMessage | undefined): string[] =>
  (message?.parts ?? []).map((p) =>
    p.type === "text" || p.type === "reasoning"
      ? `${p.type}:${p.text}`
      : "state" in p
        ? `${p.type}:${String(p.state)}`
        : p.type,
  );

const whole = [
  "step-start",
  "reasoning:They want a.txt removed.",
  "text:Deleting it. ",
  "tool-delete_file:output-available",
  "step-start",
  "text:Done: a.txt is gone for good.",
];

for (const { major, read, resetStep } of majors) {
  describe(`FiberlineChatTransport.resume with ${major}'s readUIMessageStream, cursors in IndexedDB`, () => {
    let database = "";
    let runs: ToolRun[] = [];
    let chatId = "";
    const gates: (() => void)[] = [];
    afterEach(() => {
      for (const release of gates.splice(0)) release();
    });

    /** A page: sends one message and builds the reply as it streams, until `gone` aborts. */
    async function firstPage(runtime: Runtime, gone: AbortSignal) {
      const transport = new FiberlineChatTransport({
        agent: "assistant",
        client: pageClient(runtime, gone),
        cursors: idbCursorStore(database),
        resetStep,
      });
      const user: UIMessage = { id: "u1", role: "user", parts: [{ type: "text", text: "delete a.txt" }] };
      const stream = await transport.sendMessages({
        trigger: "submit-message",
        chatId,
        messageId: undefined,
        messages: [user],
        abortSignal: undefined,
      });
      const page = { message: undefined as UIMessage | undefined };
      const reading = (async () => {
        try {
          for await (const message of read({ stream })) page.message = message;
        } catch {
          // The page went away.
        }
      })();
      return { page, reading };
    }

    /** The next page: a new transport, its cursor read back from IndexedDB. */
    function nextPage(runtime: Runtime): FiberlineChatTransport {
      return new FiberlineChatTransport({
        agent: "assistant",
        client: pageClient(runtime),
        cursors: idbCursorStore(database),
        resetStep,
      });
    }

    /** What the page shows once it built the resumed stream into what it kept. */
    async function finish(resumed: ChatResume, kept: UIMessage): Promise<UIMessage | undefined> {
      if (resumed.status === "complete" || resumed.status === "none") return kept;
      let last: UIMessage | undefined;
      const from = resumed.status === "continue" ? { message: structuredClone(kept) } : {};
      for await (const message of read({ ...from, stream: resumed.stream })) last = message;
      return last;
    }

    function setup(hold?: Hold): Runtime {
      database = `fiberline-ai-resume-${crypto.randomUUID()}`;
      // Each test its own chat, so its fiber id is new too.
      chatId = `chat-${crypto.randomUUID()}`;
      runs = [];
      const agent = defineAgent({ name: "assistant", model: storyModel(hold), tools: [recordingTool(runs)] });
      return agentRuntime(agent, new MemoryStore());
    }

    function held(at: Hold["at"]): { hold: Hold; release: () => void } {
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      gates.push(release);
      return { hold: { at, gate }, release };
    }

    it("continues a message kept at the answer's step start with only what it lacks", async () => {
      const { hold, release } = held("answer-start");
      const runtime = setup(hold);
      const reload = new AbortController();
      const { page, reading } = await firstPage(runtime, reload.signal);
      // The new step's step-start is not in a message the AI SDK hands out until the step writes.
      await expect.poll(() => shown(page.message)).toEqual(whole.slice(0, 4));
      const kept = structuredClone(page.message as UIMessage);
      reload.abort();
      await reading;

      const resumed = await nextPage(runtime).resume({ chatId, message: kept });
      expect(resumed.status).toBe("continue");
      release();
      expect(shown(await finish(resumed, kept))).toEqual(whole);
      expect(runs.map((run) => run.path)).toEqual(["a.txt"]);
    });

    it(`${resetStep ? "continues from the step's start after reset-step" : "replays the reply whole"} for a message kept halfway through a text part`, async () => {
      const { hold, release } = held("mid-text");
      const runtime = setup(hold);
      const reload = new AbortController();
      const { page, reading } = await firstPage(runtime, reload.signal);
      await expect.poll(() => shown(page.message).at(-1)).toBe("text:Done: a.txt is ");
      const kept = structuredClone(page.message as UIMessage);
      reload.abort();
      await reading;

      const resumed = await nextPage(runtime).resume({ chatId, message: kept });
      expect(resumed.status).toBe(resetStep ? "continue" : "replay");
      release();
      expect(shown(await finish(resumed, kept))).toEqual(whole);
    });

    it("says complete for a whole message of an ended reply, and continues one kept before the end", async () => {
      const { hold, release } = held("mid-text");
      const runtime = setup(hold);
      const reload = new AbortController();
      const { page, reading } = await firstPage(runtime, reload.signal);
      await expect.poll(() => shown(page.message).at(-1)).toBe("text:Done: a.txt is ");
      const early = structuredClone(page.message as UIMessage);
      release();
      await expect.poll(() => shown(page.message)).toEqual(whole);
      const late = structuredClone(page.message as UIMessage);
      reload.abort();
      await reading;
      const fiberId = late.id;
      await expect.poll(async () => (await runtime.get(fiberId))?.status).toBe("completed");

      // The app saved the message before its end, the page delivered the end, then it reloaded.
      const behind = await nextPage(runtime).resume({ chatId, message: early });
      expect(behind.status).toBe(resetStep ? "continue" : "replay");
      expect(shown(await finish(behind, early))).toEqual(whole);

      expect((await nextPage(runtime).resume({ chatId, message: late })).status).toBe("complete");
      expect((await nextPage(runtime).resume({ chatId: "another-chat", message: late })).status).toBe("none");
    });
  });
}
