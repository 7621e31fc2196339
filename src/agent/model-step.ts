/**
 * One model call of an agent turn as a journaled step: streams `message.start`, `reasoning.delta`,
 * `text.delta`, `tool.call` and `message.end` chunks, and after a crash or a failed attempt rebuilds what was
 * already streamed to continue it (`continue`) or restart it (`message.reset`). A reply whose
 * `message.end` is in the stream is complete and is never asked for again. Used by `defineAgent`.
 */

import type { FiberContext, RetryPolicy, StepContext } from "../core/define";
import { FiberlineError, NonRetryableError, RecoveryExhaustedError } from "../core/errors";
import { sleepUntil } from "../core/sleep";
import { ModelError } from "./errors";
import type {
  ChatMessage,
  FinishReason,
  ModelProvider,
  ModelUsage,
  ReasoningPart,
  ToolCall,
  ToolSpec,
} from "./types";

/** What one model call produced, as the model step journals it. */
export interface ModelReply {
  content: string;
  /** The model's reasoning, `""` when it streamed none (absent in replies journaled before reasoning was kept). */
  reasoning?: string;
  /** `AssistantMessage.reasoningParts`: present when the provider attached metadata to its reasoning. */
  reasoningParts?: ReasoningPart[];
  toolCalls: ToolCall[];
  usage: ModelUsage | null;
  finishReason: FinishReason;
}

/** What a model step needs besides the context. */
export interface ModelCall {
  provider: () => ModelProvider | Promise<ModelProvider>;
  specs: readonly ToolSpec[];
  messages: readonly ChatMessage[];
  turn: number;
  recovery: "continue" | "retry";
  retry: RetryPolicy | undefined;
  noProgressTimeoutMs: number;
  /** `noProgressTimeoutMs` before the call's first event. */
  firstEventTimeoutMs: number;
  /** A reply whose reasoning, text and tool calls reach this many characters is cut there (`finishReason: "length"`). */
  maxReplyChars: number;
  /** A reply is cut before its tool call number `maxToolCalls + 1` (`finishReason: "length"`). */
  maxToolCalls: number;
}

interface Partial {
  started: boolean;
  text: string;
  reasoning: string;
  /** The reasoning blocks ended so far (their lengths add up to at most `reasoning`'s). */
  reasoningParts: ReasoningPart[];
  toolCalls: ToolCall[];
  /** Set when `message.end` was streamed: the reply is complete. */
  end?: { finishReason: FinishReason; usage: ModelUsage | null; reasoningParts?: ReasoningPart[] };
}

/**
 * How long `message.start` waits for the reply's first delta to share its commit before it is
 * committed alone (see `streamReply`).
 */
export const START_LINGER_MS = 50;

/** The `messageId` of a fiber's model call number `turn` (1-based). */
export function messageIdOf(fiberId: string, turn: number): string {
  return `${fiberId}:m${turn}`;
}

/**
 * Runs one model call as the step `model`.
 *
 * Failure semantics: a reply that streamed `message.end` is complete, whatever happens after
 * (a dropped connection before `[DONE]`, a crash before the step's result was journaled): it is
 * returned as streamed, with no further model call. Before that, a failed or interrupted attempt
 * continues from the streamed text (`recovery: "continue"`, the provider supporting it, no tool
 * call streamed yet) or restarts after a `message.reset` chunk. Retries after errors run inside
 * one attempt of the step, so after a crash `step.emitted` holds every chunk the call streamed.
 * Each retry is announced by a `message.retry` chunk before its wait; after a crash the call
 * goes on from the attempt it names, once its wait is over, rather than from attempt 1.
 */
export async function callModel(ctx: FiberContext<unknown>, call: ModelCall): Promise<ModelReply> {
  const messageId = messageIdOf(ctx.id, call.turn);
  const policy = {
    maxAttempts: 5,
    backoff: "exponential",
    initialDelayMs: 1_000,
    maxDelayMs: 20_000,
    ...call.retry,
  };
  return ctx.step(
    "model",
    async (step: StepContext): Promise<ModelReply> => {
      // What this call streamed so far: rebuilt from the stream after a crash, kept in memory
      // across retries.
      const partial = replayPartial(step.emitted);
      if (partial.end)
        return {
          content: partial.text,
          reasoning: partial.reasoning,
          toolCalls: partial.toolCalls,
          ...partial.end,
        };
      // Usage reported by attempts that then failed: those tokens were spent too.
      const spent: ModelUsage = { promptTokens: 0, completionTokens: 0 };
      // A crash between attempts does not give the call new attempts or skip its backoff: the
      // last `message.retry` says which attempt is next and when it may start.
      const announced = lastRetry(step.emitted);
      if (announced) await waitOut(announced, step.signal);
      // Regenerations after an interruption so far: each discards what the earlier lives streamed,
      // which the runtime counts as progress, so the call itself stops a crash loop of them.
      const regenerated = step.emitted.filter(
        (c) => c.type === "message.reset" && (c.data as { interrupted?: unknown }).interrupted === true,
      ).length;
      for (let attempt = announced?.attempt ?? 1, first = true; ; attempt++, first = false) {
        const interrupted = first && step.interrupted;
        const reset: Reset = {
          reason: interrupted
            ? "The reply was interrupted and is being regenerated."
            : "The reply failed and is being regenerated.",
          interrupted,
          ...(interrupted ? { earlier: regenerated, limit: ctx.maxRecoveries } : {}),
        };
        try {
          const reply = await streamReply(step, call, messageId, partial, spent, reset);
          return reply;
        } catch (error) {
          const permanent =
            error instanceof NonRetryableError ||
            step.signal.aborted ||
            error instanceof RecoveryExhaustedError;
          if (permanent || attempt >= policy.maxAttempts) throw error;
          const base =
            policy.backoff === "fixed" ? policy.initialDelayMs : policy.initialDelayMs * 2 ** (attempt - 1);
          // A provider that said how long to wait (`Retry-After`) is not asked again sooner; one
          // that asks for longer than a reply should wait (a quota window) fails the call.
          const retryAfterMs = retryAfterOf(error) ?? 0;
          if (retryAfterMs > MAX_RETRY_AFTER_MS) throw error;
          const delayMs = Math.max(Math.min(base, policy.maxDelayMs), retryAfterMs);
          // Durable before the wait, so a page that reloads or a worker that restarts during it
          // still knows which attempt comes next, when, and why the last one failed.
          const retry: RetryChunkData = {
            messageId,
            attempt: attempt + 1,
            maxAttempts: policy.maxAttempts,
            delayMs,
            retryAt: Date.now() + delayMs,
            error: describeFailure(error),
          };
          step.emit("message.retry", retry);
          await waitOut(retry, step.signal);
        }
      }
    },
    // A model call is harmless to repeat as a first attempt: it starts while its `started`
    // entry is written (one transaction less before the first token); its chunks follow it.
    { retry: { maxAttempts: 1 }, awaitStart: false },
  );
}

/** One request to the model, streamed into `partial`; returns the reply once it finished. */
async function streamReply(
  step: StepContext,
  call: ModelCall,
  messageId: string,
  partial: Partial,
  spent: ModelUsage,
  reset: Reset,
): Promise<ModelReply> {
  const provider = await call.provider();
  let prefix: string | undefined;
  if (partial.text.length > 0 || partial.reasoning.length > 0 || partial.toolCalls.length > 0) {
    // A prefix continues the answer text; reasoning alone cannot be continued that way, and a
    // provider whose model needs its reasoning back with the text (Anthropic's signed thinking:
    // a prefill without it is a 400) regenerates a reply that had any.
    const canContinue =
      call.recovery === "continue" &&
      provider.supportsContinuation &&
      partial.text.length > 0 &&
      (partial.reasoning.length === 0 || provider.continuesAfterReasoning !== false) &&
      partial.toolCalls.length === 0;
    if (canContinue) {
      prefix = partial.text;
    } else {
      if (reset.limit !== undefined && (reset.earlier ?? 0) >= reset.limit) {
        throw new RecoveryExhaustedError(
          "recovery_exhausted",
          `The reply to turn ${call.turn} was cut off by ${reset.limit} interruptions in a row and regenerated after each (the provider cannot continue a partial reply); it was failed so the model is not called again and again. Look for what stops the worker mid-reply.`,
        );
      }
      step.emit("message.reset", {
        messageId,
        reason: reset.reason,
        ...(reset.interrupted ? { interrupted: true } : {}),
      });
      partial.text = "";
      partial.reasoning = "";
      partial.reasoningParts = [];
      partial.toolCalls = [];
    }
  }
  // Reasoning rebuilt after a crash has no block metadata (only `message.end` carries it).
  const ended = partial.reasoningParts.reduce((n, part) => n + part.length, 0);
  if (partial.reasoning.length > ended)
    partial.reasoningParts.push({ length: partial.reasoning.length - ended });
  // `message.start` goes out with what follows it (the first delta, a tool call, the end, or the
  // retry of a failed request), so the first token is made durable in one commit with it instead
  // of queueing behind a commit of its own; a model that has not answered within
  // `START_LINGER_MS` gets it alone then, so a page still learns soon that a reply is coming.
  // The chunks are the same, in the same order; only when `message.start` is committed moves
  // (and a call cancelled before the model answered and before that time has none).
  const announce = (): void => {
    if (partial.started) return;
    clearTimeout(linger);
    step.emit("message.start", { messageId, turn: call.turn, model: provider.model });
    partial.started = true;
  };
  const linger = partial.started
    ? undefined
    : setTimeout(() => {
        // Not live any more (cancelled, fenced): nothing is emitted, as for any late emit.
        if (!step.signal.aborted) ignoreFailure(announce);
      }, START_LINGER_MS);
  let usage: ModelUsage | null = null;
  let finishReason: FinishReason | undefined;
  // A high surrogate that ended a delta waits for its low half, so that neither the stream nor a
  // continuation prefix ever ends in half a character.
  const heldHalf = { text: "", reasoning: "" };
  let size =
    partial.text.length + partial.reasoning.length + partial.toolCalls.reduce((n, c) => n + callSize(c), 0);
  /** Streams a text or reasoning delta, cut at `maxReplyChars`. */
  const emitDelta = (kind: "text" | "reasoning", raw: string): void => {
    let delta = heldHalf[kind] + raw;
    heldHalf[kind] = "";
    if (size + delta.length > call.maxReplyChars) {
      delta = cutAt(delta, call.maxReplyChars - size);
      finishReason = "length";
    } else if (endsInHighSurrogate(delta)) {
      heldHalf[kind] = delta.slice(-1);
      delta = delta.slice(0, -1);
    }
    if (delta.length === 0) return;
    announce();
    partial[kind] += delta;
    size += delta.length;
    step.emit(kind === "text" ? "text.delta" : "reasoning.delta", { messageId, delta });
  };
  const watchdog = new Watchdog(call.firstEventTimeoutMs, call.noProgressTimeoutMs, step.signal);
  try {
    const events = provider.stream({
      messages: call.messages,
      tools: call.specs,
      signal: watchdog.signal,
      onRetryWait: (ms) => watchdog.pause(ms),
      onActivity: () => watchdog.activity(),
      onProgress: () => watchdog.progress(),
      ...(prefix === undefined ? {} : { prefix }),
    });
    for await (const event of events) {
      watchdog.progress();
      if (event.type === "text" || event.type === "reasoning") {
        emitDelta(event.type, event.delta);
      } else if (event.type === "reasoning_end") {
        const length =
          partial.reasoning.length +
          heldHalf.reasoning.length -
          partial.reasoningParts.reduce((n, part) => n + part.length, 0);
        if (length > 0 || event.providerMetadata !== undefined)
          partial.reasoningParts.push({
            length,
            ...(event.providerMetadata === undefined ? {} : { providerMetadata: event.providerMetadata }),
          });
      } else if (event.type === "tool_call") {
        const toolCall: ToolCall = {
          id: event.id,
          type: "function",
          function: { name: event.name, arguments: event.arguments },
          ...(event.providerMetadata === undefined ? {} : { providerMetadata: event.providerMetadata }),
        };
        if (partial.toolCalls.length >= call.maxToolCalls || size + callSize(toolCall) > call.maxReplyChars) {
          finishReason = "length";
        } else {
          announce();
          step.emit("tool.call", {
            messageId,
            index: partial.toolCalls.length,
            toolCallId: event.id,
            name: event.name,
            arguments: event.arguments,
            ...(event.providerMetadata === undefined ? {} : { providerMetadata: event.providerMetadata }),
          });
          partial.toolCalls.push(toolCall);
          size += callSize(toolCall);
        }
      } else if (event.type === "usage") {
        usage = event.usage;
      } else if (event.type === "finish") {
        // `finish` is the last event: whatever the provider does after it cannot undo the reply.
        finishReason = event.reason;
      }
      if (finishReason !== undefined) break;
    }
  } catch (error) {
    if (usage !== null) {
      spent.promptTokens += usage.promptTokens;
      spent.completionTokens += usage.completionTokens;
    }
    // Before the `message.retry` the caller may emit, as when it was emitted before the request.
    if (!step.signal.aborted) announce();
    throw watchdog.explain(error);
  } finally {
    clearTimeout(linger);
    watchdog.stop();
  }
  announce();
  for (const kind of ["reasoning", "text"] as const) {
    if (heldHalf[kind] === "") continue;
    partial[kind] += heldHalf[kind];
    step.emit(kind === "text" ? "text.delta" : "reasoning.delta", { messageId, delta: heldHalf[kind] });
  }
  if (spent.promptTokens > 0 || spent.completionTokens > 0) {
    usage = {
      promptTokens: spent.promptTokens + (usage?.promptTokens ?? 0),
      completionTokens: spent.completionTokens + (usage?.completionTokens ?? 0),
    };
  }
  const reason = finishReason ?? "stop";
  // Only a provider that signs its reasoning needs the blocks back.
  const signed = partial.reasoningParts.some((part) => part.providerMetadata !== undefined);
  const reasoningParts = signed ? { reasoningParts: partial.reasoningParts } : {};
  step.emit("message.end", { messageId, finishReason: reason, usage, ...reasoningParts });
  return {
    content: partial.text,
    reasoning: partial.reasoning,
    ...reasoningParts,
    toolCalls: partial.toolCalls,
    usage,
    finishReason: reason,
  };
}

/** The data of a `message.retry` chunk (see `AgentChunk`). */
export interface RetryChunkData {
  messageId: string;
  /** The attempt about to be made (2 after the first failed), 1-based. */
  attempt: number;
  maxAttempts: number;
  /** The wait before it. */
  delayMs: number;
  /** When it starts (ms since the epoch, the worker's clock). */
  retryAt: number;
  /** Why the last attempt failed. */
  error: { code: string; message: string };
}

/** The last `message.retry` an interrupted model call had streamed, unless its reply ended. */
function lastRetry(emitted: StepContext["emitted"]): RetryChunkData | undefined {
  const chunk = emitted.findLast((c) => c.type === "message.retry");
  const data = chunk?.data as { attempt?: unknown; retryAt?: unknown; delayMs?: unknown } | undefined;
  if (
    typeof data?.attempt !== "number" ||
    typeof data.retryAt !== "number" ||
    typeof data.delayMs !== "number"
  )
    return undefined;
  return data as RetryChunkData;
}

/** What is left of an announced wait; never more than the wait itself, whatever the clock did. */
function waitLeft(retry: RetryChunkData): number {
  return Math.max(0, Math.min(retry.retryAt - Date.now(), retry.delayMs));
}

/**
 * Waits until the announced attempt may start. A loop: a timer may fire a millisecond before the
 * wall clock reaches `retryAt`, and no attempt starts before the time the page was told.
 */
async function waitOut(retry: RetryChunkData, signal: AbortSignal): Promise<void> {
  await sleepUntil(() => waitLeft(retry), signal);
}

function describeFailure(error: unknown): RetryChunkData["error"] {
  if (error instanceof FiberlineError) return { code: error.code, message: error.message };
  if (error instanceof Error) return { code: "error", message: `${error.name}: ${error.message}` };
  return { code: "error", message: String(error) };
}

/** Why a reply is regenerated, and for one after an interruption, how many came before it and the limit. */
interface Reset {
  reason: string;
  interrupted: boolean;
  earlier?: number;
  limit?: number;
}

/** Rebuilds what an interrupted model call had streamed, honouring `message.reset` and `message.end`. */
function replayPartial(emitted: StepContext["emitted"]): Partial {
  const partial: Partial = { started: false, text: "", reasoning: "", reasoningParts: [], toolCalls: [] };
  for (const chunk of emitted) {
    const data = chunk.data as Record<string, unknown>;
    if (chunk.type === "message.start") partial.started = true;
    else if (chunk.type === "message.reset") {
      partial.text = "";
      partial.reasoning = "";
      partial.reasoningParts = [];
      partial.toolCalls = [];
    } else if (chunk.type === "text.delta") partial.text += String(data.delta ?? "");
    else if (chunk.type === "reasoning.delta") partial.reasoning += String(data.delta ?? "");
    else if (chunk.type === "tool.call") {
      partial.toolCalls.push({
        id: String(data.toolCallId),
        type: "function",
        function: { name: String(data.name), arguments: String(data.arguments ?? "") },
        ...(data.providerMetadata === undefined
          ? {}
          : { providerMetadata: data.providerMetadata as NonNullable<ToolCall["providerMetadata"]> }),
      });
    } else if (chunk.type === "message.end") {
      partial.end = {
        finishReason: String(data.finishReason ?? "stop"),
        usage: (data.usage as ModelUsage | null | undefined) ?? null,
        ...(Array.isArray(data.reasoningParts)
          ? { reasoningParts: data.reasoningParts as ReasoningPart[] }
          : {}),
      };
    }
  }
  return partial;
}

function callSize(call: ToolCall): number {
  return call.id.length + call.function.name.length + call.function.arguments.length;
}

function endsInHighSurrogate(text: string): boolean {
  const last = text.charCodeAt(text.length - 1);
  return last >= 0xd800 && last <= 0xdbff;
}

/** The first `chars` UTF-16 units of `text`, one fewer when the cut would split a surrogate pair. */
function cutAt(text: string, chars: number): string {
  const head = text.slice(0, Math.max(0, chars));
  return endsInHighSurrogate(head) ? head.slice(0, -1) : head;
}

/**
 * Aborts a model call that makes no progress for `timeoutMs`, and aborts with its parent. Time
 * the provider announces it waits on purpose (`Retry-After`, backoff) does not count.
 */
class Watchdog {
  readonly #controller = new AbortController();
  readonly #firstMs: number;
  readonly #betweenMs: number;
  readonly #parent: AbortSignal;
  readonly #onParentAbort = () => this.#controller.abort(this.#parent.reason);
  #timer: ReturnType<typeof setTimeout> | undefined;
  #fired = false;
  #stopped = false;
  /** Whether the call yielded an event yet: the timeout before it is `#firstMs`. */
  #started = false;
  /**
   * When the call started or last yielded an event (or ends a wait it announced): signs of life
   * with no event extend a silence up to `max(#firstMs, #betweenMs)` after it, never beyond, so
   * a proxy that sends keep-alives while its upstream hangs still ends as a stall.
   */
  #lastEventAt = Date.now();

  constructor(firstMs: number, betweenMs: number, parent: AbortSignal) {
    this.#firstMs = firstMs;
    this.#betweenMs = betweenMs;
    this.#parent = parent;
    parent.addEventListener("abort", this.#onParentAbort, { once: true });
    if (parent.aborted) this.#controller.abort(parent.reason);
    this.activity();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The call yielded an event. */
  progress(): void {
    this.#started = true;
    this.#lastEventAt = Date.now();
    this.activity();
  }

  /** The provider heard from the model: the clock starts over. */
  activity(): void {
    this.#arm(0);
  }

  /** The provider is about to wait `ms` on purpose: the no-progress clock starts after that. */
  pause(ms: number): void {
    this.#lastEventAt = Date.now() + Math.max(0, ms);
    this.#arm(Math.max(0, ms));
  }

  #arm(extraMs: number): void {
    clearTimeout(this.#timer);
    const timeoutMs = this.#started ? this.#betweenMs : this.#firstMs;
    if (timeoutMs <= 0 || this.#stopped) return;
    const what = this.#started ? "" : " before its first event";
    const now = Date.now();
    const capMs = Math.max(this.#firstMs, this.#betweenMs);
    const quiet = now + extraMs + timeoutMs;
    const deadline = Math.min(quiet, this.#lastEventAt + capMs);
    const message =
      deadline < quiet
        ? `The model sent no event for ${capMs} ms, only signs of life; the call was aborted and will be retried.`
        : `The model sent nothing for ${timeoutMs} ms${what}; the call was aborted and will be retried.`;
    this.#timer = setTimeout(
      () => {
        this.#fired = true;
        this.#controller.abort(new ModelError(message, { kind: "stalled", retryable: true }));
      },
      Math.max(0, deadline - now),
    );
  }

  /** The error to throw for a failed call: non-retryable model errors stop the step's retries. */
  explain(error: unknown): unknown {
    if (this.#fired) return this.#controller.signal.reason;
    if (error instanceof ModelError && !error.retryable)
      return new NonRetryableError(error.message, { cause: error });
    return error;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#parent.removeEventListener("abort", this.#onParentAbort);
  }
}

/** Runs `fn`, dropping what it throws: for work on a timer whose failure has nowhere to go. */
function ignoreFailure(fn: () => void): void {
  try {
    fn();
  } catch {
    // The run ended meanwhile; its own path reports why.
  }
}

/** The wait a provider asked for (`ModelError.retryAfterMs`), on the error or on its cause. */
/** The longest `Retry-After` a model call waits out (durably, announced by `message.retry`). */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;

function retryAfterOf(error: unknown): number | undefined {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 3; e = e.cause, depth++) {
    const ms = (e as { retryAfterMs?: unknown }).retryAfterMs;
    if (typeof ms === "number" && Number.isFinite(ms) && ms > 0) return ms;
  }
  return undefined;
}
