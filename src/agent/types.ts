/**
 * The agent layer's data shapes: chat messages (the OpenAI Chat Completions shape, which Ollama,
 * llama.cpp, vLLM and OpenRouter also speak), tool definitions, and the `ModelProvider` contract
 * that `openAICompatible` and any other provider implement. Types only; `defineAgent`, providers
 * and the mock model import from here.
 */

import type { RetryPolicy } from "../core/define";

/**
 * A JSON Schema object describing a tool's arguments. The keywords below are typed; any other
 * (`anyOf`, `$ref`/`$defs`, `const`, `pattern`, `format`...) is allowed and enforced, under the
 * draft `$schema` names (4, 7, 2019-09; 2020-12 by default).
 */
export interface JsonSchema {
  type?:
    | "object"
    | "array"
    | "string"
    | "number"
    | "integer"
    | "boolean"
    | "null"
    | readonly ("object" | "array" | "string" | "number" | "integer" | "boolean" | "null")[];
  description?: string;
  properties?: Readonly<Record<string, JsonSchema>>;
  required?: readonly string[];
  items?: JsonSchema;
  enum?: readonly unknown[];
  additionalProperties?: boolean | JsonSchema;
  [keyword: string]: unknown;
}

/** A tool call as the assistant message carries it (OpenAI shape). */
export interface ToolCall {
  /**
   * The model's id for this call. Models may reuse it (`call_0` in every reply), so the agent
   * identifies a call by reply and position too (`toolCallKey`).
   */
  id: string;
  type: "function";
  function: {
    name: string;
    /** The arguments as the model wrote them: JSON text, not yet parsed or validated. */
    arguments: string;
  };
  /**
   * What the provider attached to the call, by provider (Gemini's `thoughtSignature`, which
   * Gemini 3 wants back with the call in the next request): journaled with it, and handed back
   * to the model with it by `aiSdkModel`. The OpenAI-compatible provider never sends it.
   */
  providerMetadata?: Record<string, Record<string, unknown>>;
}

/** The system prompt. */
export interface SystemMessage {
  role: "system";
  content: string;
}

/** Text in a user message made of parts. */
export interface TextPart {
  type: "text";
  text: string;
}

/**
 * An image in a user message, as the Chat Completions API takes it: an `https:` URL the model's
 * servers fetch, or a `data:image/...;base64,` URL carrying the image itself (which then sits in
 * the fiber's input, so mind the runtime's `maxPayloadBytes`).
 */
export interface ImagePart {
  type: "image_url";
  image_url: {
    url: string;
    /** How closely the model looks (OpenAI; others ignore it). */
    detail?: "auto" | "low" | "high";
  };
}

/** One part of a user message's content. */
export type UserContentPart = TextPart | ImagePart;

/**
 * A message from the person using the agent: text, or parts (text and images) sent to the model
 * as they are. Models without vision answer a request with images with an error (`model_error`).
 */
export interface UserMessage {
  role: "user";
  content: string | UserContentPart[];
}

/** A model turn: text, tool calls, or both. */
export interface AssistantMessage {
  role: "assistant";
  content: string | null;
  tool_calls?: ToolCall[];
  /**
   * The model's reasoning ("thinking") before this answer, as streamed in `reasoning_content` /
   * `reasoning` deltas or Mistral's thinking parts. Kept for readers and the journal; providers
   * never send it back to the model (DeepSeek, for one, rejects a request that carries it).
   */
  reasoning?: string;
  /**
   * How `reasoning` divides into the provider's reasoning blocks, in order, with what the
   * provider attached to each: Anthropic's thinking `signature` or its redacted thinking, which
   * Anthropic wants back, unchanged, with a reply that called tools. Kept only when some block
   * has such metadata; `aiSdkModel` hands the blocks back as reasoning parts, the
   * OpenAI-compatible provider never sends them.
   */
  reasoningParts?: ReasoningPart[];
}

/** One reasoning block of a reply: its length in `AssistantMessage.reasoning`, and the provider's metadata for it. */
export interface ReasoningPart {
  /** UTF-16 code units of `reasoning` this block takes, after the blocks before it. */
  length: number;
  providerMetadata?: Record<string, Record<string, unknown>>;
}

/** The result of one tool call, sent back to the model. */
export interface ToolMessage {
  role: "tool";
  /** The `id` of the `ToolCall` this answers. */
  tool_call_id: string;
  content: string;
}

/** One message of a conversation, discriminated on `role`. */
export type ChatMessage = SystemMessage | UserMessage | AssistantMessage | ToolMessage;

/** What a model is told about a tool. */
export interface ToolSpec {
  /** Unique within an agent; `^[a-zA-Z0-9_-]{1,64}$` is what most providers accept. */
  name: string;
  description: string;
  /** JSON Schema of the arguments object. */
  parameters: JsonSchema;
}

/** What a tool's `execute` receives besides its arguments. */
export interface ToolContext {
  /**
   * `<fiberId>:m<turn>#<index>:<toolCallId>` (`toolCallKey`): the same on every re-run of this
   * call, and different for every other tool call of every agent fiber in the store, even when
   * the model reuses its tool-call ids. Pass it to side-effecting APIs.
   */
  idempotencyKey: string;
  /** 1 on the call's first run; keeps counting across crashes and retries (the step's `attempt`). */
  attempt: number;
  /**
   * True when an earlier run of this call was cut off by a crash or stop, or ran past `timeoutMs`:
   * it may have had its effect (a late run that ignores its signal may even still be running).
   */
  interrupted: boolean;
  /** Aborted when the fiber is cancelled. */
  signal: AbortSignal;
}

/**
 * A tool the agent may call.
 *
 * Failure semantics: `execute` runs as a journaled step, so after a crash it may run again for
 * the same call with the same `idempotencyKey`; make side effects idempotent on that key.
 *
 * @example
 * const calculator: ToolDefinition<{ expression: string }, number> = {
 *   name: "calculator",
 *   description: "Evaluates an arithmetic expression.",
 *   parameters: { type: "object", properties: { expression: { type: "string" } }, required: ["expression"] },
 *   execute: ({ expression }) => evaluate(expression),
 * };
 */
export interface ToolDefinition<Args = Record<string, unknown>, Result = unknown> extends ToolSpec {
  /** When true, the fiber waits durably for a person to approve or deny each call before `execute` runs. */
  requiresApproval?: boolean;
  /**
   * Deadline of each attempt of `execute`, in ms (default: the agent's `toolTimeoutMs`, else
   * none). A late attempt has its `signal` aborted with a `TimeoutError` and is retried (the retry
   * gets `interrupted: true`: an `execute` that ignores its signal is still running beside it);
   * once the retries are spent the model is told the tool did not finish in time, and the loop
   * goes on.
   */
  timeoutMs?: number;
  /** Retries of this tool, over the agent's `toolRetry` (default 3 attempts, exponential from 500 ms). */
  retry?: RetryPolicy;
  execute(args: Args, context: ToolContext): Result | Promise<Result>;
}

/** Token counts of one model call, as the provider reported them. */
export interface ModelUsage {
  promptTokens: number;
  completionTokens: number;
}

/** Why the model stopped: the OpenAI values, or whatever else a provider reports. */
export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter" | (string & {});

/**
 * One event of a streamed model call. `tool_call` events arrive complete (argument deltas already
 * assembled); `finish` is always last.
 */
export type ModelEvent =
  | { type: "text"; delta: string }
  /** A piece of the model's reasoning ("thinking"), streamed before or between pieces of text. */
  | { type: "reasoning"; delta: string }
  /**
   * The end of one reasoning block (a provider's thinking block): the reasoning streamed since
   * the previous block's end, with what the provider attached to it (see `AssistantMessage.reasoningParts`).
   */
  | { type: "reasoning_end"; providerMetadata?: Record<string, Record<string, unknown>> }
  | {
      type: "tool_call";
      id: string;
      name: string;
      arguments: string;
      /** See `ToolCall.providerMetadata`. */
      providerMetadata?: Record<string, Record<string, unknown>>;
    }
  | { type: "usage"; usage: ModelUsage }
  | { type: "finish"; reason: FinishReason };

/** One model call. */
export interface ModelRequest {
  messages: readonly ChatMessage[];
  tools: readonly ToolSpec[];
  signal?: AbortSignal;
  /**
   * Assistant text already streamed by an interrupted attempt: the provider asks the model to
   * continue it and streams only the remainder. Only valid when `supportsContinuation` is true.
   */
  prefix?: string;
  /** Overrides the provider's default model for this call. */
  model?: string;
  /**
   * Called before the provider waits on purpose (a `Retry-After`, retry backoff) for `delayMs`,
   * so a caller's no-progress timer does not count the wait as a stall.
   */
  onRetryWait?: (delayMs: number) => void;
  /**
   * Called when the provider hears from the model without an event to yield (bytes of the
   * response, a keep-alive comment, a delta with no text), so a caller's no-progress timer knows
   * the model is alive while it thinks.
   */
  onActivity?: () => void;
  /**
   * Called when the model streamed content that is not an event yet (a tool call's arguments as
   * they arrive, assembled into one `tool_call` event at its end): progress, as an event is.
   */
  onProgress?: () => void;
}

/**
 * A chat model the agent loop can stream from.
 *
 * Failure semantics: `stream` throws a `ModelError` (`model_error`, with `retryable`) for
 * transport, HTTP and protocol failures, and the signal's reason when the request is aborted.
 * Events already yielded before a failure stay valid: a caller that supports continuation passes
 * the text it received as `prefix` on the next attempt.
 */
export interface ModelProvider {
  /** A short name for logs and the inspector (never a credential). */
  readonly name: string;
  /** The default model id. */
  readonly model: string;
  /** True when `prefix` continuation is supported, so recovery can `continue` instead of `retry`. */
  readonly supportsContinuation: boolean;
  /**
   * False when a reply cut after reasoning must be regenerated rather than continued (default
   * true): the prefix carries only the text, and a model that needs its reasoning back with it
   * (Anthropic's signed thinking) refuses a prefix without it.
   */
  readonly continuesAfterReasoning?: boolean;
  stream(request: ModelRequest): AsyncIterable<ModelEvent>;
}
