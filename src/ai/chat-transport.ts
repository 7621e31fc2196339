/**
 * `FiberlineChatTransport`: the AI SDK's `ChatTransport` for `useChat`, backed by an agent fiber
 * in the Service Worker. A message starts (or joins) the fiber; its durable stream becomes the UI
 * message stream; a reload or a browser crash resumes the reply in place; approvals from the chat
 * become the fiber's approval events; `stop()` cancels the fiber. Used by pages with `useChat`.
 */

import type { ChatTransport, UIMessage, UIMessageChunk } from "ai";
import type { AgentInput } from "../agent/agent";
import { FiberlineError } from "../core/errors";
import { type FiberEvent, type FiberRecord, isTerminal } from "../core/records";
import { sha256Hex } from "../core/sha256";
import { type ChatCursor, type ChatCursorStore, idbCursorStore, updateCursor } from "./chat-cursors";
import { defaultInput, fiberIdFor } from "./chat-input";
import { changesNoPart, resumePoint } from "./resume-point";
import { type ApprovalAnswer, foldResets, isDiscardedPart, UiChunkMapper } from "./ui-chunks";

/**
 * What the transport needs of a Fiberline client: `FiberlineClient` from `connect()` in a page,
 * or a `Runtime` where the fibers run in the same context (tests, a worker page).
 */
export interface ChatFiberClient {
  start(name: string, input: AgentInput, options: { id: string }): Promise<{ id: string; created: boolean }>;
  events(id: string, options: { after?: number; signal?: AbortSignal }): AsyncIterable<FiberEvent>;
  get(id: string): Promise<FiberRecord | undefined>;
  inspect(id: string): Promise<{ inbox: readonly InboxEntry[] }>;
  sendEvent(id: string, name: string, payload?: unknown): Promise<void>;
  cancel(id: string, reason?: string): Promise<unknown>;
}

/** An event in a fiber's inbox, as far as the transport reads it (approval decisions). */
interface InboxEntry {
  name: string;
  seq?: number;
  payload?: unknown;
  /** Set once the fiber consumed it. */
  consumedBy?: number;
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
  /**
   * How long the page must outlive a reply's end before the transport records
   * that nothing is left to resume, in ms (default 1,000). The chat's messages are the app's to
   * save, and a save triggered by the end (`onFinish`, an effect on `messages`) may not have
   * committed when the page reloads or crashes right after it: until then `reconnectToStream`
   * replays the reply, which rebuilds it in place whether the save happened or not.
   */
  endGraceMs?: number;
}

/** The default `endGraceMs`. */
export const END_GRACE_MS = 1_000;

/**
 * What `FiberlineChatTransport.resume` found: a stream that continues the message the page
 * passed (`continue`: give both to `readUIMessageStream({ message, stream })`), one that rebuilds
 * the reply from its start (`replay`: build it with `readUIMessageStream({ stream })` and put it
 * in place of the message with the same id), the message already whole (`complete`), or no reply
 * of this chat known here (`none`).
 */
export type ChatResume =
  | { status: "continue"; stream: ReadableStream<UIMessageChunk> }
  | { status: "replay"; stream: ReadableStream<UIMessageChunk> }
  | { status: "complete" }
  | { status: "none" };

/** The reply's stored stream already read and folded, where `#stream` picks it up. */
interface StoredPrefix {
  events: FiberEvent[];
  /** The last `seq` among them: the live part starts after it. */
  head: number;
  /** How many UI chunks they map to the page already holds. */
  skip: number;
  /** Send ai 7's `reset-step` before the first chunk not skipped (the page is mid-step). */
  reset: boolean;
  /** The approval decisions `skip` was counted with. */
  answers: Map<string, ApprovalAnswer>;
}

/**
 * A `ChatTransport` whose replies are agent fibers: `useChat({ transport: new FiberlineChatTransport({ agent, client }) })`.
 *
 * Failure semantics: the fiber id is derived from the chat id and the user message's id, so a
 * retried or doubled `sendMessages` joins the running fiber instead of starting a second one.
 * Every stream `sendMessages` and `reconnectToStream` return starts with `start` carrying the
 * fiber id as the assistant message's id and replays the reply from its first chunk (ai 6 and 7
 * both rebuild the message from a resumed stream), with text that a `message.reset` took back
 * left out; `resume` sends a kept message only what it lacks. The page going away
 * (reload, closed tab, crash) leaves the fiber running; `reconnectToStream` picks the reply up
 * again, and returns `null` once the page delivered its end and lived `endGraceMs` longer (time
 * for the app to save the message). `stop()` aborts the request's signal: the transport cancels
 * the fiber. The chat also aborts a resume's signal when it starts another resume (a remount);
 * that one only stops reading. A tool that needs approval ends the stream at its
 * `tool-approval-request`; the chat's next request (after `addToolApprovalResponse`, e.g. with
 * `sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses`) sends the
 * decision as the fiber's durable approval event and streams the rest. A request answered
 * already (before a reload, or in another page) is never shown as a question again. The
 * fiber's own events (`data-*` chunks, `onData`) are in every stream, as its message's parts are:
 * a resume, also one that replaces another of the same chat, replays them, so `onData` should
 * treat them as state to rebuild (the transport cannot tell a chat replacing its own resume from
 * a new chat of the same id that replaces a stopped one, which must get them all).
 *
 * Create the transport once (outside the component, or in `useMemo`/`useState`): a resume's
 * `stop()` is told from a replacing resume by counting this instance's calls, and each instance
 * connects its own client.
 *
 * @example
 * const fl = await connect({ scriptUrl: "/sw.js", registerOptions: { type: "module" } });
 * const transport = new FiberlineChatTransport({ agent: "assistant", client: fl });
 * const { messages, sendMessage, stop } = useChat({ id: chatId, transport, resume: true });
 */
export class FiberlineChatTransport<UI_MESSAGE extends UIMessage = UIMessage>
  implements ChatTransport<UI_MESSAGE>
{
  /** `reconnectToStream` replays the reply from its start: the chat must reset at its `start`. */
  readonly resumeStreamIsReplay = true;
  readonly #options: FiberlineChatTransportOptions<UI_MESSAGE>;
  readonly #cursors: ChatCursorStore;
  #client: Promise<ChatFiberClient> | undefined;
  /** `reconnectToStream` calls so far, by chat: tells a superseded resume from a `stop()`. */
  readonly #reconnects = new Map<string, number>();

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
    // Approvals answered in an assistant message: the last one, or (ai 6 with an earlier reply
    // still waiting) the one `messageId` names.
    const approving = trigger === "submit-message" ? approvalTarget(messages, options.messageId) : undefined;
    if (approving !== undefined)
      return await this.#continueAfterApprovals(client, chatId, approving, abortSignal);
    const user = messages.findLast((message) => message.role === "user");
    if (user === undefined)
      throw new FiberlineError(
        "invalid_argument",
        "FiberlineChatTransport: the chat has no user message to answer. Send one with sendMessage({ text }).",
      );
    const previous = await this.#cursors.get(chatId);
    // The user message's content is in the id: a retried or doubled send joins the fiber, an
    // edited message (same id, new text) starts its own.
    const parts = [chatId, user.id, await contentDigest(user)];
    if (trigger === "regenerate-message")
      parts.push("again", regenerated(messages, options.messageId, previous));
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
    // Before any await: the chat aborts the resume this one replaces just before calling here.
    const call = (this.#reconnects.get(options.chatId) ?? 0) + 1;
    this.#reconnects.set(options.chatId, call);
    const cursor = await this.#cursors.get(options.chatId);
    if (cursor === undefined || cursor.done) return null;
    const client = await this.#connect();
    const record = await client.get(cursor.fiberId);
    if (record === undefined) {
      await this.#cursors.set(options.chatId, { ...cursor, done: true });
      return null;
    }
    if (isTerminal(record.status) && cursor.delivered >= record.streamHead) {
      await this.#cursors.set(options.chatId, { ...cursor, done: true });
      return null;
    }
    // Aborted while looking: `useChat` started another resume (React StrictMode mounts twice),
    // or the chat was stopped (ai 7's `useChat` unmounting), which stops the reply.
    if (options.abortSignal?.aborted) {
      if (this.#reconnects.get(options.chatId) === call)
        this.#stopReply(client, options.chatId, cursor.fiberId);
      return null;
    }
    return this.#stream(client, options.chatId, cursor.fiberId, {
      signal: options.abortSignal,
      resumed: true,
    });
  }

  /**
   * Resumes the chat's latest reply into `message`, the assistant message the page kept (from its
   * own storage, after a reload), sending only what the message lacks. For pages that build the
   * message themselves with `readUIMessageStream`; `useChat` does not keep a message across a
   * resume (it rebuilds it from the stream), so it uses `reconnectToStream`, a full replay.
   *
   * Failure semantics: where the message stands is found from its parts, not from a counter, so
   * it holds whatever the app saved, early or late. A message kept halfway through a text or
   * reasoning part cannot be appended to (the AI SDK appends only to parts it opened in the same
   * stream): with `resetStep` (ai 7) the stream takes the current step back and sends it again;
   * without, and whenever the message holds anything the reply does not build (a discarded part,
   * an answered approval), the result is a `replay`. Aborting `abortSignal` stops the reply, as
   * `stop()` does; cancel the stream to stop reading only.
   *
   * @example
   * const resumed = await transport.resume({ chatId, message: saved.at(-1) });
   * if (resumed.status === "continue")
   *   for await (const message of readUIMessageStream({ message: saved.at(-1), stream: resumed.stream })) show(message);
   */
  async resume(options: {
    chatId: string;
    message?: UI_MESSAGE;
    abortSignal?: AbortSignal;
  }): Promise<ChatResume> {
    const cursor = await this.#cursors.get(options.chatId);
    if (cursor === undefined) return { status: "none" };
    const client = await this.#connect();
    const record = await client.get(cursor.fiberId);
    if (record === undefined) return { status: "none" };
    const resetStep = this.#options.resetStep ?? false;
    const events = foldResets(await readStored(client, cursor.fiberId, record.streamHead));
    const answers = events.some((event) => event.type === "tool.approval")
      ? answersIn((await client.inspect(cursor.fiberId)).inbox)
      : new Map<string, ApprovalAnswer>();
    const mapper = new UiChunkMapper({ resetStep, answers: (name) => answers.get(name) });
    const chunks = events.flatMap((event) => mapper.map(event));
    const point =
      options.message?.id === cursor.fiberId
        ? resumePoint(chunks, options.message, { resetStep })
        : ({ from: "start" } as const);
    if (isTerminal(record.status) && point.from === "chunk" && changesNoPart(chunks.slice(point.index))) {
      await this.#cursors.set(options.chatId, { ...cursor, done: true });
      return { status: "complete" };
    }
    const from: StoredPrefix = {
      events,
      head: record.streamHead,
      skip: point.from === "start" ? 0 : point.index,
      reset: point.from === "step",
      answers,
    };
    const stream = this.#stream(client, options.chatId, cursor.fiberId, {
      signal: options.abortSignal,
      from,
    });
    return { status: point.from === "start" ? "replay" : "continue", stream };
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
    // The chat's cursor follows this reply again, unless a later one is still streaming.
    const cursor = await this.#cursors.get(chatId);
    if (cursor === undefined || cursor.done || cursor.fiberId === fiberId)
      await this.#cursors.set(chatId, {
        fiberId,
        delivered: cursor?.fiberId === fiberId ? cursor.delivered : 0,
        done: false,
      });
    return this.#stream(client, chatId, fiberId, {
      signal,
      after: last.id,
      toolCallIds: toolCallIdsOf(message),
    });
  }

  /**
   * The fiber's stream as UI chunks: the stored part folded (no discarded text), then live.
   * With `after`, only what follows that approval's request (the chat already shows the rest);
   * with `from`, the stored part as already read, less what the page holds. `resumed`: the
   * stream answers `reconnectToStream`, whose signal the chat also aborts to start another resume.
   */
  #stream(
    client: ChatFiberClient,
    chatId: string,
    fiberId: string,
    options: {
      signal: AbortSignal | undefined;
      after?: string;
      from?: StoredPrefix;
      resumed?: boolean;
      toolCallIds?: ReadonlyMap<string, string>;
    },
  ): ReadableStream<UIMessageChunk> {
    const reading = new AbortController();
    const cursors = this.#cursors;
    const resetStep = this.#options.resetStep ?? false;
    /** Where a reload resumes: only while the chat's cursor is still this reply's. */
    const keep = (patch: Partial<Omit<ChatCursor, "fiberId">>): Promise<void> =>
      updateCursor(cursors, chatId, fiberId, patch);
    const finish = (delivered: number): void => this.#finish(chatId, fiberId, delivered);
    const stop = (): void => this.#stopReply(client, chatId, fiberId);
    const onAbort = (): void => {
      reading.abort();
      if (!options.resumed) {
        stop();
        return;
      }
      // ai 6 and 7 abort a resume's signal on `stop()`, and also when they start another resume
      // of the chat (a remount, a reconnect), which calls `reconnectToStream` in the same task:
      // only a stop cancels the reply.
      const seen = this.#reconnects.get(chatId);
      queueMicrotask(() => {
        if (this.#reconnects.get(chatId) === seen) stop();
      });
    };
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener("abort", onAbort, { once: true });

    async function* chunks(): AsyncGenerator<UIMessageChunk> {
      yield { type: "start", messageId: fiberId };
      const answers = options.from?.answers ?? new Map<string, ApprovalAnswer>();
      const mapper = new UiChunkMapper({
        resetStep,
        answers: (name) => answers.get(name),
        ...(options.toolCallIds ? { toolCallIds: options.toolCallIds } : {}),
      });
      /** Learns the request's decision, when the fiber's inbox holds one. */
      const learn = async (event: FiberEvent): Promise<void> => {
        const name = (event.data as { event: string }).event;
        if (answers.has(name)) return;
        const { inbox } = await client.inspect(fiberId);
        for (const [approval, answer] of answersIn(inbox)) answers.set(approval, answer);
      };
      let skipping = options.after;
      let held = options.from?.skip ?? 0;
      let reset = options.from?.reset ?? false;
      /** The chunks not yet in the page's message (`from`), after a `reset-step` when it is mid-step. */
      const pass = function* (chunks: UIMessageChunk[], counted = true): Generator<UIMessageChunk> {
        for (const chunk of chunks) {
          if (counted && held > 0) {
            held--;
            continue;
          }
          if (reset) {
            reset = false;
            yield { type: "reset-step" } as unknown as UIMessageChunk;
          }
          yield chunk;
        }
      };
      const head = options.from ? -1 : ((await client.get(fiberId))?.streamHead ?? 0);
      let stored: FiberEvent[] = [];
      const emit = async function* (
        events: FiberEvent[],
        live: boolean,
        known = false,
      ): AsyncGenerator<UIMessageChunk, boolean> {
        const movedOn = live ? [] : movedOnFrom(events);
        for (const [i, event] of events.entries()) {
          if (skipping !== undefined) {
            if (event.type === "tool.approval" && (event.data as { event: string }).event === skipping)
              skipping = undefined;
            mapper.track(event); // the page has these: only its calls waiting for a result matter
            continue;
          }
          // `from`'s decisions are the ones its skip count was made with.
          if (event.type === "tool.approval" && !known) await learn(event);
          const chunks = mapper.map(event);
          // A request nothing answered yet ends this stream: the chat shows the approval buttons.
          // In stored events, one the agent went on from (its call's result, the next model
          // call, the end) was answered, whatever the inbox says; what a crash or the fiber
          // itself adds after it meanwhile (`fiber.recovered`, its own events) is no answer.
          const pause =
            event.type === "tool.approval" &&
            (live || !movedOn[i]) &&
            !answers.has((event.data as { event: string }).event);
          if (event.type === "fiber.end") {
            // The end is read once its last chunk is: ai 6 and 7 stop reading at an `error`
            // (their `onError` throws), so nothing after that `yield` would run.
            const last = chunks.pop();
            yield* pass(chunks);
            try {
              if (last !== undefined) yield* pass([last]);
            } finally {
              finish(event.seq);
            }
            continue;
          }
          yield* pass(chunks);
          // Kept durably where it decides what a reload resumes, at a pause and at the end, once
          // the page has read what this event sent (the stream reads nothing ahead of the page).
          if (pause) {
            yield* pass(mapper.pause(), false);
            await keep({ delivered: event.seq, done: false });
            return true;
          }
        }
        return false;
      };
      if (options.from && (yield* emit(options.from.events, false, true))) return;
      const after = options.from?.head ?? 0;
      for await (const event of client.events(fiberId, { after, signal: reading.signal })) {
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

  /**
   * Marks the chat's reply done once the page lived `endGraceMs` longer (time to save the
   * message; a page gone before that replays the reply). Only while the cursor is still its.
   */
  #finish(chatId: string, fiberId: string, delivered?: number): void {
    const timer = setTimeout(() => {
      const patch = { ...(delivered === undefined ? {} : { delivered }), done: true };
      updateCursor(this.#cursors, chatId, fiberId, patch).catch(() => {
        // The cursor could not be written: a reload replays the ended reply, in place.
      });
    }, this.#options.endGraceMs ?? END_GRACE_MS);
    // Nothing to wait for in a process that is otherwise done (Node, tests).
    (timer as { unref?: () => void }).unref?.();
  }

  /**
   * `stop()`: cancels the reply's fiber; nothing is left to resume, at once (no grace: a replay
   * of a stopped reply could show less than the page kept, e.g. a cut step taken back).
   */
  #stopReply(client: ChatFiberClient, chatId: string, fiberId: string): void {
    updateCursor(this.#cursors, chatId, fiberId, { done: true }).catch(() => {
      // The cursor could not be written: a reload resumes the stopped reply, which shows its end.
    });
    client.cancel(fiberId, "Stopped from the chat.").catch(() => {
      // Already ended, or the worker is unreachable: the fiber's own end stands.
    });
  }

  #connect(): Promise<ChatFiberClient> {
    const { client } = this.#options;
    this.#client ??= Promise.resolve(typeof client === "function" ? client() : client);
    return this.#client;
  }
}

/** What the agent writes only once it went on from a tool's approval request. */
const AFTER_AN_ANSWER = new Set(["tool.result", "tool.approval", "message.start", "fiber.end"]);

/** For each of `events`, whether one after it shows the agent went on (see {@link AFTER_AN_ANSWER}). */
function movedOnFrom(events: readonly FiberEvent[]): boolean[] {
  const movedOn = new Array<boolean>(events.length);
  let later = false;
  for (let i = events.length - 1; i >= 0; i--) {
    movedOn[i] = later;
    if (AFTER_AN_ANSWER.has((events[i] as FiberEvent).type)) later = true;
  }
  return movedOn;
}

/**
 * The UI ids the message's live tool parts have, by `toolCallKey` (a `~N` suffix taken off):
 * what a stream continuing that message must call them.
 */
function toolCallIdsOf(message: UIMessage): Map<string, string> {
  const ids = new Map<string, string>();
  for (const part of message.parts) {
    const id = (part as { toolCallId?: unknown }).toolCallId;
    if (typeof id !== "string" || isDiscardedPart(part)) continue;
    ids.set(id.replace(/~\d+$/, ""), id);
  }
  return ids;
}

/**
 * The approval decisions in a fiber's inbox, by event name: the event the fiber consumed, else
 * the first to arrive (the one it will consume). A payload that is not a decision denies, as
 * the agent reads it.
 */
export function answersIn(inbox: readonly InboxEntry[]): Map<string, ApprovalAnswer> {
  const ordered = [...inbox].sort(
    (a, b) =>
      Number(b.consumedBy !== undefined) - Number(a.consumedBy !== undefined) || (a.seq ?? 0) - (b.seq ?? 0),
  );
  const answers = new Map<string, ApprovalAnswer>();
  for (const event of ordered) {
    if (answers.has(event.name)) continue;
    const payload = event.payload as Partial<ApprovalAnswer> | null | undefined;
    const reason = typeof payload?.reason === "string" && payload.reason ? payload.reason : undefined;
    answers.set(event.name, { approved: payload?.approved === true, ...(reason ? { reason } : {}) });
  }
  return answers;
}

/** The fiber's stream up to `head`, as stored. */
async function readStored(client: ChatFiberClient, fiberId: string, head: number): Promise<FiberEvent[]> {
  const events: FiberEvent[] = [];
  if (head <= 0) return events;
  const reading = new AbortController();
  try {
    for await (const event of client.events(fiberId, { after: 0, signal: reading.signal })) {
      if (event.seq <= head) events.push(event);
      if (event.seq >= head) break;
    }
  } finally {
    reading.abort();
  }
  return events;
}

/**
 * A pull-based stream over `chunks`; a failure becomes an `error` chunk, so `useChat` shows it.
 * Cancelling it (or aborting `reading`) stops reading the fiber; the fiber itself runs on.
 */
function readableFrom(
  chunks: AsyncGenerator<UIMessageChunk>,
  reading: AbortController,
): ReadableStream<UIMessageChunk> {
  // A high-water mark of 0: the generator moves on only when the page asks for the next chunk,
  // so what it does after a `yield` (keeping the cursor) happens once the page read that chunk.
  return new ReadableStream<UIMessageChunk>(
    {
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
    },
    { highWaterMark: 0 },
  );
}

/**
 * The assistant message whose answered approvals this request sends: the one `messageId` names
 * when it has some (ai 6 continues an earlier reply that way), else the last message when it is
 * the assistant's (which must then have some).
 */
function approvalTarget<M extends UIMessage>(
  messages: readonly M[],
  messageId: string | undefined,
): M | undefined {
  const named = messageId === undefined ? undefined : messages.find((m) => m.id === messageId);
  if (named?.role === "assistant" && answersApproval(named)) return named;
  const last = messages.at(-1);
  return last?.role === "assistant" ? last : undefined;
}

function answersApproval(message: UIMessage): boolean {
  return message.parts.some((part) => (part as { state?: string }).state === "approval-responded");
}

/**
 * What a regenerated reply's id chains on: the reply it replaces (`messageId`, once the chat has
 * removed it), else the chat's latest reply (regenerating from a user message, whose id does not
 * change between two regenerations), else a fresh id (no cursor kept, e.g. after a reload on
 * memory cursors): each regeneration asks the model again.
 */
function regenerated(
  messages: readonly UIMessage[],
  messageId: string | undefined,
  previous: ChatCursor | undefined,
): string {
  if (messageId !== undefined && !messages.some((m) => m.id === messageId)) return messageId;
  return previous?.fiberId ?? crypto.randomUUID();
}

/** A short SHA-256 of a message's role and parts (its first 6 bytes). */
async function contentDigest(message: UIMessage): Promise<string> {
  return (await sha256Hex(JSON.stringify({ role: message.role, parts: message.parts }))).slice(0, 12);
}
