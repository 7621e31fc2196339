/**
 * Serves the mock model over real HTTP as an OpenAI-compatible endpoint: a Node `http` handler
 * and a Vite plugin that mounts it in both `vite` and `vite preview`. Node-only: the demo's Vite
 * config and the tests import it; browser entry points must not.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Plugin } from "vite";
import { formatSse } from "../core/sse";
import { type MockCompletion, mockCompletion, mockTokens } from "./mock-model";
import type { ChatMessage, ToolCall, UserContentPart } from "./types";

/** Options of {@link mockModelHandler}. */
export interface MockModelOptions {
  /** Delay before each streamed piece, unless the request sets one. Default 15 ms. */
  delayMs?: number;
  /** The model id reported by `/v1/models` and in chunks. Default `"mock"`. */
  model?: string;
  /** Clock for the `created` field. Default `Date.now`. */
  now?: () => number;
}

/**
 * Per-request test controls, sent as the body field `mock` (delay also as header
 * `x-mock-delay-ms`; the key also as header `x-mock-fail-key`).
 */
export interface MockRequestControls {
  /** Delay before each streamed piece, in ms. */
  delayMs?: number;
  /** Answer `503` with `Retry-After: 0` to the first `failFirst` requests with the same key. */
  failFirst?: number;
  /** Cut the connection after this many text pieces (a crashed upstream)… */
  interruptAfter?: number;
  /** …for the first `interruptFirst` requests with the same key (default 1). */
  interruptFirst?: number;
  /** Groups requests for `failFirst` / `interruptFirst`. Default: a hash of the conversation without any assistant prefix. */
  failKey?: string;
}

/** A Node/Connect request handler; unknown paths go to `next` when given, else get a 404. */
export type MockModelHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next?: (error?: unknown) => void,
) => void;

const MAX_BODY_BYTES = 4 * 1024 * 1024;

/**
 * An OpenAI-compatible mock endpoint: `POST /v1/chat/completions` (streaming SSE in OpenAI's
 * exact chunk format, or one JSON completion when `stream` is false) and `GET /v1/models`.
 * Paths are matched with or without the `/v1` prefix, relative to where it is mounted.
 *
 * @example
 * http.createServer(mockModelHandler({ delayMs: 0 })).listen(0, "127.0.0.1");
 */
export function mockModelHandler(options: MockModelOptions = {}): MockModelHandler {
  const model = options.model ?? "mock";
  const now = options.now ?? Date.now;
  const failures = new Map<string, number>();
  const interruptions = new Map<string, number>();

  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    next?: (error?: unknown) => void,
  ): Promise<void> {
    res.setHeader("access-control-allow-origin", "*");
    res.setHeader(
      "access-control-allow-headers",
      "authorization, content-type, x-mock-delay-ms, x-mock-fail-key",
    );
    const path =
      (req.url ?? "/")
        .split("?")[0]
        ?.replace(/^\/v1(?=\/)/, "")
        .replace(/\/+$/, "") ?? "";
    if (path !== "/chat/completions" && path !== "/models") {
      if (next) next();
      else sendError(res, 404, `No mock route for ${req.method ?? "GET"} ${req.url ?? "/"}.`, "not_found");
      return;
    }
    if (req.method === "OPTIONS") {
      res.writeHead(204, { "access-control-allow-methods": "GET, POST, OPTIONS" }).end();
      return;
    }
    if (path === "/models") {
      if (req.method !== "GET") return sendError(res, 405, "Use GET for /v1/models.", "method_not_allowed");
      sendJson(res, 200, {
        object: "list",
        data: [{ id: model, object: "model", created: 0, owned_by: "fiberline" }],
      });
      return;
    }
    if (req.method !== "POST")
      return sendError(res, 405, "Use POST for /v1/chat/completions.", "method_not_allowed");
    const body = await readJsonBody(req);
    if (!body.ok) return sendError(res, body.status, body.message, "invalid_request_error");
    const request = body.value;
    const messages = parseMessages(request.messages);
    if (messages === undefined)
      return sendError(
        res,
        400,
        "`messages` must be a non-empty array of chat messages.",
        "invalid_request_error",
      );
    const tools = Array.isArray(request.tools)
      ? request.tools.flatMap((t) =>
          typeof asRecord(asRecord(t)?.function)?.name === "string"
            ? [String(asRecord(asRecord(t)?.function)?.name)]
            : [],
        )
      : [];
    const completion = mockCompletion(messages, { tools });
    const controls = asRecord(request.mock) ?? {};
    const delayHeader = req.headers["x-mock-delay-ms"];
    const headerDelay =
      typeof delayHeader === "string" && delayHeader.trim() !== ""
        ? asNumber(Number(delayHeader))
        : undefined;
    const delayMs = clamp(headerDelay ?? asNumber(controls.delayMs) ?? options.delayMs ?? 15, 0, 60_000);
    const headerKey = req.headers["x-mock-fail-key"];
    const key =
      (typeof headerKey === "string" ? headerKey : undefined) ??
      (typeof controls.failKey === "string" ? controls.failKey : undefined) ??
      completion.key;

    const failFirst = asNumber(controls.failFirst) ?? 0;
    const failed = failures.get(key) ?? 0;
    if (failed < failFirst) {
      failures.set(key, failed + 1);
      res.setHeader("retry-after", "0");
      return sendError(
        res,
        503,
        `Mock model: injected failure ${failed + 1} of ${failFirst}.`,
        "server_error",
      );
    }
    const id = `chatcmpl-${completion.key}`;
    const created = Math.floor(now() / 1000);
    if (request.stream !== true) {
      sendJson(res, 200, completionJson(completion, id, created, model));
      return;
    }
    let interruptAfter: number | undefined;
    const cutAfter = asNumber(controls.interruptAfter);
    if (cutAfter !== undefined) {
      const cut = interruptions.get(key) ?? 0;
      if (cut < (asNumber(controls.interruptFirst) ?? 1)) {
        interruptions.set(key, cut + 1);
        interruptAfter = cutAfter;
      }
    }
    const includeUsage = asRecord(request.stream_options)?.include_usage === true;
    await streamCompletion(res, completion, { id, created, model, delayMs, includeUsage, interruptAfter });
  }

  return (req, res, next) => {
    handle(req, res, next).catch((error: unknown) => {
      if (!res.headersSent)
        sendError(
          res,
          500,
          `Mock model failed: ${error instanceof Error ? error.message : String(error)}`,
          "server_error",
        );
      else res.destroy();
    });
  };
}

/** Options of {@link mockModelPlugin}. */
export interface MockModelPluginOptions extends MockModelOptions {
  /** Where the endpoint is mounted; the API root is `{path}/v1`. Default `/mock-model`. */
  path?: string;
}

/**
 * A Vite plugin serving the mock model at `/mock-model/v1/...` from both the dev server and
 * `vite preview`, so the demo talks to it over real HTTP with no account and no network.
 *
 * @example
 * // vite.config.ts
 * export default defineConfig({ plugins: [react(), mockModelPlugin()] });
 */
export function mockModelPlugin(options: MockModelPluginOptions = {}): Plugin {
  const path = options.path ?? "/mock-model";
  const handler = mockModelHandler(options);
  return {
    name: "fiberline:mock-model",
    configureServer(server) {
      server.middlewares.use(path, handler);
    },
    configurePreviewServer(server) {
      server.middlewares.use(path, handler);
    },
  };
}

interface StreamSettings {
  id: string;
  created: number;
  model: string;
  delayMs: number;
  includeUsage: boolean;
  interruptAfter: number | undefined;
}

async function streamCompletion(
  res: ServerResponse,
  completion: MockCompletion,
  settings: StreamSettings,
): Promise<void> {
  let closed = false;
  const closing = new Promise<void>((resolve) =>
    res.on("close", () => {
      closed = true;
      resolve();
    }),
  );
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  res.flushHeaders();
  const base = {
    id: settings.id,
    object: "chat.completion.chunk",
    created: settings.created,
    model: settings.model,
    system_fingerprint: null,
  };
  const usageField = settings.includeUsage ? { usage: null } : {};
  let flushed: Promise<void> = Promise.resolve();
  const send = async (
    delta: Record<string, unknown>,
    finishReason: string | null = null,
    pause = true,
  ): Promise<boolean> => {
    if (pause && settings.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, settings.delayMs));
    if (closed) return false;
    const chunk = {
      ...base,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...usageField,
    };
    flushed = new Promise((resolve) =>
      res.write(formatSse({ data: JSON.stringify(chunk) }), () => resolve()),
    );
    return true;
  };

  if (!(await send({ role: "assistant", content: "" }, null, false))) return;
  for (const piece of mockTokens(completion.reasoning ?? "")) {
    if (!(await send({ content: null, reasoning_content: piece }))) return;
  }
  let pieces = 0;
  for (const piece of mockTokens(completion.text)) {
    if (settings.interruptAfter !== undefined && pieces >= settings.interruptAfter) {
      // Let the pieces already sent reach the client, then drop the connection mid-response.
      await Promise.race([flushed, closing]);
      res.destroy();
      return;
    }
    if (!(await send({ content: piece }))) return;
    pieces += 1;
  }
  for (const [index, call] of completion.toolCalls.entries()) {
    if (
      !(await send({
        tool_calls: [{ index, id: call.id, type: "function", function: { name: call.name, arguments: "" } }],
      }))
    )
      return;
    for (const piece of call.arguments.match(/[\s\S]{1,6}/g) ?? []) {
      if (!(await send({ tool_calls: [{ index, function: { arguments: piece } }] }))) return;
    }
  }
  if (!(await send({}, completion.finishReason))) return;
  if (settings.includeUsage) {
    const { promptTokens, completionTokens } = completion.usage;
    res.write(
      formatSse({
        data: JSON.stringify({
          ...base,
          choices: [],
          usage: {
            prompt_tokens: promptTokens,
            completion_tokens: completionTokens,
            total_tokens: promptTokens + completionTokens,
          },
        }),
      }),
    );
  }
  res.end(formatSse({ data: "[DONE]" }));
}

function completionJson(completion: MockCompletion, id: string, created: number, model: string): unknown {
  const { promptTokens, completionTokens } = completion.usage;
  const toolCalls: ToolCall[] = completion.toolCalls.map((c) => ({
    id: c.id,
    type: "function",
    function: { name: c.name, arguments: c.arguments },
  }));
  return {
    id,
    object: "chat.completion",
    created,
    model,
    system_fingerprint: null,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: completion.text === "" ? null : completion.text,
          ...(completion.reasoning === undefined ? {} : { reasoning_content: completion.reasoning }),
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        logprobs: null,
        finish_reason: completion.finishReason,
      },
    ],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  };
}

type BodyResult =
  | { ok: true; value: Record<string, unknown> }
  | { ok: false; status: number; message: string };

async function readJsonBody(req: IncomingMessage): Promise<BodyResult> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES)
      return { ok: false, status: 413, message: `The request body is over ${MAX_BODY_BYTES} bytes.` };
    chunks.push(chunk);
  }
  try {
    const value: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const record = asRecord(value);
    return record
      ? { ok: true, value: record }
      : { ok: false, status: 400, message: "The request body must be a JSON object." };
  } catch {
    return { ok: false, status: 400, message: "The request body is not valid JSON." };
  }
}

/**
 * Reads the wire messages leniently (content parts are joined, except a user's, whose text and
 * image parts are kept), or undefined when they are unusable.
 */
function parseMessages(value: unknown): ChatMessage[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const out: ChatMessage[] = [];
  for (const item of value) {
    const m = asRecord(item);
    if (m === undefined) return undefined;
    const content = contentText(m.content);
    switch (m.role) {
      case "system":
      case "developer":
        out.push({ role: "system", content: content ?? "" });
        break;
      case "user":
        out.push({
          role: "user",
          content: Array.isArray(m.content) ? userParts(m.content) : (content ?? ""),
        });
        break;
      case "assistant": {
        const calls = Array.isArray(m.tool_calls) ? m.tool_calls.flatMap((c) => toToolCall(c)) : [];
        out.push(
          calls.length > 0
            ? { role: "assistant", content, tool_calls: calls }
            : { role: "assistant", content },
        );
        break;
      }
      case "tool":
        out.push({
          role: "tool",
          tool_call_id: typeof m.tool_call_id === "string" ? m.tool_call_id : "",
          content: content ?? "",
        });
        break;
      default:
        return undefined;
    }
  }
  return out;
}

function toToolCall(value: unknown): ToolCall[] {
  const call = asRecord(value);
  const fn = asRecord(call?.function);
  if (typeof call?.id !== "string" || typeof fn?.name !== "string") return [];
  return [
    {
      id: call.id,
      type: "function",
      function: { name: fn.name, arguments: typeof fn.arguments === "string" ? fn.arguments : "{}" },
    },
  ];
}

function userParts(parts: readonly unknown[]): UserContentPart[] {
  return parts.flatMap((item): UserContentPart[] => {
    const part = asRecord(item);
    const url = asRecord(part?.image_url)?.url;
    if (part?.type === "text" && typeof part.text === "string") return [{ type: "text", text: part.text }];
    if (part?.type === "image_url" && typeof url === "string")
      return [{ type: "image_url", image_url: { url } }];
    return [];
  });
}

function contentText(content: unknown): string | null {
  if (typeof content === "string") return content;
  if (Array.isArray(content))
    return content
      .map((part) => (typeof asRecord(part)?.text === "string" ? String(asRecord(part)?.text) : ""))
      .join("");
  return null;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res
    .writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(text),
    })
    .end(text);
}

function sendError(res: ServerResponse, status: number, message: string, type: string): void {
  sendJson(res, status, { error: { message, type, param: null, code: null } });
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function asNumber(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
