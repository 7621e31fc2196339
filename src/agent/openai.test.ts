/**
 * Tests of the OpenAI-compatible provider over real HTTP on 127.0.0.1: against the mock model
 * handler for the happy paths, retries and aborts, and against tiny raw servers for adversarial
 * streams (CRLF byte-by-byte, malformed SSE, cut JSON, error bodies that echo the key).
 */

import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { deserializeError, InvalidInputError, serializeError } from "../core/errors";
import { ModelError } from "./errors";
import { parseRetryAfter } from "./http-retry";
import { mockReply, mockToolSpecs } from "./mock-model";
import { mockModelHandler } from "./mock-server";
import { type OpenAICompatibleOptions, openAICompatible } from "./openai";
import type { ChatMessage, ModelEvent, ModelProvider, ModelRequest } from "./types";

const API_KEY = "sk-test-9f8e7d6c5b4a-SECRET";
const tools = [mockToolSpecs.calculator, mockToolSpecs.clock];
const user = (content: string): ChatMessage => ({ role: "user", content });
const fastRetry = { initialDelayMs: 1, maxDelayMs: 5 };

interface Seen {
  authorization: string | undefined;
  aborted: boolean;
}

let mockServer: http.Server;
let mockUrl: string;
let seen: Seen[] = [];

beforeAll(async () => {
  const handler = mockModelHandler({ delayMs: 0 });
  mockServer = http.createServer((req, res) => {
    const entry: Seen = { authorization: req.headers.authorization, aborted: false };
    seen.push(entry);
    res.on("close", () => {
      entry.aborted = !res.writableFinished;
    });
    handler(req, res);
  });
  mockUrl = `${await listen(mockServer)}/v1`;
});

afterAll(async () => {
  await close(mockServer);
});

afterEach(() => {
  seen = [];
});

function listen(server: http.Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () =>
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    );
  });
}

function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Runs `fn` against a throwaway server whose handler is `handler`. */
async function withServer(
  handler: http.RequestListener,
  fn: (baseUrl: string, requests: { body: string; headers: http.IncomingHttpHeaders }[]) => Promise<void>,
): Promise<void> {
  const requests: { body: string; headers: http.IncomingHttpHeaders }[] = [];
  const server = http.createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += String(chunk);
    requests.push({ body, headers: req.headers });
    handler(req, res);
  });
  const url = await listen(server);
  try {
    await fn(url, requests);
  } finally {
    await close(server);
  }
}

function provider(overrides: Partial<OpenAICompatibleOptions> = {}): ModelProvider {
  return openAICompatible({
    baseUrl: mockUrl,
    apiKey: API_KEY,
    model: "mock",
    continuation: "assistant-prefix",
    backoff: fastRetry,
    ...overrides,
  });
}

async function collect(model: ModelProvider, request: Partial<ModelRequest>): Promise<ModelEvent[]> {
  const events: ModelEvent[] = [];
  for await (const event of model.stream({ messages: [], tools: [], ...request })) events.push(event);
  return events;
}

/** Collects until the stream fails; returns what arrived and the error. */
async function collectUntilError(
  model: ModelProvider,
  request: Partial<ModelRequest>,
): Promise<{ events: ModelEvent[]; error: unknown }> {
  const events: ModelEvent[] = [];
  try {
    for await (const event of model.stream({ messages: [], tools: [], ...request })) events.push(event);
  } catch (error) {
    return { events, error };
  }
  throw new Error(`expected the stream to fail; it yielded ${JSON.stringify(events)}`);
}

function textOf(events: readonly ModelEvent[]): string {
  return events.map((e) => (e.type === "text" ? e.delta : "")).join("");
}

function sseChunk(delta: Record<string, unknown>, finishReason: string | null = null): string {
  return `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
}

describe("openAICompatible against the mock model", () => {
  it("streams text in several deltas, then usage, then finish", async () => {
    const messages = [user("Tell me about durable execution")];
    const events = await collect(provider(), { messages });
    const deltas = events.filter((e) => e.type === "text");
    expect(deltas.length).toBeGreaterThan(10);
    expect(textOf(events)).toBe(mockReply(messages).text);
    expect(events.slice(-2)).toEqual([
      { type: "usage", usage: { promptTokens: expect.any(Number), completionTokens: deltas.length } },
      { type: "finish", reason: "stop" },
    ]);
  });

  it("assembles tool-call arguments from their deltas, by index", async () => {
    const messages = [user("what is 12 * 7 and what time is it")];
    const events = await collect(provider(), { messages, tools });
    const expected = mockReply(messages, { tools: ["calculator", "clock"] }).toolCalls;
    expect(events.filter((e) => e.type === "tool_call")).toEqual(
      expected.map((c) => ({ type: "tool_call", id: c.id, name: c.name, arguments: c.arguments })),
    );
    expect(JSON.parse(expected[0]?.arguments ?? "")).toEqual({ expression: "12 * 7" });
    expect(events.at(-1)).toEqual({ type: "finish", reason: "tool_calls" });
    expect(textOf(events)).toBe("");
  });

  it("answers from a tool result sent back in the conversation", async () => {
    const ask = [user("what is 12 * 7")];
    const [call] = mockReply(ask).toolCalls;
    if (call === undefined) throw new Error("expected a tool call");
    const messages: ChatMessage[] = [
      ...ask,
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } },
        ],
      },
      { role: "tool", tool_call_id: call.id, content: "84" },
    ];
    expect(textOf(await collect(provider(), { messages, tools }))).toMatch(/^12 \* 7 = 84\./);
  });

  it("continues a prefix so that prefix + streamed remainder equals the uninterrupted reply", async () => {
    const messages = [user("Explain continuation after a crash")];
    const full = textOf(await collect(provider(), { messages }));
    for (const cut of [1, 6, 40, Math.floor(full.length / 2), full.length - 2]) {
      const prefix = full.slice(0, cut);
      const events = await collect(provider(), { messages, prefix });
      expect(prefix + textOf(events)).toBe(full);
      expect(events.at(-1)).toEqual({ type: "finish", reason: "stop" });
    }
  });

  it("refuses a prefix when created without continuation support", () => {
    const model = provider({ continuation: "none" });
    expect(model.supportsContinuation).toBe(false);
    expect(() => model.stream({ messages: [user("hi")], tools: [], prefix: "Hel" })).toThrow(
      InvalidInputError,
    );
  });

  it("stops mid-stream on abort, throws the abort reason and closes the connection", async () => {
    const controller = new AbortController();
    const model = provider({ headers: { "x-mock-delay-ms": "20" } });
    const received: string[] = [];
    const run = (async () => {
      for await (const event of model.stream({
        messages: [user("a long answer please")],
        tools: [],
        signal: controller.signal,
      })) {
        if (event.type === "text") received.push(event.delta);
        if (received.length === 3) controller.abort();
      }
    })();
    await expect(run).rejects.toMatchObject({ name: "AbortError" });
    expect(received).toHaveLength(3);
    await expect.poll(() => seen.at(-1)?.aborted).toBe(true);
  });

  it("retries 503 answers with Retry-After before streaming", async () => {
    const failKey = `retry-${Math.random()}`;
    const messages = [user("Tell me about retries")];
    const events = await collect(provider({ extraBody: { mock: { failFirst: 2, failKey } } }), { messages });
    expect(textOf(events)).toBe(mockReply(messages).text);
    expect(seen).toHaveLength(3);
  });

  it("gives up with a retryable ModelError once maxRetries is spent", async () => {
    const failKey = `give-up-${Math.random()}`;
    const { error } = await collectUntilError(
      provider({ maxRetries: 1, extraBody: { mock: { failFirst: 5, failKey } } }),
      { messages: [user("hi")] },
    );
    expect(error).toBeInstanceOf(ModelError);
    expect(error).toMatchObject({
      code: "model_error",
      status: 503,
      retryable: true,
      kind: "http_status",
      retryAfterMs: 0,
    });
    expect(seen).toHaveLength(2);
  });

  it("does not retry a stream that broke after the body was read; the error is retryable for the caller", async () => {
    const failKey = `cut-${Math.random()}`;
    const { events, error } = await collectUntilError(
      provider({ extraBody: { mock: { interruptAfter: 3, failKey } } }),
      {
        messages: [user("Tell me about interruptions")],
      },
    );
    expect(events.filter((e) => e.type === "text")).toHaveLength(3);
    expect(error).toMatchObject({ code: "model_error", kind: "network", retryable: true });
    expect(seen).toHaveLength(1);
  });

  it("sends the key only in the Authorization header, never in events, errors or the provider", async () => {
    const model = provider();
    const events = [
      ...(await collect(model, { messages: [user("Tell me a story")] })),
      ...(await collect(model, { messages: [user("what is 2 + 2")], tools })),
    ];
    expect(seen.map((s) => s.authorization)).toEqual([`Bearer ${API_KEY}`, `Bearer ${API_KEY}`]);
    expect(JSON.stringify(events)).not.toContain(API_KEY);
    expect(JSON.stringify(model)).not.toContain(API_KEY);
    expect(Object.values(model).some((v) => typeof v === "string" && v.includes(API_KEY))).toBe(false);
  });
});

describe("openAICompatible against adversarial servers", () => {
  it("reads a CRLF stream delivered a byte at a time, with comments and split UTF-8", async () => {
    const body = [
      ": keep-alive\n\n",
      sseChunk({ role: "assistant", content: "" }),
      sseChunk({ content: "h\u00e9llo " }),
      sseChunk({ content: "\u{1F600}!" }),
      sseChunk({
        tool_calls: [
          { index: 1, id: "call_b", type: "function", function: { name: "clock", arguments: "" } },
        ],
      }),
      sseChunk({
        tool_calls: [
          { index: 0, id: "call_a", type: "function", function: { name: "calculator", arguments: '{"expr' } },
        ],
      }),
      sseChunk({ tool_calls: [{ index: 1, function: { arguments: "{}" } }] }),
      sseChunk({ tool_calls: [{ index: 0, function: { arguments: 'ession":"1+1"}' } }] }),
      sseChunk({}, "tool_calls"),
      `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 7 } })}\n\n`,
      "data: [DONE]\n\n",
    ]
      .join("")
      .replace(/\n/g, "\r\n");
    const bytes = new TextEncoder().encode(body);
    await withServer(
      async (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        for (const byte of bytes) {
          res.write(Uint8Array.of(byte));
          await new Promise((resolve) => setImmediate(resolve));
        }
        res.end();
      },
      async (baseUrl) => {
        expect(await collect(provider({ baseUrl }), { messages: [user("x")] })).toEqual([
          { type: "text", delta: "h\u00e9llo " },
          { type: "text", delta: "\u{1F600}!" },
          { type: "tool_call", id: "call_a", name: "calculator", arguments: '{"expression":"1+1"}' },
          { type: "tool_call", id: "call_b", name: "clock", arguments: "{}" },
          { type: "usage", usage: { promptTokens: 5, completionTokens: 7 } },
          { type: "finish", reason: "tool_calls" },
        ]);
      },
    );
  });

  it("sends the OpenAI request shape, with the prefix as a trailing assistant message", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`${sseChunk({ content: "lo" }, "stop")}data: [DONE]\n\n`);
      },
      async (baseUrl, requests) => {
        const model = provider({
          baseUrl: `${baseUrl}/v1/`,
          extraBody: { temperature: 0 },
          continuationBody: { continue_final_message: true },
        });
        await collect(model, {
          messages: [user("hi")],
          tools: [mockToolSpecs.clock],
          prefix: "Hel",
          model: "other",
        });
        await collect(model, { messages: [user("hi")] });
        const [continued, fresh] = requests.map((r) => JSON.parse(r.body) as Record<string, unknown>);
        expect(continued).toEqual({
          model: "other",
          messages: [user("hi"), { role: "assistant", content: "Hel" }],
          stream: true,
          stream_options: { include_usage: true },
          tools: [
            {
              type: "function",
              function: {
                name: "clock",
                description: mockToolSpecs.clock.description,
                parameters: mockToolSpecs.clock.parameters,
              },
            },
          ],
          temperature: 0,
          continue_final_message: true,
        });
        expect(fresh).toEqual({
          model: "mock",
          messages: [user("hi")],
          stream: true,
          stream_options: { include_usage: true },
          temperature: 0,
        });
        expect(requests.every((r) => !r.body.includes(API_KEY))).toBe(true);
      },
    );
  });

  it("turns a 4xx JSON body into a non-retryable ModelError without the key, and does not retry", async () => {
    await withServer(
      (req, res) => {
        res.writeHead(401, { "content-type": "application/json" });
        const echoed = String(req.headers.authorization).replace("Bearer ", "");
        res.end(
          JSON.stringify({
            error: {
              message: `Incorrect API key provided: ${echoed}.`,
              type: "invalid_request_error",
              code: "invalid_api_key",
            },
          }),
        );
      },
      async (baseUrl, requests) => {
        const { error } = await collectUntilError(provider({ baseUrl }), { messages: [user("hi")] });
        expect(error).toBeInstanceOf(ModelError);
        expect(error).toMatchObject({
          code: "model_error",
          status: 401,
          retryable: false,
          kind: "http_status",
        });
        expect((error as ModelError).data.providerCode).toBe("invalid_api_key");
        expect((error as ModelError).message).toContain("Incorrect API key provided: [redacted]");
        expect(JSON.stringify(serializeError(error))).not.toContain(API_KEY);
        expect(requests).toHaveLength(1);

        const revived = deserializeError(structuredClone(serializeError(error)));
        expect(revived).toBeInstanceOf(ModelError);
        expect(revived).toMatchObject({
          code: "model_error",
          status: 401,
          retryable: false,
          kind: "http_status",
        });
      },
    );
  });

  it("fails at once when Retry-After asks for longer than maxRetryAfterMs", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(429, { "retry-after": "3600", "content-type": "text/plain" });
        res.end("slow down");
      },
      async (baseUrl, requests) => {
        const { error } = await collectUntilError(provider({ baseUrl }), { messages: [user("hi")] });
        expect(error).toMatchObject({ status: 429, retryable: true, retryAfterMs: 3_600_000 });
        expect((error as Error).message).toContain("slow down");
        expect(requests).toHaveLength(1);
      },
    );
  });

  it("retries a connection that dropped before any response", async () => {
    let calls = 0;
    await withServer(
      (req, res) => {
        calls += 1;
        if (calls === 1) req.socket.destroy();
        else {
          res.writeHead(200, { "content-type": "text/event-stream" });
          res.end(`${sseChunk({ content: "ok" }, "stop")}data: [DONE]\n\n`);
        }
      },
      async (baseUrl, requests) => {
        expect(textOf(await collect(provider({ baseUrl }), { messages: [user("hi")] }))).toBe("ok");
        expect(requests).toHaveLength(2);
      },
    );
  });

  it("retries a request that got no response within idleTimeoutMs", async () => {
    let calls = 0;
    await withServer(
      (_req, res) => {
        calls += 1;
        if (calls === 1) return; // never answers
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`${sseChunk({ content: "ok" }, "stop")}data: [DONE]\n\n`);
      },
      async (baseUrl, requests) => {
        expect(
          textOf(await collect(provider({ baseUrl, idleTimeoutMs: 100 }), { messages: [user("hi")] })),
        ).toBe("ok");
        expect(requests).toHaveLength(2);
      },
    );
  });

  it("fails a stream that goes quiet mid-response as stalled, without retrying it", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(sseChunk({ content: "first" }));
      },
      async (baseUrl, requests) => {
        const { events, error } = await collectUntilError(provider({ baseUrl, idleTimeoutMs: 100 }), {
          messages: [user("hi")],
        });
        expect(textOf(events)).toBe("first");
        expect(error).toMatchObject({ code: "model_error", kind: "stalled", retryable: true });
        expect(requests).toHaveLength(1);
      },
    );
  });

  it("reports malformed SSE after the events that were valid", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(
          `${sseChunk({ content: "ok" })}data: <html>oops</html>\n\n${sseChunk({}, "stop")}data: [DONE]\n\n`,
        );
      },
      async (baseUrl, requests) => {
        const { events, error } = await collectUntilError(provider({ baseUrl }), { messages: [user("hi")] });
        expect(events).toEqual([{ type: "text", delta: "ok" }]);
        expect(error).toMatchObject({ code: "model_error", kind: "malformed_stream", retryable: false });
        expect(requests).toHaveLength(1);
      },
    );
  });

  it("reports JSON cut off by the end of the stream as truncated", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`${sseChunk({ content: "hel" })}data: {"choices":[{"index":0,"delta":{"content":"lo`);
      },
      async (baseUrl) => {
        const { events, error } = await collectUntilError(provider({ baseUrl }), { messages: [user("hi")] });
        expect(textOf(events)).toBe("hel");
        expect(error).toMatchObject({ code: "model_error", kind: "truncated_stream", retryable: true });
      },
    );
  });

  it("reports a stream that ends without a finish reason or [DONE] as truncated", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(sseChunk({ content: "partial answer" }));
      },
      async (baseUrl) => {
        const { events, error } = await collectUntilError(provider({ baseUrl }), { messages: [user("hi")] });
        expect(textOf(events)).toBe("partial answer");
        expect(error).toMatchObject({ kind: "truncated_stream", retryable: true });
      },
    );
  });

  it("accepts a stream that closes after the finish reason without [DONE]", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`${sseChunk({ content: "done" })}${sseChunk({}, "length")}`);
      },
      async (baseUrl) => {
        expect(await collect(provider({ baseUrl }), { messages: [user("hi")] })).toEqual([
          { type: "text", delta: "done" },
          { type: "finish", reason: "length" },
        ]);
      },
    );
  });

  it("turns an error event inside the stream into a provider_error", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(
          `${sseChunk({ content: "a" })}data: ${JSON.stringify({ error: { message: "overloaded", type: "server_error" } })}\n\n`,
        );
      },
      async (baseUrl) => {
        const { error } = await collectUntilError(provider({ baseUrl }), { messages: [user("hi")] });
        expect(error).toMatchObject({ kind: "provider_error", retryable: true });
        expect((error as Error).message).toContain("overloaded");
      },
    );
  });

  it("accepts a whole JSON completion from a server that ignores stream: true", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            choices: [
              {
                index: 0,
                message: {
                  role: "assistant",
                  content: "Let me check.",
                  tool_calls: [{ id: "c1", type: "function", function: { name: "clock", arguments: "" } }],
                },
                finish_reason: "tool_calls",
              },
            ],
            usage: { prompt_tokens: 3, completion_tokens: 4 },
          }),
        );
      },
      async (baseUrl) => {
        expect(await collect(provider({ baseUrl }), { messages: [user("hi")] })).toEqual([
          { type: "text", delta: "Let me check." },
          { type: "tool_call", id: "c1", name: "clock", arguments: "{}" },
          { type: "usage", usage: { promptTokens: 3, completionTokens: 4 } },
          { type: "finish", reason: "tool_calls" },
        ]);
      },
    );
  });
});

describe("what goes on the wire", () => {
  it("sends neither an assistant's reasoning nor another provider's metadata on its tool calls", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`${sseChunk({ content: "ok" })}${sseChunk({}, "stop")}data: [DONE]\n\n`);
      },
      async (baseUrl, requests) => {
        const call = {
          id: "c1",
          type: "function" as const,
          function: { name: "clock", arguments: "{}" },
          providerMetadata: { google: { thoughtSignature: "sig" } },
        };
        await collect(provider({ baseUrl }), {
          messages: [
            user("time?"),
            {
              role: "assistant",
              content: null,
              reasoning: "Look it up.",
              reasoningParts: [{ length: 11, providerMetadata: { anthropic: { signature: "s" } } }],
              tool_calls: [call],
            },
            { role: "tool", tool_call_id: "c1", content: "noon" },
          ],
        });
        const sent = JSON.parse(requests[0]?.body ?? "{}").messages;
        expect(sent[1]).toEqual({
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "clock", arguments: "{}" } }],
        });
      },
    );
  });
});

describe("a JSON completion cut off", () => {
  it("is a network error, retried, when the connection breaks while the body is read", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "application/json", "content-length": "400" });
        res.write('{"choices":[{"index":0,"message":{"role":"assistant","content":"Half');
        setTimeout(() => res.destroy(), 20);
      },
      async (baseUrl) => {
        const { error } = await collectUntilError(provider({ baseUrl }), { messages: [user("hi")] });
        expect(error).toMatchObject({ code: "model_error", kind: "network", retryable: true });
      },
    );
  });

  it("is malformed, not retried, when the whole body arrived and does not parse", async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end('{"choices":[{"index":0,"message":');
      },
      async (baseUrl) => {
        const { error } = await collectUntilError(provider({ baseUrl }), { messages: [user("hi")] });
        expect(error).toMatchObject({ code: "model_error", kind: "malformed_stream", retryable: false });
      },
    );
  });
});

describe("parseRetryAfter", () => {
  it("reads seconds, HTTP dates and retry-after-ms", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    expect(parseRetryAfter(new Headers({ "retry-after": "2" }), now)).toBe(2000);
    expect(parseRetryAfter(new Headers({ "retry-after": "Tue, 01 Jan 2030 00:00:03 GMT" }), now)).toBe(3000);
    expect(parseRetryAfter(new Headers({ "retry-after": "Mon, 31 Dec 2029 00:00:00 GMT" }), now)).toBe(0);
    expect(parseRetryAfter(new Headers({ "retry-after-ms": "250", "retry-after": "9" }), now)).toBe(250);
    expect(parseRetryAfter(new Headers({ "retry-after": "soon" }), now)).toBeUndefined();
    expect(parseRetryAfter(new Headers(), now)).toBeUndefined();
  });
});
