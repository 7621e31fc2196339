/**
 * `aiSdkModel`: any Vercel AI SDK language model (`@ai-sdk/openai`, `@ai-sdk/anthropic`,
 * `@ai-sdk/openai-compatible`, community providers...) as a Fiberline `ModelProvider`, so
 * `defineAgent({ model: aiSdkModel(anthropic("claude-sonnet-4-5")) })` runs that model as the
 * agent's durable model step. Speaks the provider specification's `doStream` (v3, v4 of AI SDK
 * 7 providers and v2 of AI SDK 5 ones). Used by agent definitions in a Service Worker or any other host.
 */

import {
  APICallError,
  type LanguageModelV2,
  type LanguageModelV2StreamPart,
  type LanguageModelV3,
  type LanguageModelV3CallOptions,
  type LanguageModelV3FinishReason,
  type LanguageModelV3Message,
  type LanguageModelV3StreamPart,
  type LanguageModelV3Usage,
  type SharedV3ProviderOptions,
} from "@ai-sdk/provider";
import { redactUrlCredentials, scrubError } from "../agent/credentials";
import { ModelError, type ModelErrorData } from "../agent/errors";
import { parseRetryAfter } from "../agent/http-retry";
import type {
  ChatMessage,
  FinishReason,
  ModelEvent,
  ModelProvider,
  ModelRequest,
  ModelUsage,
  ToolSpec,
  UserMessage,
} from "../agent/types";
import { InvalidInputError } from "../core/errors";

/**
 * A language model of provider specification v4 (AI SDK 7), as far as `aiSdkModel` uses it: v4's
 * call options are v3's plus optional settings, and its stream parts are v3's plus parts the
 * agent has no use for (`ping`, custom content, reasoning files), so it is called as a v3 model.
 */
export interface LanguageModelV4Like {
  readonly specificationVersion: "v4";
  readonly provider: string;
  readonly modelId: string;
  /** Typed `never` here so that any v4 model fits; it is called with v3 call options (see above). */
  doStream(options: never): PromiseLike<{ stream: ReadableStream<{ type: string }> }>;
}

/** A language model of the AI SDK's provider specification, v4 (AI SDK 7), v3 (AI SDK 6) or v2 (AI SDK 5). */
export type AiSdkLanguageModel = LanguageModelV4Like | LanguageModelV3 | LanguageModelV2;

/** Call settings passed through to every `doStream` call (not the prompt, tools or signal: the agent owns those). */
export type AiSdkCallSettings = Omit<LanguageModelV3CallOptions, "prompt" | "tools" | "abortSignal">;

/** Options of {@link aiSdkModel}. */
export interface AiSdkModelOptions {
  /**
   * `"assistant-prefix"`: the model continues a trailing assistant message (llama.cpp, Ollama,
   * vLLM and the mock model behind `@ai-sdk/openai-compatible`; Anthropic's prefill), so a reply
   * cut by a crash continues where it stopped (one cut after reasoning is regenerated: the
   * prefix carries only text). `"none"` (default): the reply is regenerated after a
   * `message.reset` chunk instead.
   */
  continuation?: "assistant-prefix" | "none";
  /** Settings for every call, e.g. `{ temperature: 0, maxOutputTokens: 1024, providerOptions }`. */
  settings?: AiSdkCallSettings;
  /** The provider's name for logs and the inspector (default: the model's `provider`). */
  name?: string;
}

/**
 * A `ModelProvider` over an AI SDK language model's `doStream`.
 *
 * Failure semantics: provider errors become `ModelError` (`model_error`): an `APICallError`
 * keeps its `isRetryable`, `statusCode` and `Retry-After`; an `error` part in the stream and a
 * stream that ends before its `finish` part are retryable (the model step retries them, and
 * continues or regenerates the reply as `continuation` allows). An abort throws the signal's
 * reason. Tool inputs stream inside the provider and reach the agent as complete calls.
 *
 * @example
 * import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
 * const local = createOpenAICompatible({ name: "ollama", baseURL: "http://localhost:11434/v1" });
 * export const assistant = defineAgent({
 *   name: "assistant",
 *   model: aiSdkModel(local.chatModel("llama3.2"), { continuation: "assistant-prefix" }),
 * });
 */
export function aiSdkModel(model: AiSdkLanguageModel, options: AiSdkModelOptions = {}): ModelProvider {
  const version: unknown = model.specificationVersion;
  if (version !== "v4" && version !== "v3" && version !== "v2") {
    throw new InvalidInputError(
      "invalid_argument",
      `aiSdkModel: the model speaks provider specification "${String(version)}"; Fiberline supports "v4" (AI SDK 7), "v3" (AI SDK 6) and "v2" (AI SDK 5).`,
    );
  }
  const supportsContinuation = options.continuation === "assistant-prefix";
  return {
    name: options.name ?? model.provider,
    model: model.modelId,
    supportsContinuation,
    // The prefix goes back as text only; the reasoning parts' metadata (Anthropic's signatures)
    // cannot ride with it, and Anthropic refuses a prefill whose thinking is missing.
    continuesAfterReasoning: false,
    stream(request: ModelRequest): AsyncIterable<ModelEvent> {
      const prefix = request.prefix ?? "";
      if (prefix !== "" && !supportsContinuation) {
        throw new InvalidInputError(
          "invalid_argument",
          `aiSdkModel(${model.modelId}) was created without continuation "assistant-prefix", so it cannot continue a prefix; check supportsContinuation before passing prefix.`,
        );
      }
      const prompt = toPrompt(request.messages);
      // Sent without its trailing whitespace, which Anthropic refuses in a prefill (its AI SDK
      // provider trims it): the model then writes it again, and the stream leaves it out.
      const sent = prefix.trimEnd();
      if (sent !== "") prompt.push({ role: "assistant", content: [{ type: "text", text: sent }] });
      const call: LanguageModelV3CallOptions = {
        ...options.settings,
        prompt,
        ...(request.tools.length > 0 ? { tools: request.tools.map(toFunctionTool) } : {}),
        ...(request.signal ? { abortSignal: request.signal } : {}),
      };
      const events = streamModel(model, call, request);
      return sent === prefix ? events : withoutRepeated(prefix.slice(sent.length), events);
    },
  };
}

/**
 * `events`, less the start of the continued text that repeats `whitespace` (the prefix's trailing
 * whitespace, which the reader already has): " 42" after "The answer is " becomes "42".
 */
async function* withoutRepeated(
  whitespace: string,
  events: AsyncIterable<ModelEvent>,
): AsyncGenerator<ModelEvent> {
  let matched = 0;
  let done = false;
  for await (const event of events) {
    if (done || event.type !== "text") {
      yield event;
      continue;
    }
    let start = 0;
    while (
      start < event.delta.length &&
      matched < whitespace.length &&
      event.delta[start] === whitespace[matched]
    ) {
      start++;
      matched++;
    }
    // Past the repeated whitespace (or text that does not repeat it): the rest goes through.
    if (start < event.delta.length || matched === whitespace.length) done = true;
    if (start < event.delta.length) yield { type: "text", delta: event.delta.slice(start) };
  }
}

async function* streamModel(
  model: AiSdkLanguageModel,
  call: LanguageModelV3CallOptions,
  { signal, onActivity, onProgress }: Pick<ModelRequest, "signal" | "onActivity" | "onProgress">,
): AsyncGenerator<ModelEvent, void, undefined> {
  signal?.throwIfAborted();
  // A model that ignores its abortSignal must not hold the call: waiting for its stream, and
  // each read of it, loses to the abort (a cancel, or the model step's no-progress watchdog,
  // whose abort is then retried as a stall).
  const aborted =
    signal === undefined
      ? undefined
      : new Promise<never>((_, reject) => {
          if (signal.aborted) reject(signal.reason);
          else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        });
  aborted?.catch(() => {}); // seen by the races below
  let stream: ReadableStream<LanguageModelV3StreamPart | LanguageModelV2StreamPart>;
  try {
    // The v2 and v4 call options are the v3 ones for everything the agent sends (text, tool
    // calls, function tools), and the v4 parts it reads are shaped as in v3.
    const started: Promise<{ stream: unknown }> = Promise.resolve(
      model.specificationVersion === "v2"
        ? model.doStream(call as unknown as Parameters<LanguageModelV2["doStream"]>[0])
        : model.specificationVersion === "v4"
          ? model.doStream(call as never)
          : model.doStream(call),
    );
    if (aborted !== undefined) {
      // A stream that comes after the abort is cancelled, not left open.
      started.then(
        (late) => {
          if (signal?.aborted) (late.stream as ReadableStream).cancel().catch(() => {});
        },
        () => {},
      );
    }
    const result = await (aborted === undefined ? started : Promise.race([started, aborted]));
    stream = result.stream as ReadableStream<LanguageModelV3StreamPart | LanguageModelV2StreamPart>;
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw toModelError(model, error);
  }
  const reader = stream.getReader();
  let done = false;
  /** What the provider attached to each open reasoning block (Anthropic's signature), by id. */
  const reasoningMetadata = new Map<string, ProviderMetadata>();
  try {
    for (;;) {
      let next: ReadableStreamReadResult<LanguageModelV3StreamPart | LanguageModelV2StreamPart>;
      try {
        next = await (aborted === undefined ? reader.read() : Promise.race([reader.read(), aborted]));
      } catch (error) {
        if (signal?.aborted) throw signal.reason; // the reader is cancelled below
        done = true;
        throw toModelError(model, error, "The stream broke off");
      }
      if (signal?.aborted) throw signal.reason;
      if (next.done) {
        done = true;
        throw new ModelError(`${describeModel(model)} ended its stream before the finish part.`, {
          kind: "truncated_stream",
          retryable: true,
        });
      }
      const part = next.value;
      // The provider's own parts are signs of life; any other is the model's output (a tool
      // call's streamed input among them), so progress.
      if (part.type === "stream-start" || part.type === "response-metadata" || part.type === "raw")
        onActivity?.();
      else onProgress?.();
      switch (part.type) {
        case "text-delta":
          if (part.delta !== "") yield { type: "text", delta: part.delta };
          break;
        case "reasoning-start":
          reasoningMetadata.set(part.id, merged(undefined, part.providerMetadata));
          break;
        case "reasoning-delta":
          // Anthropic sends a block's signature as a delta with no text.
          if (part.providerMetadata !== undefined)
            reasoningMetadata.set(part.id, merged(reasoningMetadata.get(part.id), part.providerMetadata));
          if (part.delta !== "") yield { type: "reasoning", delta: part.delta };
          break;
        case "reasoning-end": {
          const metadata = signedOnly(merged(reasoningMetadata.get(part.id), part.providerMetadata));
          reasoningMetadata.delete(part.id);
          yield {
            type: "reasoning_end",
            ...(Object.keys(metadata).length === 0 ? {} : { providerMetadata: metadata }),
          };
          break;
        }
        case "tool-call":
          // Provider-executed tools (web search run by the provider) are not the agent's to run.
          if (part.providerExecuted !== true)
            yield {
              type: "tool_call",
              id: part.toolCallId,
              name: part.toolName,
              arguments: part.input,
              // Given back with the call in the next prompt (Gemini 3's thought signature).
              ...(part.providerMetadata === undefined ? {} : { providerMetadata: part.providerMetadata }),
            };
          break;
        case "error":
          throw toModelError(model, part.error, "The provider reported an error");
        case "finish": {
          const usage = toUsage(part.usage);
          if (usage) yield { type: "usage", usage };
          const reason = toFinishReason(part.finishReason);
          if (reason === "error")
            throw new ModelError(`${describeModel(model)} finished with an error.`, {
              kind: "provider_error",
              retryable: true,
            });
          yield { type: "finish", reason };
          return;
        }
        default:
          // stream-start, response-metadata, text start and end, streamed tool inputs
          // (the tool-call part carries them whole), sources, files, raw: nothing for the agent.
          break;
      }
    }
  } finally {
    if (!done) reader.cancel().catch(() => {});
  }
}

/** The agent's OpenAI-shaped messages as the provider specification's prompt. */
export function toPrompt(messages: readonly ChatMessage[]): LanguageModelV3Message[] {
  // Tool results name their call by id only; the prompt also wants the tool's name.
  const toolNames = new Map<string, string>();
  const prompt: LanguageModelV3Message[] = [];
  for (const message of messages) {
    switch (message.role) {
      case "system":
        prompt.push({ role: "system", content: message.content });
        break;
      case "user":
        prompt.push({ role: "user", content: userContent(message.content) });
        break;
      case "assistant": {
        const content: Extract<LanguageModelV3Message, { role: "assistant" }>["content"] = [];
        // The reasoning blocks the provider signed, back unchanged and first (Anthropic checks
        // them with tool use); reasoning without metadata stays in the journal only.
        let at = 0;
        for (const part of message.reasoningParts ?? []) {
          const text = (message.reasoning ?? "").slice(at, at + part.length);
          at += part.length;
          // Filtered here too: a journal written by an older version may hold other metadata.
          const signed = signedOnly(part.providerMetadata ?? {});
          if (Object.keys(signed).length > 0)
            content.push({ type: "reasoning", text, providerOptions: signed as SharedV3ProviderOptions });
        }
        if (message.content) content.push({ type: "text", text: message.content });
        for (const call of message.tool_calls ?? []) {
          toolNames.set(call.id, call.function.name);
          content.push({
            type: "tool-call",
            toolCallId: call.id,
            toolName: call.function.name,
            input: parseOrKeep(call.function.arguments),
            // What the provider attached to the call, back as its options (the AI SDK's mapping).
            ...(call.providerMetadata === undefined
              ? {}
              : { providerOptions: call.providerMetadata as SharedV3ProviderOptions }),
          });
        }
        prompt.push({ role: "assistant", content });
        break;
      }
      case "tool":
        prompt.push({
          role: "tool",
          content: [
            {
              type: "tool-result",
              toolCallId: message.tool_call_id,
              toolName: toolNames.get(message.tool_call_id) ?? "unknown",
              output: { type: "text", value: message.content },
            },
          ],
        });
        break;
    }
  }
  return prompt;
}

/** A user message's text and images as prompt parts: an image is a file part (data URL or URL). */
function userContent(
  content: UserMessage["content"],
): Extract<LanguageModelV3Message, { role: "user" }>["content"] {
  if (typeof content === "string") return [{ type: "text", text: content }];
  return content.map((part) => {
    if (part.type === "text") return { type: "text", text: part.text };
    const url = part.image_url.url;
    const data = /^data:([^;,]+)(;base64)?,(.*)$/s.exec(url);
    if (data?.[2] !== undefined)
      return { type: "file", mediaType: data[1] ?? "image/*", data: data[3] ?? "" };
    return { type: "file", mediaType: "image/*", data: new URL(url) };
  });
}

function toFunctionTool(tool: ToolSpec): NonNullable<LanguageModelV3CallOptions["tools"]>[number] {
  return {
    type: "function",
    name: tool.name,
    description: tool.description,
    inputSchema: tool.parameters as Extract<
      NonNullable<LanguageModelV3CallOptions["tools"]>[number],
      { type: "function" }
    >["inputSchema"],
  };
}

type ProviderMetadata = Record<string, Record<string, unknown>>;

/**
 * The reasoning metadata a provider wants back with its reasoning, by provider: the signatures
 * and redacted thinking of Claude (Anthropic's API, and Bedrock's). Other metadata is not handed
 * back: OpenAI's Responses API names its reasoning items (`itemId`), which it accepts back only
 * beside the text items that followed them.
 */
const SIGNED_REASONING: Readonly<Record<string, readonly string[]>> = {
  anthropic: ["signature", "redactedData"],
  bedrock: ["signature", "redactedData"],
};

function signedOnly(metadata: ProviderMetadata): ProviderMetadata {
  const out: ProviderMetadata = {};
  for (const [provider, keys] of Object.entries(SIGNED_REASONING)) {
    const values = metadata[provider];
    if (values === undefined) continue;
    const kept = Object.fromEntries(
      keys.filter((key) => values[key] !== undefined).map((key) => [key, values[key]]),
    );
    if (Object.keys(kept).length > 0) out[provider] = kept;
  }
  return out;
}

/** `base` with `more` merged in, provider by provider. */
function merged(base: ProviderMetadata | undefined, more: unknown): ProviderMetadata {
  const out: ProviderMetadata = { ...base };
  if (typeof more !== "object" || more === null) return out;
  for (const [provider, values] of Object.entries(more as ProviderMetadata))
    out[provider] = { ...out[provider], ...values };
  return out;
}

function parseOrKeep(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const FINISH_REASONS: Readonly<Record<string, FinishReason>> = {
  stop: "stop",
  length: "length",
  "content-filter": "content_filter",
  "tool-calls": "tool_calls",
  error: "error",
};

/** v3 `{ unified, raw }` or v2's string, as the agent's OpenAI-style reason. */
function toFinishReason(reason: LanguageModelV3FinishReason | string): FinishReason {
  const unified = typeof reason === "string" ? reason : reason.unified;
  const known = FINISH_REASONS[unified];
  if (known !== undefined) return known;
  return (typeof reason === "string" ? undefined : reason.raw) ?? unified;
}

/** v3 nested or v2 flat token counts; `undefined` when the provider reported none. */
function toUsage(
  usage: LanguageModelV3Usage | LanguageModelV2StreamUsage | undefined,
): ModelUsage | undefined {
  if (usage === undefined) return undefined;
  const prompt = typeof usage.inputTokens === "number" ? usage.inputTokens : usage.inputTokens?.total;
  const completion = typeof usage.outputTokens === "number" ? usage.outputTokens : usage.outputTokens?.total;
  if (prompt === undefined && completion === undefined) return undefined;
  return { promptTokens: prompt ?? 0, completionTokens: completion ?? 0 };
}

type LanguageModelV2StreamUsage = Extract<LanguageModelV2StreamPart, { type: "finish" }>["usage"];

/**
 * `error` as a `ModelError`, classified retryable or not. The message and the cause have any URL
 * credentials taken out: they reach the stream (`message.retry`) and the journal, and a fetch
 * error quotes the URL it was given (`http://user:password@host/v1`).
 */
function toModelError(model: AiSdkLanguageModel, error: unknown, what = "The call failed"): ModelError {
  if (error instanceof ModelError) return error;
  const message = redactUrlCredentials(error instanceof Error ? error.message : String(error));
  const cause = scrubbed(error);
  if (APICallError.isInstance(error)) {
    const data: ModelErrorData =
      error.statusCode === undefined
        ? { kind: "network", retryable: error.isRetryable }
        : { kind: "http_status", retryable: error.isRetryable, status: error.statusCode };
    const retryAfterMs = error.responseHeaders
      ? parseRetryAfter(new Headers(error.responseHeaders))
      : undefined;
    if (retryAfterMs !== undefined) data.retryAfterMs = retryAfterMs;
    return new ModelError(`${describeModel(model)}: ${message}`, data, { cause });
  }
  // A setting or a request the model refuses: the same call meets it again, so no retry.
  const name = (error as { name?: unknown } | null)?.name;
  if (typeof name === "string" && PERMANENT_ERRORS.has(name))
    return new ModelError(
      `${what} (${describeModel(model)}): ${message}`,
      { kind: "provider_error", retryable: false },
      { cause },
    );
  // An error part or a broken stream: the same call may well succeed on the next attempt.
  return new ModelError(
    `${what} (${describeModel(model)}): ${message}`,
    { kind: "provider_error", retryable: true },
    { cause },
  );
}

/** `error` itself, or a copy with URL credentials taken out of its messages and causes when it quotes any. */
function scrubbed(error: unknown): unknown {
  const texts: string[] = [];
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++)
    texts.push(e.message, e.stack ?? "");
  return texts.every((text) => redactUrlCredentials(text) === text)
    ? error
    : scrubError(error, redactUrlCredentials);
}

/** The AI SDK's errors (by `name`) that no retry of the same call gets past. */
const PERMANENT_ERRORS = new Set([
  "AI_InvalidArgumentError",
  "AI_InvalidPromptError",
  "AI_LoadAPIKeyError",
  "AI_LoadSettingError",
  "AI_NoSuchModelError",
  "AI_UnsupportedFunctionalityError",
]);

function describeModel(model: AiSdkLanguageModel): string {
  return `${model.provider} model ${model.modelId}`;
}
