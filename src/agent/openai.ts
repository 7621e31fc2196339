/**
 * The OpenAI-compatible Chat Completions provider: streams `POST {baseUrl}/chat/completions` over
 * `fetch` and turns the chunks into `ModelEvent`s. Works against OpenAI, Ollama, llama.cpp
 * server, vLLM, OpenRouter and the Fiberline mock model. Used by `defineAgent` model steps.
 */

import { InvalidInputError } from "../core/errors";
import { sleep } from "../core/sleep";
import { SseParser } from "../core/sse";
import { collectSecrets, redact, scrubError, splitCredentials } from "./credentials";
import { ModelError, type ModelErrorData } from "./errors";
import { backoffDelay, parseRetryAfter } from "./http-retry";
import { asRecord, ChunkAssembler, eventsFromCompletion, parseJson } from "./openai-chunks";
import type { ChatMessage, ModelEvent, ModelProvider, ModelRequest, ToolSpec } from "./types";

/** Options of {@link openAICompatible}. */
export interface OpenAICompatibleOptions {
  /**
   * The API root, e.g. `https://api.openai.com/v1`, `http://localhost:11434/v1`, `/mock-model/v1`.
   * A user name and password in it (`https://user:pass@host/v1`) are taken out of the URL, sent
   * as `Authorization: Basic`, and redacted like `apiKey`; combined with `apiKey` or an
   * `authorization` header they are rejected (`invalid_argument`).
   */
  baseUrl: string;
  /** Sent only as `Authorization: Bearer <apiKey>`; never stored on the provider or put in any event or error. */
  apiKey?: string;
  /** The default model id. */
  model: string;
  /** Extra request headers. Values of headers named like a credential are redacted from error messages too. */
  headers?: Readonly<Record<string, string>>;
  /** The `fetch` to use (default: the global one, called unbound). */
  fetch?: typeof fetch;
  /** Retries of a call that failed before its response body was read (429, 408, 409, 5xx, network). Default 3. */
  maxRetries?: number;
  /** Backoff between those retries when the endpoint sends no `Retry-After`. Default 500 ms doubling up to 8 s, with jitter. */
  backoff?: { initialDelayMs?: number; maxDelayMs?: number };
  /** A `Retry-After` longer than this is not waited for: the call fails with `retryAfterMs` set instead. Default 60 s. */
  maxRetryAfterMs?: number;
  /** Fail a call (retryably) when no byte arrives for this long. Default 120 s; 0 disables. */
  idleTimeoutMs?: number;
  /**
   * `"assistant-prefix"`: the endpoint continues a trailing assistant message (llama.cpp, Ollama,
   * the mock model; vLLM with `continuationBody`). `"none"` (default): it does not, as OpenAI's
   * own API, which would start a new reply instead.
   */
  continuation?: "assistant-prefix" | "none";
  /** Fields merged into every request body (e.g. `{ temperature: 0 }`). */
  extraBody?: Readonly<Record<string, unknown>>;
  /** Fields merged into continuation requests only (vLLM: `{ continue_final_message: true, add_generation_prompt: false }`). */
  continuationBody?: Readonly<Record<string, unknown>>;
  /** Provider name for logs and the inspector. Default `"openai-compatible"`. */
  name?: string;
}

/**
 * A `ModelProvider` for any OpenAI-compatible Chat Completions endpoint, streaming.
 *
 * Failure semantics: 429, 408, 409, 5xx and network errors are retried (honouring `Retry-After`
 * / `retry-after-ms`, else bounded exponential backoff) only until the response body starts
 * being read, so no event is ever yielded twice. A stream cut after the finish reason (before
 * usage or `[DONE]`) ends normally with `finish`: the reply was complete. Other later failures,
 * malformed or truncated streams, and non-2xx bodies throw `ModelError` with `retryable`, its
 * message and causes redacted of every credential; an abort throws the signal's reason.
 *
 * @example
 * const model = openAICompatible({ baseUrl: "/mock-model/v1", model: "mock", continuation: "assistant-prefix" });
 * for await (const ev of model.stream({ messages, tools: [] })) if (ev.type === "text") show(ev.delta);
 */
export function openAICompatible(options: OpenAICompatibleOptions): ModelProvider {
  const supportsContinuation = options.continuation === "assistant-prefix";
  const { baseUrl, basicAuth, urlSecrets } = splitCredentials(options.baseUrl);
  const endpoint = `${baseUrl.replace(/\/+$/, "")}/chat/completions`;
  // The key lives only in this closure: the returned object has nothing to serialize it from.
  const { apiKey } = options;
  const hasAuthHeader = Object.keys(options.headers ?? {}).some(
    (name) => name.toLowerCase() === "authorization",
  );
  if (basicAuth !== undefined && ((apiKey !== undefined && apiKey !== "") || hasAuthHeader)) {
    throw new InvalidInputError(
      "invalid_argument",
      "openAICompatible: baseUrl carries a user name and password, and apiKey or an authorization header is set too. Put the credentials in one place.",
    );
  }
  const secrets = collectSecrets(apiKey, options.headers, urlSecrets);
  const settings: CallSettings = {
    endpoint,
    label: endpointLabel(endpoint),
    fetch: options.fetch ?? ((input, init) => globalThis.fetch(input, init)),
    maxRetries: Math.max(0, options.maxRetries ?? 3),
    initialDelayMs: options.backoff?.initialDelayMs ?? 500,
    maxDelayMs: options.backoff?.maxDelayMs ?? 8_000,
    maxRetryAfterMs: options.maxRetryAfterMs ?? 60_000,
    idleTimeoutMs: options.idleTimeoutMs ?? 120_000,
    redact: (text) => redact(text, secrets),
    headers: () => {
      const headers: Record<string, string> = {
        "content-type": "application/json",
        accept: "text/event-stream",
        ...options.headers,
      };
      if (apiKey !== undefined && apiKey !== "") headers.authorization = `Bearer ${apiKey}`;
      else if (basicAuth !== undefined) headers.authorization = `Basic ${basicAuth}`;
      return headers;
    },
  };
  return {
    name: options.name ?? "openai-compatible",
    model: options.model,
    supportsContinuation,
    stream(request: ModelRequest): AsyncIterable<ModelEvent> {
      const prefix = request.prefix ?? "";
      if (prefix !== "" && !supportsContinuation) {
        throw new InvalidInputError(
          "invalid_argument",
          `This provider was created with continuation "none", so it cannot continue a prefix; check supportsContinuation before passing prefix.`,
        );
      }
      const body: Record<string, unknown> = {
        model: request.model ?? options.model,
        messages: [
          ...request.messages.map(toWireMessage),
          ...(prefix === "" ? [] : [{ role: "assistant", content: prefix } satisfies ChatMessage]),
        ],
        stream: true,
        stream_options: { include_usage: true },
        ...(request.tools.length > 0 ? { tools: request.tools.map(toWireTool) } : {}),
        ...options.extraBody,
        ...(prefix === "" ? {} : options.continuationBody),
      };
      return streamCompletion(settings, JSON.stringify(body), request);
    },
  };
}

interface CallSettings {
  endpoint: string;
  label: string;
  fetch: (input: string, init: RequestInit) => Promise<Response>;
  maxRetries: number;
  initialDelayMs: number;
  maxDelayMs: number;
  maxRetryAfterMs: number;
  idleTimeoutMs: number;
  redact: (text: string) => string;
  headers: () => Record<string, string>;
}

/**
 * A message as the endpoint takes it: an assistant's `reasoning` stays in the journal and is not
 * sent back (DeepSeek answers 400 to a request that carries reasoning, others bill it as input).
 */
function toWireMessage(message: ChatMessage): ChatMessage {
  if (message.role !== "assistant") return message;
  const calls = message.tool_calls;
  // Another provider's metadata on a call (`ToolCall.providerMetadata`) is not this endpoint's.
  const bare = calls?.some((call) => call.providerMetadata !== undefined)
    ? calls.map(({ providerMetadata: _other, ...call }) => call)
    : calls;
  if (message.reasoning === undefined && message.reasoningParts === undefined && bare === calls)
    return message;
  const { reasoning: _kept, reasoningParts: _signed, ...wire } = message;
  return bare === undefined ? wire : { ...wire, tool_calls: bare };
}

function toWireTool(tool: ToolSpec): unknown {
  return {
    type: "function",
    function: { name: tool.name, description: tool.description, parameters: tool.parameters },
  };
}

/**
 * Aborts one attempt when the caller aborts, or when the network keeps it waiting longer than the
 * idle timeout. Only time spent waiting on the network counts (armed around `fetch` and each
 * `read`), never time the consumer spends between pulls.
 */
class AttemptGuard {
  readonly controller = new AbortController();
  #stalled = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #idleMs: number;
  readonly #outer: AbortSignal | undefined;
  readonly #onOuterAbort = (): void => this.controller.abort(this.#outer?.reason);

  constructor(outer: AbortSignal | undefined, idleMs: number) {
    this.#outer = outer;
    this.#idleMs = idleMs;
    outer?.addEventListener("abort", this.#onOuterAbort, { once: true });
  }

  /** True when the idle timeout, not the caller, aborted the attempt. */
  get stalled(): boolean {
    return this.#stalled;
  }

  /** Waits on `operation` under the idle timeout. */
  async wait<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#idleMs > 0) {
      this.#timer = setTimeout(() => {
        this.#stalled = true;
        this.controller.abort(new Error("idle timeout"));
      }, this.#idleMs);
    }
    try {
      return await operation();
    } finally {
      clearTimeout(this.#timer);
    }
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#outer?.removeEventListener("abort", this.#onOuterAbort);
  }
}

async function* streamCompletion(
  settings: CallSettings,
  body: string,
  request: Pick<ModelRequest, "signal" | "onRetryWait" | "onActivity" | "onProgress">,
): AsyncGenerator<ModelEvent, void, undefined> {
  const { signal, onRetryWait } = request;
  const wait = (ms: number): Promise<void> => {
    onRetryWait?.(ms);
    return sleep(ms, signal);
  };
  signal?.throwIfAborted();
  for (let attempt = 0; ; attempt++) {
    const guard = new AttemptGuard(signal, settings.idleTimeoutMs);
    let response: Response;
    try {
      response = await guard.wait(() =>
        settings.fetch(settings.endpoint, {
          method: "POST",
          headers: settings.headers(),
          body,
          signal: guard.controller.signal,
        }),
      );
    } catch (error) {
      guard.dispose();
      if (signal?.aborted) throw signal.reason;
      const failure = guard.stalled
        ? stalledError(settings)
        : new ModelError(
            settings.redact(`Could not reach ${settings.label}: ${describe(error)}`),
            { kind: "network", retryable: true },
            { cause: scrubError(error, settings.redact) },
          );
      if (attempt >= settings.maxRetries) throw failure;
      await wait(backoffDelay(attempt, settings.initialDelayMs, settings.maxDelayMs));
      continue;
    }
    if (!response.ok) {
      const failure = await guard.wait(() => errorFromResponse(settings, response));
      guard.dispose();
      if (!failure.retryable || attempt >= settings.maxRetries) throw failure;
      const retryAfter = failure.retryAfterMs;
      if (retryAfter !== undefined && retryAfter > settings.maxRetryAfterMs) throw failure;
      await wait(retryAfter ?? backoffDelay(attempt, settings.initialDelayMs, settings.maxDelayMs));
      continue;
    }
    // From here on the body is consumed: a failure is the caller's to recover (no retry here).
    request.onActivity?.();
    try {
      yield* readCompletion(settings, response, guard, signal, request);
    } finally {
      guard.dispose();
    }
    return;
  }
}

async function* readCompletion(
  settings: CallSettings,
  response: Response,
  guard: AttemptGuard,
  signal: AbortSignal | undefined,
  { onActivity, onProgress }: Pick<ModelRequest, "onActivity" | "onProgress">,
): AsyncGenerator<ModelEvent, void, undefined> {
  const contentType = response.headers.get("content-type") ?? "";
  if (/^application\/(?:[\w.+-]*\+)?json/i.test(contentType)) {
    // The endpoint ignored `stream: true` and sent one JSON completion.
    let text: string;
    try {
      text = await guard.wait(() => response.text());
    } catch (error) {
      // The body broke off while it was read: a network failure, retried as the stream's are.
      if (signal?.aborted) throw signal.reason;
      if (guard.stalled) throw stalledError(settings);
      throw new ModelError(
        settings.redact(`The response from ${settings.label} broke off: ${describe(error)}`),
        { kind: "network", retryable: true },
        { cause: scrubError(error, settings.redact) },
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new ModelError(
        `${settings.label} sent a JSON body that does not parse.`,
        { kind: "malformed_stream", retryable: false },
        { cause: scrubError(error, settings.redact) },
      );
    }
    yield* eventsFromCompletion(settings, json);
    return;
  }
  if (response.body === null)
    throw new ModelError(`${settings.label} sent an empty response body.`, {
      kind: "malformed_stream",
      retryable: true,
    });
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  // Some servers close right after their last `data:` line; keep that event.
  const parser = new SseParser({ dispatchIncompleteOnEnd: true });
  const assembler = new ChunkAssembler(settings);
  let readerDone = false;
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        const read = guard.wait(() => reader.read());
        // After the finish reason only usage and `[DONE]` may come: a server that sends neither
        // and keeps the connection open must not hold a complete reply until a stall timeout.
        const next = assembler.finished ? await Promise.race([read, graceOver(FINISH_GRACE_MS)]) : await read;
        if (next === GRACE_OVER) {
          read.catch(() => {});
          yield* assembler.finishAtEnd();
          return;
        }
        chunk = next;
      } catch (error) {
        readerDone = true;
        // Before the abort's own verdict: a watchdog that aborts the read after the finish
        // reason arrived cuts off nothing of the reply.
        if (assembler.finished) {
          // The finish reason arrived: the reply is complete, only usage and `[DONE]` were lost.
          yield* assembler.finishAtEnd();
          return;
        }
        if (signal?.aborted) throw signal.reason;
        if (guard.stalled) throw stalledError(settings);
        throw new ModelError(
          settings.redact(`The stream from ${settings.label} broke off: ${describe(error)}`),
          { kind: "network", retryable: true },
          { cause: scrubError(error, settings.redact) },
        );
      }
      if (signal?.aborted) throw signal.reason;
      if (chunk.done) {
        readerDone = true;
        const tail = [...parser.push(decoder.decode()), ...parser.end()];
        for (const [i, message] of tail.entries()) {
          onProgress?.();
          yield* assembler.accept(message, i === tail.length - 1);
          if (assembler.done) return;
        }
        yield* assembler.finishAtEnd();
        return;
      }
      // Bytes from the model: a sign of life (a keep-alive comment); each `data:` message in
      // them is the model's output (a tool call's arguments stream as such), so progress.
      onActivity?.();
      for (const message of parser.push(decoder.decode(chunk.value, { stream: true }))) {
        onProgress?.();
        yield* assembler.accept(message, false);
        if (assembler.done) return;
      }
    }
  } finally {
    if (!readerDone) reader.cancel().catch(() => {});
  }
}

/** How long a stream may stay open after its finish reason before the reply is taken as complete. */
export const FINISH_GRACE_MS = 2_000;

const GRACE_OVER = Symbol("grace over");

/** Resolves with `GRACE_OVER` after `ms` (unref'd where timers can be: it must not hold a process). */
function graceOver(ms: number): Promise<typeof GRACE_OVER> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(GRACE_OVER), ms) as unknown as { unref?: () => void };
    timer.unref?.();
  });
}

function stalledError(settings: CallSettings): ModelError {
  return new ModelError(`${settings.label} sent nothing for ${settings.idleTimeoutMs} ms (idleTimeoutMs).`, {
    kind: "stalled",
    retryable: true,
  });
}

async function errorFromResponse(settings: CallSettings, response: Response): Promise<ModelError> {
  const status = response.status;
  let detail = "";
  let providerCode: string | undefined;
  try {
    const text = (await response.text()).slice(0, 4_000);
    const parsed = parseJson(text);
    const error = asRecord(parsed)?.error;
    const errorRecord = asRecord(error);
    if (typeof error === "string") detail = error;
    else if (typeof errorRecord?.message === "string") detail = errorRecord.message;
    else detail = text.trim().slice(0, 300);
    const code = errorRecord?.code ?? errorRecord?.type;
    if (typeof code === "string") providerCode = code;
  } catch {
    // The body could not be read; the status line still says what happened.
  }
  const shouldRetry = response.headers.get("x-should-retry");
  const retryable =
    shouldRetry === "true"
      ? true
      : shouldRetry === "false"
        ? false
        : status === 408 || status === 409 || status === 429 || status >= 500;
  const data: ModelErrorData = { kind: "http_status", retryable, status };
  const retryAfterMs = parseRetryAfter(response.headers);
  if (retryAfterMs !== undefined) data.retryAfterMs = retryAfterMs;
  if (providerCode !== undefined) data.providerCode = settings.redact(providerCode);
  const statusText = response.statusText ? ` ${response.statusText}` : "";
  const hint =
    status === 401 || status === 403
      ? " Check the API key and the endpoint's access rules."
      : status === 404
        ? " Check baseUrl and the model name."
        : "";
  return new ModelError(
    settings.redact(
      `${settings.label} answered ${status}${statusText}${detail ? `: ${detail}` : "."}${hint}`,
    ),
    data,
  );
}

/** The endpoint without credentials, query or fragment, for messages. */
function endpointLabel(endpoint: string): string {
  try {
    const url = new URL(endpoint, "http://relative.invalid");
    return url.origin === "http://relative.invalid" ? url.pathname : `${url.origin}${url.pathname}`;
  } catch {
    return "the model endpoint";
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? ` (${error.cause.message})` : "";
    return `${error.message}${cause}`;
  }
  return String(error);
}
