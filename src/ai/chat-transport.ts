/**
 * `FiberlineChatTransport`: the AI SDK's `ChatTransport` for `useChat`, backed by an agent fiber
 * in the Service Worker. A message starts (or joins) the fiber; its durable stream becomes the UI
 * message stream; a reload or a browser crash resumes the reply in place; approvals from the chat
 * become the fiber's approval events; `stop()` cancels the fiber. Used by pages with `useChat`.
 */

import type { ChatTransport, UIMessage, UIMessageChunk } from "ai";
import type { AgentInput } from "../agent/agent";
import type { ChatMessage } from "../agent/types";
import { FiberlineError } from "../core/errors";
import { type FiberEvent, type FiberRecord, isTerminal } from "../core/records";
import { type ChatCursor, type ChatCursorStore, idbCursorStore } from "./chat-cursors";
import { foldResets, UiChunkMapper } from "./ui-chunks";

/**
 * What the transport needs of a Fiberline client: `FiberlineClient` from `connect()` in a page,
 * or a `Runtime` where the fibers run in the same context (tests, a worker page).
 */
export interface ChatFiberClient {
  start(name: string, input: AgentInput, options: { id: string }): Promise<{ id: string; created: boolean }>;
  events(id: string, options: { after?: number; signal?: AbortSignal }): AsyncIterable<FiberEvent>;
  get(id: string): Promise<FiberRecord | undefined>;
  inspect(id: string): Promise<{ inbox: readonly { name: string }[] }>;
  sendEvent(id: string, name: string, payload?: unknown): Promise<void>;
  cancel(id: string, reason?: string): Promise<unknown>;
}

/** What `input` receives to build the agent fiber's input. */
export interface ChatInputRequest<UI_MESSAGE extends UIMessage> {
  chatId: string;
  /** The chat's messages, ending with the user's message this reply answers. */
  messages: UI_MESSAGE[];
  trigger: "submit-message" | "regenerate-message";
  /** `body` of the `sendMessage` / `useChat` request options. */
  body: object | undefined;
  metadata: unknown;
}

/** Options of {@link FiberlineChatTransport}. */
export interface FiberlineChatTransportOptions<UI_MESSAGE extends UIMessage = UIMessage> {
  /** The agent fiber's name, as `defineAgent({ name })` registered it in the worker's runtime. */
  agent: string;
  /** The client, or a function that connects one (called once, on first use). */
  client: ChatFiberClient | (() => ChatFiberClient | Promise<ChatFiberClient>);
  /**
   * Builds the agent's input from the chat (default: `{ messages: toAgentMessages(messages) }`,
   * the whole conversation as text). Return `historyRef` instead to keep inputs small.
   */
  input?: (request: ChatInputRequest<UI_MESSAGE>) => AgentInput | Promise<AgentInput>;
  /** Where each chat's fiber and delivered cursor are kept (default IndexedDB, `idbCursorStore()`). */
  cursors?: ChatCursorStore;
  /**
   * `true` with ai 7 (`useChat` from `@ai-sdk/react` 4): a model call regenerated from scratch
   * after a cut is taken back with ai 7's `reset-step` chunk, so the message never shows its
   * discarded text. Leave it off with ai 6, which has no such chunk and would ignore it: there
   * the discarded parts are closed with a mark instead (`isDiscardedPart`).
   */
  resetStep?: boolean;
}

/**
 * A `ChatTransport` whose replies are agent fibers: `useChat({ transport: new FiberlineChatTransport({ agent, client }) })`.
 *
 * Failure semantics: the fiber id is derived from the chat id and the user message's id, so a
 * retried or doubled `sendMessages` joins the running fiber instead of starting a second one.
 * Every stream it returns starts with `start` carrying the fiber id as the assistant message's
 * id and replays the reply from its first chunk (the installed `ai` rebuilds the message from a
 * resumed stream), with text that a `message.reset` took back left out. The page going away
 * (reload, closed tab, crash) leaves the fiber running; `reconnectToStream` picks the reply up
 * again and returns `null` once the page delivered its end. `stop()` aborts the request's signal,
 * which is the only thing that aborts it in `ai` 6: the transport cancels the fiber. A tool that
 * needs approval ends the stream at its `tool-approval-request`; the chat's next request (after
 * `addToolApprovalResponse`, e.g. with `sendAutomaticallyWhen:
 * lastAssistantMessageIsCompleteWithApprovalResponses`) sends the decision as the fiber's
 * durable approval event and streams the rest.
 *
 * @example
 * const fl = await connect({ scriptUrl: "/sw.js", registerOptions: { type: "module" } });
 * const transport = new FiberlineChatTransport({ agent: "assistant", client: fl });
 * const { messages, sendMessage, stop } = useChat({ id: chatId, transport, resume: true });
 */
export class FiberlineChatTransport<UI_MESSAGE extends UIMessage = UIMessage>
  implements ChatTransport<UI_MESSAGE>
{
  /** Every stream this transport returns replays the reply from its start. */
  readonly resumeStreamIsReplay = true;
  readonly #options: FiberlineChatTransportOptions<UI_MESSAGE>;
  readonly #cursors: ChatCursorStore;
  #client: Promise<ChatFiberClient> | undefined;

  constructor(options: FiberlineChatTransportOptions<UI_MESSAGE>) {
    this.#options = options;
    this.#cursors = options.cursors ?? idbCursorStore();
  }

  /** The fiber answering the chat's latest message, as far as this page knows. */
  cursor(chatId: string): Promise<ChatCursor | undefined> {
    return this.#cursors.get(chatId);
  }

  async sendMessages(
    options: Parameters<ChatTransport<UI_MESSAGE>["sendMessages"]>[0],
  ): Promise<ReadableStream<UIMessageChunk>> {
    const { chatId, messages, trigger, abortSignal } = options;
    const client = await this.#connect();
    const last = messages.at(-1);
    if (trigger === "submit-message" && last?.role === "assistant")
      return await this.#continueAfterApprovals(client, chatId, last, abortSignal);
    const user = messages.findLast((message) => message.role === "user");
    if (user === undefined)
      throw new FiberlineError(
        "invalid_argument",
        "FiberlineChatTransport: the chat has no user message to answer. Send one with sendMessage({ text }).",
      );
    const previous = await this.#cursors.get(chatId);
    const parts = [chatId, user.id];
    if (trigger === "regenerate-message") parts.push("again", options.messageId ?? previous?.fiberId ?? "");
    const fiberId = await fiberIdFor(parts);
    const input = await (this.#options.input ?? defaultInput)({
      chatId,
      messages,
      trigger,
      body: options.body,
      metadata: options.metadata,
    });
    const joined = previous?.fiberId === fiberId;
    if (!joined) await this.#cursors.set(chatId, { fiberId, delivered: 0, done: false });
    await client.start(this.#options.agent, input, { id: fiberId });
    return this.#stream(client, chatId, fiberId, { signal: abortSignal });
  }

  async reconnectToStream(
    options: Parameters<ChatTransport<UI_MESSAGE>["reconnectToStream"]>[0],
  ): Promise<ReadableStream<UIMessageChunk> | null> {
    const cursor = await this.#cursors.get(options.chatId);
    if (cursor === undefined || cursor.done) return null;
    const client = await this.#connect();
    const record = await client.get(cursor.fiberId);
    if (record === undefined || (isTerminal(record.status) && cursor.delivered >= record.streamHead)) {
      await this.#cursors.set(options.chatId, { ...cursor, done: true });
      return null;
    }
    // Aborted while looking: `useChat` started another resume (React StrictMode mounts twice).
    if (options.abortSignal?.aborted) return null;
    return this.#stream(client, options.chatId, cursor.fiberId, { signal: options.abortSignal });
  }

  /** The chat answered approvals: send each as the fiber's event, then stream what follows the last. */
  async #continueAfterApprovals(
    client: ChatFiberClient,
    chatId: string,
    message: UI_MESSAGE,
    signal: AbortSignal | undefined,
  ): Promise<ReadableStream<UIMessageChunk>> {
    const fiberId = message.id;
    const answered = message.parts.flatMap((part) => {
      const approval = (
        part as { state?: string; approval?: { id: string; approved: boolean; reason?: string } }
      ).approval;
      return (part as { state?: string }).state === "approval-responded" && approval ? [approval] : [];
    });
    const last = answered.at(-1);
    if (last === undefined)
      throw new FiberlineError(
        "invalid_argument",
        "FiberlineChatTransport: the last message is the assistant's and answers no approval; send a user message instead.",
      );
    for (const approval of answered) {
      const decision = {
        approved: approval.approved,
        ...(approval.reason ? { reason: approval.reason } : {}),
      };
      await client.sendEvent(fiberId, approval.id, decision).catch((error: unknown) => {
        // The fiber ended meanwhile (stopped elsewhere): the stream shows how.
        if (!(error instanceof FiberlineError && error.code === "fiber_ended")) throw error;
      });
    }
    const cursor = await this.#cursors.get(chatId);
    await this.#cursors.set(chatId, { fiberId, delivered: cursor?.delivered ?? 0, done: false });
    return this.#stream(client, chatId, fiberId, { signal, after: last.id });
  }

  /**
   * The fiber's stream as UI chunks: the stored part folded (no discarded text), then live.
   * With `after`, only what follows that approval's request (the chat already shows the rest).
   */
  #stream(
    client: ChatFiberClient,
    chatId: string,
    fiberId: string,
    options: { signal: AbortSignal | undefined; after?: string },
  ): ReadableStream<UIMessageChunk> {
    const reading = new AbortController();
    const cursors = this.#cursors;
    const resetStep = this.#options.resetStep ?? false;
    const onStop = (): void => {
      reading.abort();
      void cursors
        .get(chatId)
        .then((cursor) => cursors.set(chatId, { fiberId, delivered: cursor?.delivered ?? 0, done: true }));
      client.cancel(fiberId, "Stopped from the chat.").catch(() => {
        // Already ended, or the worker is unreachable: the fiber's own end stands.
      });
    };
    if (options.signal?.aborted) onStop();
    else options.signal?.addEventListener("abort", onStop, { once: true });

    async function* chunks(): AsyncGenerator<UIMessageChunk> {
      yield { type: "start", messageId: fiberId };
      const mapper = new UiChunkMapper({ resetStep });
      // Kept durably where it decides what a reload resumes: at a pause and at the end.
      const deliver = async (event: FiberEvent, cursor: ChatCursor, keep: boolean): Promise<void> => {
        cursor.delivered = event.seq;
        if (event.type === "fiber.end") cursor.done = true;
        if (keep || cursor.done) await cursors.set(chatId, cursor);
      };
      /** The approval is answered when its event is in the fiber's inbox. */
      const answered = async (event: FiberEvent): Promise<boolean> => {
        const name = (event.data as { event: string }).event;
        const { inbox } = await client.inspect(fiberId);
        return inbox.some((ev) => ev.name === name);
      };
      const cursor: ChatCursor = (await cursors.get(chatId)) ?? { fiberId, delivered: 0, done: false };
      let skipping = options.after;
      const record = await client.get(fiberId);
      const head = record?.streamHead ?? 0;
      let stored: FiberEvent[] = [];
      const emit = async function* (
        events: FiberEvent[],
        live: boolean,
      ): AsyncGenerator<UIMessageChunk, boolean> {
        for (const [i, event] of events.entries()) {
          if (skipping !== undefined) {
            if (event.type === "tool.approval" && (event.data as { event: string }).event === skipping)
              skipping = undefined;
            continue;
          }
          const chunks = mapper.map(event);
          // A request nothing answered yet ends this stream: the chat shows the approval buttons.
          const lastKnown = live || i === events.length - 1;
          const pause = event.type === "tool.approval" && lastKnown && !(await answered(event));
          await deliver(event, cursor, pause);
          yield* chunks;
          if (pause) {
            yield* mapper.pause();
            return true;
          }
        }
        return false;
      };
      for await (const event of client.events(fiberId, { after: 0, signal: reading.signal })) {
        if (event.seq < head) {
          stored.push(event);
          continue;
        }
        if (stored.length > 0 || event.seq === head) {
          stored.push(event);
          const paused = yield* emit(foldResets(stored), false);
          stored = [];
          if (paused) return;
          continue;
        }
        if (yield* emit([event], true)) return;
      }
    }
    return readableFrom(chunks(), reading);
  }

  #connect(): Promise<ChatFiberClient> {
    const { client } = this.#options;
    this.#client ??= Promise.resolve(typeof client === "function" ? client() : client);
    return this.#client;
  }
}

/**
 * The chat's messages as the agent's: the text of each user and assistant message, in order, and
 * a user's image files as image parts (tool parts and reasoning stay in the chat; the agent's own
 * journal has the tool calls).
 */
export function toAgentMessages(messages: readonly UIMessage[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const message of messages) {
    const text = message.parts.flatMap((part) => (part.type === "text" ? [part.text] : [])).join("");
    if (message.role === "user") {
      const images = message.parts.flatMap((part) =>
        part.type === "file" && part.mediaType.startsWith("image/")
          ? [{ type: "image_url" as const, image_url: { url: part.url } }]
          : [],
      );
      out.push({
        role: "user",
        content: images.length === 0 ? text : [...(text ? [{ type: "text" as const, text }] : []), ...images],
      });
    } else if (message.role === "assistant" && text !== "") out.push({ role: "assistant", content: text });
  }
  return out;
}

function defaultInput({ messages }: ChatInputRequest<UIMessage>): AgentInput {
  return { messages: toAgentMessages(messages) };
}

const ID_PATTERN = /^[A-Za-z0-9_.:@/-]{1,200}$/;

/** `ai/<parts joined by />` when that is a valid fiber id, else `ai/` and a SHA-256 of it. */
async function fiberIdFor(parts: readonly string[]): Promise<string> {
  const id = `ai/${parts.join("/")}`;
  if (ID_PATTERN.test(id)) return id;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(id));
  return `ai/${Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * A pull-based stream over `chunks`; a failure becomes an `error` chunk, so `useChat` shows it.
 * Cancelling it (or aborting `reading`) stops reading the fiber; the fiber itself runs on.
 */
function readableFrom(
  chunks: AsyncGenerator<UIMessageChunk>,
  reading: AbortController,
): ReadableStream<UIMessageChunk> {
  return new ReadableStream<UIMessageChunk>({
    async pull(controller) {
      try {
        const next = await chunks.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (error) {
        if (!reading.signal.aborted)
          controller.enqueue({
            type: "error",
            errorText: error instanceof Error ? error.message : String(error),
          });
        controller.close();
      }
    },
    async cancel() {
      reading.abort();
      await chunks.return(undefined);
    },
  });
}
