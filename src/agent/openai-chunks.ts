/**
 * Chat Completions response decoding for the OpenAI-compatible provider: streamed chunks (with
 * tool-call argument deltas assembled by index) and whole JSON completions, both turned into
 * `ModelEvent`s. Used by `openai.ts`; knows nothing about HTTP.
 */

import type { SseMessage } from "../core/sse";
import { scrubError } from "./credentials";
import { ModelError, type ModelErrorData } from "./errors";
import type { FinishReason, ModelEvent } from "./types";

/** What error messages need: where the data came from, and how to scrub credentials. */
export interface DecodeContext {
  /** The endpoint, without credentials or query. */
  label: string;
  /** Removes credentials from text that may echo them. */
  redact(text: string): string;
}

interface PendingToolCall {
  /** The provider's `index` (or the position in the delta's array where it sent none). */
  index: number;
  id: string;
  name: string;
  arguments: string;
}

/** Turns Chat Completions chunks into `ModelEvent`s, assembling tool-call deltas by index. */
export class ChunkAssembler {
  readonly #context: DecodeContext;
  /** Every call begun, in the order its first delta came. */
  readonly #calls: PendingToolCall[] = [];
  /** The call each provider index is adding to now. */
  readonly #open = new Map<number, PendingToolCall>();
  #finishReason: FinishReason | undefined;
  #callsFlushed = false;
  #done = false;

  constructor(context: DecodeContext) {
    this.#context = context;
  }

  /** True once a finish reason arrived: the reply is complete, whatever is cut off after it. */
  get finished(): boolean {
    return this.#finishReason !== undefined;
  }

  /** True once `[DONE]` was seen and `finish` emitted. */
  get done(): boolean {
    return this.#done;
  }

  /** Handles one SSE event; `last` marks the final event of a closed stream (a parse failure there is truncation). */
  *accept(message: SseMessage, last: boolean): Generator<ModelEvent> {
    const data = message.data.trim();
    if (data === "[DONE]") {
      yield* this.#finish(this.#finishReason ?? (this.#calls.length > 0 ? "tool_calls" : "stop"));
      return;
    }
    if (data === "") return;
    if (message.event === "error") {
      const parsed = asRecord(parseJson(data));
      throw providerError(this.#context, parsed?.error ?? parsed ?? data);
    }
    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch (error) {
      // A chunk cut off after the finish reason (the usage chunk, typically) loses nothing of the reply.
      if (last && this.finished) return;
      const cause = scrubError(error, this.#context.redact);
      throw last
        ? new ModelError(
            `The stream from ${this.#context.label} was cut off in the middle of a chunk.`,
            { kind: "truncated_stream", retryable: true },
            { cause },
          )
        : new ModelError(
            this.#context.redact(
              `${this.#context.label} sent an event that is not JSON: ${JSON.stringify(data.slice(0, 120))}.`,
            ),
            { kind: "malformed_stream", retryable: false },
            { cause },
          );
    }
    const record = asRecord(chunk);
    if (record === undefined)
      throw new ModelError(`${this.#context.label} sent an event that is not a JSON object.`, {
        kind: "malformed_stream",
        retryable: false,
      });
    if (record.error !== undefined) throw providerError(this.#context, record.error ?? record);
    // With `n > 1` the choices interleave; the agent follows choice 0 and ignores the others.
    const choice = asRecord(asArray(record.choices)?.find((c) => (asRecord(c)?.index ?? 0) === 0));
    const delta = asRecord(choice?.delta);
    if (delta !== undefined) {
      yield* messageEvents(delta);
      for (const [position, item] of (asArray(delta.tool_calls) ?? []).entries())
        this.#acceptToolCallDelta(asRecord(item), position);
    }
    // Some servers send `""` (Ollama once, SGLang 0.4) or `"null"` on every chunk before the end.
    const finish = choice?.finish_reason;
    if (typeof finish === "string" && finish !== "" && finish !== "null") {
      this.#finishReason = finish;
      yield* this.#flushToolCalls();
    }
    const usage = asRecord(record.usage);
    if (usage !== undefined) {
      yield {
        type: "usage",
        usage: {
          promptTokens: asCount(usage.prompt_tokens),
          completionTokens: asCount(usage.completion_tokens),
        },
      };
    }
  }

  /** The stream closed without `[DONE]`: fine after a finish reason, truncation otherwise. */
  *finishAtEnd(): Generator<ModelEvent> {
    if (this.#finishReason === undefined) {
      throw new ModelError(
        `The stream from ${this.#context.label} ended before the model finished (no finish_reason and no [DONE]).`,
        {
          kind: "truncated_stream",
          retryable: true,
        },
      );
    }
    yield* this.#finish(this.#finishReason);
  }

  *#finish(reason: FinishReason): Generator<ModelEvent> {
    yield* this.#flushToolCalls();
    this.#done = true;
    yield { type: "finish", reason };
  }

  #acceptToolCallDelta(item: Record<string, unknown> | undefined, position: number): void {
    if (item === undefined) return;
    const index = typeof item.index === "number" ? item.index : position;
    const id = typeof item.id === "string" ? item.id : "";
    const fn = asRecord(item.function);
    const name = typeof fn?.name === "string" ? fn.name : "";
    let call = this.#open.get(index);
    // A delta with another id and a function name at an index already in use begins another call:
    // servers that send no `index` (Gemini's OpenAI-compatible endpoint) or 0 for every call send
    // each call whole. (Some servers change the id on a call's later deltas, which bring no name.)
    if (call === undefined || (id !== "" && name !== "" && call.id !== "" && id !== call.id)) {
      call = { index, id: "", name: "", arguments: "" };
      this.#calls.push(call);
      this.#open.set(index, call);
    }
    // Ids and names arrive whole in the first delta; some servers repeat them, so the first wins.
    if (call.id === "" && typeof item.id === "string") call.id = item.id;
    if (call.name === "" && typeof fn?.name === "string") call.name = fn.name;
    if (typeof fn?.arguments === "string") call.arguments += fn.arguments;
  }

  *#flushToolCalls(): Generator<ModelEvent> {
    if (this.#callsFlushed) return;
    this.#callsFlushed = true;
    // By index, and calls that shared an index in the order they came (a stable sort).
    for (const call of [...this.#calls].sort((a, b) => a.index - b.index)) {
      if (call.name === "")
        throw new ModelError(
          `${this.#context.label} sent tool call #${call.index} without a function name.`,
          {
            kind: "malformed_stream",
            retryable: false,
          },
        );
      yield {
        type: "tool_call",
        id: call.id === "" ? syntheticCallId() : call.id,
        name: call.name,
        arguments: call.arguments === "" ? "{}" : call.arguments,
      };
    }
  }
}

/** The events of a non-streamed completion (an endpoint that ignored `stream: true`). */
export function* eventsFromCompletion(context: DecodeContext, json: unknown): Generator<ModelEvent> {
  const record = asRecord(json);
  if (record === undefined)
    throw new ModelError(`${context.label} sent a JSON body that is not an object.`, {
      kind: "malformed_stream",
      retryable: false,
    });
  if (record.error !== undefined) throw providerError(context, record.error);
  const choice = asRecord(asArray(record.choices)?.[0]);
  const message = asRecord(choice?.message);
  if (message === undefined)
    throw new ModelError(`${context.label} sent a completion without choices[0].message.`, {
      kind: "malformed_stream",
      retryable: false,
    });
  yield* messageEvents(message);
  const calls = asArray(message.tool_calls) ?? [];
  for (const item of calls) {
    const call = asRecord(item);
    const fn = asRecord(call?.function);
    // An empty name is no name, as in a stream (`#flushToolCalls`): no tool can be called by it.
    if (typeof fn?.name !== "string" || fn.name === "")
      throw new ModelError(`${context.label} sent a tool call without a function name.`, {
        kind: "malformed_stream",
        retryable: false,
      });
    const args = typeof fn.arguments === "string" && fn.arguments !== "" ? fn.arguments : "{}";
    yield {
      type: "tool_call",
      id: typeof call?.id === "string" && call.id !== "" ? call.id : syntheticCallId(),
      name: fn.name,
      arguments: args,
    };
  }
  const usage = asRecord(record.usage);
  if (usage !== undefined)
    yield {
      type: "usage",
      usage: {
        promptTokens: asCount(usage.prompt_tokens),
        completionTokens: asCount(usage.completion_tokens),
      },
    };
  const reason =
    typeof choice?.finish_reason === "string"
      ? choice.finish_reason
      : calls.length > 0
        ? "tool_calls"
        : "stop";
  yield { type: "finish", reason };
}

/**
 * The reasoning and text of one delta (or whole message), in the order the model produced them.
 *
 * Reasoning arrives as `reasoning_content` (DeepSeek, xAI, Z.ai, vLLM before 0.10), `reasoning`
 * (OpenRouter, Groq, vLLM since 0.10) or as `thinking` parts of a content array (Mistral), whose
 * `text` parts are answer text. A refusal (`refusal` deltas, OpenAI) is what the model answered,
 * so it is text too. Servers that send the same reasoning under both names are read once.
 */
function* messageEvents(message: Record<string, unknown>): Generator<ModelEvent> {
  const reasoning = nonEmpty(message.reasoning_content) ?? nonEmpty(message.reasoning);
  if (reasoning !== undefined) yield { type: "reasoning", delta: reasoning };
  const content = message.content;
  if (typeof content === "string") {
    if (content !== "") yield { type: "text", delta: content };
  } else {
    for (const item of asArray(content) ?? []) {
      const part = asRecord(item);
      if (part?.type === "text" && nonEmpty(part.text) !== undefined)
        yield { type: "text", delta: String(part.text) };
      else if (part?.type === "thinking") {
        const thinking = partsText(part.thinking);
        if (thinking !== "") yield { type: "reasoning", delta: thinking };
      }
    }
  }
  const refusal = nonEmpty(message.refusal);
  if (refusal !== undefined) yield { type: "text", delta: refusal };
}

/** The text of a `thinking` part's body: a string, or an array of `{ type: "text", text }` parts. */
function partsText(value: unknown): string {
  if (typeof value === "string") return value;
  let text = "";
  for (const item of asArray(value) ?? []) {
    const part = asRecord(item);
    if (typeof part?.text === "string") text += part.text;
  }
  return text;
}

function nonEmpty(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** An error the provider put in the stream or body (`{ error: { message, code } }` or `{ error: "..." }`). */
export function providerError(context: DecodeContext, error: unknown): ModelError {
  const record = asRecord(error);
  const message =
    typeof error === "string"
      ? error
      : typeof record?.message === "string"
        ? record.message
        : "unknown error";
  const code = record?.code ?? record?.type;
  // OpenRouter puts the HTTP status of the upstream failure in `code` (a number).
  const retryable =
    typeof code === "number"
      ? code === 408 || code === 429 || code >= 500
      : typeof code === "string" && /server|overload|rate|timeout|unavailable/i.test(code);
  const data: ModelErrorData = { kind: "provider_error", retryable };
  if (typeof code === "string" || typeof code === "number") data.providerCode = context.redact(String(code));
  return new ModelError(context.redact(`${context.label} reported an error mid-stream: ${message}`), data);
}

function syntheticCallId(): string {
  // Only for servers that omit ids; the model step journals it, so replay sees the same id.
  return `call_${globalThis.crypto.randomUUID().replace(/-/g, "").slice(0, 24)}`;
}

/** Parses JSON, undefined when it does not parse. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The value as a plain object, or undefined. */
export function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

/** The value as an array, or undefined. */
export function asArray(value: unknown): readonly unknown[] | undefined {
  return Array.isArray(value) ? value : undefined;
}

/** A token count, 0 when absent. */
export function asCount(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}
