/**
 * `aiSdkModel` against the AI SDK's own test model (`MockLanguageModelV3` from `ai/test`) and
 * against `@ai-sdk/openai-compatible` talking to Fiberline's mock model server over real HTTP:
 * text, reasoning, streamed tool inputs, usage, finish reasons, provider errors, aborts, and a cut
 * stream that continues from its prefix or is regenerated after `message.reset`.
 */

import http from "node:http";
import type { AddressInfo } from "node:net";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import {
  APICallError,
  InvalidPromptError,
  type LanguageModelV3StreamPart,
  LoadAPIKeyError,
} from "@ai-sdk/provider";
import { convertArrayToReadableStream } from "@ai-sdk/provider-utils/test";
import { MockLanguageModelV3 } from "ai/test";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { defineAgent } from "../agent/agent";
import {
  agentRuntime,
  closeRuntimes,
  recordingTool,
  storedEvents,
  storeText,
  type ToolRun,
} from "../agent/agent-harness";
import { ModelError } from "../agent/errors";
import { calculatorTool } from "../agent/example-tools";
import { mockModelHandler } from "../agent/mock-server";
import { openAICompatible } from "../agent/openai";
import type { ModelEvent } from "../agent/types";
import { MemoryStore } from "../store/memory-store";
import { aiSdkModel, toPrompt } from "./ai-sdk-model";

afterEach(closeRuntimes);

const user = (content: string) => [{ role: "user" as const, content }];
const usage = (input: number, output: number) => ({
  inputTokens: { total: input, noCache: input, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: output, text: output, reasoning: undefined },
});
const finish = (unified: "stop" | "tool-calls" | "length" | "error", input = 10, output = 5) =>
  ({ type: "finish", finishReason: { unified, raw: undefined }, usage: usage(input, output) }) as const;

/** A doStream result streaming `parts`. */
const streamOf = (parts: LanguageModelV3StreamPart[]) => ({ stream: convertArrayToReadableStream(parts) });

const textParts = (text: string, id = "t1"): LanguageModelV3StreamPart[] => [
  { type: "text-start", id },
  ...text.split(/(?<= )/).map((delta) => ({ type: "text-delta" as const, id, delta })),
  { type: "text-end", id },
];

async function collect(events: AsyncIterable<ModelEvent>): Promise<ModelEvent[]> {
  const out: ModelEvent[] = [];
  for await (const ev of events) out.push(ev);
  return out;
}

/** An agent on `model` (continuation "assistant-prefix") answering "hi": its output and stored chunks. */
async function continued(model: MockLanguageModelV3) {
  const agent = defineAgent({
    name: "continued",
    model: aiSdkModel(model, { continuation: "assistant-prefix" }),
    modelRetry: { maxAttempts: 2, initialDelayMs: 1 },
  });
  const store = new MemoryStore();
  const rt = agentRuntime(agent, store);
  const fiber = await rt.start(agent, { messages: user("hi") });
  const output = await rt.result(fiber);
  return { output, events: await storedEvents(store, fiber.id) };
}

describe("aiSdkModel with MockLanguageModelV3", () => {
  it("streams text, reasoning, a streamed tool input as one call, usage and the finish reason", async () => {
    const model = new MockLanguageModelV3({
      doStream: streamOf([
        { type: "stream-start", warnings: [] },
        { type: "reasoning-start", id: "r1" },
        { type: "reasoning-delta", id: "r1", delta: "Need the " },
        { type: "reasoning-delta", id: "r1", delta: "calculator." },
        { type: "reasoning-end", id: "r1" },
        ...textParts("Let me compute. "),
        { type: "tool-input-start", id: "call_1", toolName: "calculator" },
        { type: "tool-input-delta", id: "call_1", delta: '{"expression":' },
        { type: "tool-input-delta", id: "call_1", delta: '"12*7"}' },
        { type: "tool-input-end", id: "call_1" },
        { type: "tool-call", toolCallId: "call_1", toolName: "calculator", input: '{"expression":"12*7"}' },
        finish("tool-calls", 30, 12),
      ]),
    });
    const events = await collect(aiSdkModel(model).stream({ messages: user("12*7?"), tools: [] }));
    expect(events).toEqual([
      { type: "reasoning", delta: "Need the " },
      { type: "reasoning", delta: "calculator." },
      { type: "reasoning_end" },
      { type: "text", delta: "Let " },
      { type: "text", delta: "me " },
      { type: "text", delta: "compute. " },
      { type: "tool_call", id: "call_1", name: "calculator", arguments: '{"expression":"12*7"}' },
      { type: "usage", usage: { promptTokens: 30, completionTokens: 12 } },
      { type: "finish", reason: "tool_calls" },
    ]);
  });

  it("runs a whole agent: the tool once, its result back in the prompt under the tool's name, usage summed", async () => {
    const runs: ToolRun[] = [];
    const model = new MockLanguageModelV3({
      doStream: [
        streamOf([
          { type: "tool-call", toolCallId: "call_1", toolName: "delete_file", input: '{"path":"a.txt"}' },
          finish("tool-calls", 20, 4),
        ]),
        streamOf([...textParts("Deleted a.txt."), finish("stop", 40, 3)]),
      ],
    });
    const agent = defineAgent({
      name: "sdk",
      model: aiSdkModel(model),
      tools: [recordingTool(runs)],
      system: "Be brief.",
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user("delete a.txt") }));

    expect(runs.map((r) => r.path)).toEqual(["a.txt"]);
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: "Deleted a.txt." });
    expect(output.usage).toEqual({ promptTokens: 60, completionTokens: 7 });
    const second = model.doStreamCalls[1];
    expect(second?.prompt).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: [{ type: "text", text: "delete a.txt" }] },
      {
        role: "assistant",
        content: [
          { type: "tool-call", toolCallId: "call_1", toolName: "delete_file", input: { path: "a.txt" } },
        ],
      },
      {
        role: "tool",
        content: [
          {
            type: "tool-result",
            toolCallId: "call_1",
            toolName: "delete_file",
            output: { type: "text", value: '"deleted a.txt"' },
          },
        ],
      },
    ]);
    expect(second?.tools?.map((t) => t.name)).toEqual(["delete_file"]);
  });

  it("gives a tool call's provider metadata back with the call (Gemini 3's thought signature)", async () => {
    const runs: ToolRun[] = [];
    const signature = { google: { thoughtSignature: "sig-1" } };
    const model = new MockLanguageModelV3({
      doStream: [
        streamOf([
          {
            type: "tool-call",
            toolCallId: "call_1",
            toolName: "delete_file",
            input: '{"path":"a.txt"}',
            providerMetadata: signature,
          },
          finish("tool-calls"),
        ]),
        streamOf([...textParts("Deleted."), finish("stop")]),
      ],
    });
    const agent = defineAgent({ name: "sdk-sig", model: aiSdkModel(model), tools: [recordingTool(runs)] });
    const store = new MemoryStore();
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user("delete a.txt") });
    const output = await rt.result(fiber);
    expect(runs).toHaveLength(1);
    // In the stream too: a reply rebuilt from it after a crash keeps it.
    const call = (await storedEvents(store, fiber.id)).find((e) => e.type === "tool.call");
    expect((call?.data as { providerMetadata?: unknown } | undefined)?.providerMetadata).toEqual(signature);
    // Journaled with the call, so a replay or the edge's next request has it too.
    const assistant = output.messages.find((m) => m.role === "assistant" && m.tool_calls !== undefined);
    expect(assistant?.role === "assistant" ? assistant.tool_calls?.[0]?.providerMetadata : undefined).toEqual(
      signature,
    );
    expect(model.doStreamCalls[1]?.prompt[1]).toEqual({
      role: "assistant",
      content: [
        {
          type: "tool-call",
          toolCallId: "call_1",
          toolName: "delete_file",
          input: { path: "a.txt" },
          providerOptions: signature,
        },
      ],
    });
  });

  it("hands back only the reasoning a provider signs: not OpenAI's reasoning items, which it pairs with their text", async () => {
    const runs: ToolRun[] = [];
    const item = { openai: { itemId: "rs_1", reasoningEncryptedContent: null } };
    const model = new MockLanguageModelV3({
      doStream: [
        streamOf([
          { type: "reasoning-start", id: "r1", providerMetadata: item },
          { type: "reasoning-delta", id: "r1", delta: "Use the tool." },
          { type: "reasoning-end", id: "r1", providerMetadata: item },
          { type: "tool-call", toolCallId: "call_1", toolName: "delete_file", input: '{"path":"a.txt"}' },
          finish("tool-calls"),
        ]),
        streamOf([...textParts("Deleted."), finish("stop")]),
      ],
    });
    const agent = defineAgent({ name: "sdk-items", model: aiSdkModel(model), tools: [recordingTool(runs)] });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user("delete a.txt") }));
    const assistant = output.messages.find((m) => m.role === "assistant" && m.tool_calls !== undefined);
    expect(assistant).toMatchObject({ reasoning: "Use the tool." });
    expect(assistant && "reasoningParts" in assistant).toBe(false);
    expect(model.doStreamCalls[1]?.prompt[1]?.content).toEqual([
      { type: "tool-call", toolCallId: "call_1", toolName: "delete_file", input: { path: "a.txt" } },
    ]);
  });

  it("sends back from a journal only signatures and redacted thinking, whatever else it holds", () => {
    const prompt = toPrompt([
      {
        role: "assistant",
        content: "ok",
        reasoning: "ab",
        reasoningParts: [
          { length: 1, providerMetadata: { openai: { itemId: "rs_1" } } },
          { length: 1, providerMetadata: { anthropic: { signature: "s", cacheControl: "x" } } },
        ],
      },
    ]);
    expect(prompt).toEqual([
      {
        role: "assistant",
        content: [
          { type: "reasoning", text: "b", providerOptions: { anthropic: { signature: "s" } } },
          { type: "text", text: "ok" },
        ],
      },
    ]);
  });

  it("sends a user message's images as file parts: a data URL's bytes, a URL as a URL", async () => {
    const model = new MockLanguageModelV3({ doStream: streamOf([...textParts("A cat."), finish("stop")]) });
    const content = [
      { type: "text" as const, text: "What is this?" },
      { type: "image_url" as const, image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
      { type: "image_url" as const, image_url: { url: "https://example.com/cat.jpg" } },
    ];
    await collect(aiSdkModel(model).stream({ messages: [{ role: "user", content }], tools: [] }));
    expect(model.doStreamCalls[0]?.prompt).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "file", mediaType: "image/png", data: "iVBORw0KGgo=" },
          { type: "file", mediaType: "image/*", data: new URL("https://example.com/cat.jpg") },
        ],
      },
    ]);
  });

  it("maps APICallError to ModelError keeping isRetryable, status and Retry-After", async () => {
    const error = new APICallError({
      message: "Rate limited",
      url: "https://api.example.com/v1/chat",
      requestBodyValues: {},
      statusCode: 429,
      responseHeaders: { "retry-after": "2" },
      isRetryable: true,
    });
    const model = new MockLanguageModelV3({
      doStream: async () => {
        throw error;
      },
    });
    const failure = await collect(aiSdkModel(model).stream({ messages: user("hi"), tools: [] })).catch(
      (e) => e,
    );
    expect(failure).toBeInstanceOf(ModelError);
    expect(failure).toMatchObject({ kind: "http_status", retryable: true, status: 429, retryAfterMs: 2_000 });

    const denied = new MockLanguageModelV3({
      doStream: async () => {
        throw new APICallError({
          message: "Bad key",
          url: "u",
          requestBodyValues: {},
          statusCode: 401,
          isRetryable: false,
        });
      },
    });
    const agent = defineAgent({ name: "denied", model: aiSdkModel(denied) });
    const rt = agentRuntime(agent, new MemoryStore());
    const fiber = await rt.start(agent, { messages: user("hi") });
    await expect(rt.result(fiber)).rejects.toMatchObject({ code: "non_retryable" });
    expect(denied.doStreamCalls).toHaveLength(1);
  });

  it("does not retry the AI SDK's errors that no retry gets past: a missing key, an invalid prompt", async () => {
    for (const error of [
      new LoadAPIKeyError({ message: "OpenAI API key is missing." }),
      new InvalidPromptError({ prompt: "", message: "Invalid prompt" }),
    ]) {
      const model = new MockLanguageModelV3({
        doStream: async () => {
          throw error;
        },
      });
      const failure = await collect(aiSdkModel(model).stream({ messages: user("hi"), tools: [] })).catch(
        (e) => e,
      );
      expect(failure).toMatchObject({ kind: "provider_error", retryable: false });
    }
  });

  it("throws the abort's reason at once from a stream that ignores its abort signal", async () => {
    const model = new MockLanguageModelV3({
      doStream: async () => ({
        stream: new ReadableStream<LanguageModelV3StreamPart>({
          start(controller) {
            controller.enqueue({ type: "text-delta", id: "t", delta: "Hel" }); // then nothing, ever
          },
        }),
      }),
    });
    const controller = new AbortController();
    const reason = new Error("stop");
    const iterator = aiSdkModel(model)
      .stream({ messages: user("hi"), tools: [], signal: controller.signal })
      [Symbol.asyncIterator]();
    expect((await iterator.next()).value).toEqual({ type: "text", delta: "Hel" });
    const pending = iterator.next();
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
  });

  it("throws the abort's reason from a model whose doStream never answers and ignores its signal", async () => {
    let cancelled = false;
    let answer!: (result: { stream: ReadableStream<LanguageModelV3StreamPart> }) => void;
    const model = new MockLanguageModelV3({
      doStream: () => new Promise((resolve) => (answer = resolve)),
    });
    const controller = new AbortController();
    const reason = new Error("stalled");
    const pending = aiSdkModel(model)
      .stream({ messages: user("hi"), tools: [], signal: controller.signal })
      [Symbol.asyncIterator]()
      .next();
    await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    // Its stream, when it comes at last, is cancelled rather than left open.
    answer({
      stream: new ReadableStream({
        cancel: () => {
          cancelled = true;
        },
      }),
    });
    await expect.poll(() => cancelled).toBe(true);
  });

  it("retries an error part and a finish reason 'error' as retryable failures", async () => {
    const model = new MockLanguageModelV3({
      doStream: [
        streamOf([{ type: "error", error: new Error("overloaded") }]),
        streamOf([finish("error")]),
        streamOf([...textParts("Fine now."), finish("stop")]),
      ],
    });
    const agent = defineAgent({
      name: "flaky",
      model: aiSdkModel(model),
      modelRetry: { maxAttempts: 3, initialDelayMs: 1 },
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user("hi") }));
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: "Fine now." });
    expect(model.doStreamCalls).toHaveLength(3);
  });

  it("regenerates a cut reply after message.reset when the model cannot continue a prefix", async () => {
    const model = new MockLanguageModelV3({
      doStream: [
        streamOf([
          { type: "text-start", id: "t" },
          { type: "text-delta", id: "t", delta: "Half a" },
        ]),
        streamOf([...textParts("A whole answer."), finish("stop")]),
      ],
    });
    const agent = defineAgent({
      name: "cut",
      model: aiSdkModel(model),
      modelRetry: { maxAttempts: 2, initialDelayMs: 1 },
    });
    const store = new MemoryStore();
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user("hi") });
    const output = await rt.result(fiber);
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: "A whole answer." });
    const types = (await storedEvents(store, fiber.id)).map((e) => e.type);
    expect(types.filter((t) => t === "message.reset")).toHaveLength(1);
  });

  it("continues a cut reply from its prefix when created with continuation 'assistant-prefix'", async () => {
    const model = new MockLanguageModelV3({
      doStream: [
        streamOf([
          { type: "text-start", id: "t" },
          { type: "text-delta", id: "t", delta: "Half a" },
        ]),
        streamOf([...textParts(" sentence."), finish("stop")]),
      ],
    });
    const { output, events } = await continued(model);
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: "Half a sentence." });
    expect(model.doStreamCalls[1]?.prompt.at(-1)).toEqual({
      role: "assistant",
      content: [{ type: "text", text: "Half a" }],
    });
    expect(events.some((e) => e.type === "message.reset")).toBe(false);
  });

  it("sends a prefix without its trailing whitespace (Anthropic refuses it) and leaves out the whitespace the model writes again", async () => {
    const model = new MockLanguageModelV3({
      doStream: [
        streamOf([
          { type: "text-start", id: "t" },
          { type: "text-delta", id: "t", delta: "The answer is " },
        ]),
        // What a model continuing "The answer is" writes: the space again, even split.
        streamOf([...textParts(" "), ...textParts("42."), finish("stop")]),
      ],
    });
    const { output } = await continued(model);
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: "The answer is 42." });
    expect(model.doStreamCalls[1]?.prompt.at(-1)).toEqual({
      role: "assistant",
      content: [{ type: "text", text: "The answer is" }],
    });
  });

  it("regenerates a reply cut after its reasoning instead of continuing its text without it", async () => {
    const model = new MockLanguageModelV3({
      doStream: [
        streamOf([
          { type: "reasoning-start", id: "r" },
          { type: "reasoning-delta", id: "r", delta: "Six times seven." },
          { type: "reasoning-end", id: "r", providerMetadata: { anthropic: { signature: "sig" } } },
          { type: "text-start", id: "t" },
          { type: "text-delta", id: "t", delta: "It is" },
        ]),
        streamOf([...textParts("It is 42."), finish("stop")]),
      ],
    });
    const { output, events } = await continued(model);
    expect(output.messages.at(-1)).toMatchObject({ role: "assistant", content: "It is 42." });
    expect(model.doStreamCalls[1]?.prompt.at(-1)).toMatchObject({ role: "user" });
    expect(events.filter((e) => e.type === "message.reset")).toHaveLength(1);
  });

  it("passes the abort signal to doStream and throws its reason", async () => {
    let seen: AbortSignal | undefined;
    const model = new MockLanguageModelV3({
      doStream: async ({ abortSignal }) => {
        seen = abortSignal;
        return {
          stream: new ReadableStream<LanguageModelV3StreamPart>({
            start(controller) {
              controller.enqueue({ type: "text-delta", id: "t", delta: "Hel" });
              abortSignal?.addEventListener("abort", () => controller.error(new Error("aborted by fetch")));
            },
          }),
        };
      },
    });
    const controller = new AbortController();
    const reason = new Error("stop");
    const events = aiSdkModel(model).stream({ messages: user("hi"), tools: [], signal: controller.signal });
    const iterator = events[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toEqual({ type: "text", delta: "Hel" });
    const pending = iterator.next();
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(seen).toBe(controller.signal);
  });
});

describe("aiSdkModel and credentials in the provider's URL", () => {
  it("keeps them out of the stream and the journal when the call fails (fetch quotes the URL)", async () => {
    // Undici refuses a URL with credentials, quoting it: the error every attempt gets.
    const provider = createOpenAICompatible({ name: "x", baseURL: "http://alice:s3cretPW@127.0.0.1:9/v1" });
    const store = new MemoryStore();
    const agent = defineAgent({
      name: "credentialed",
      model: aiSdkModel(provider.chatModel("m")),
      modelRetry: { maxAttempts: 2, initialDelayMs: 1 },
    });
    const runtime = agentRuntime(agent, store);
    const fiber = await runtime.start(agent, { messages: [{ role: "user", content: "hi" }] });
    const error = await runtime.result(fiber).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    const text = await storeText(store);
    expect(text).toContain("message.retry");
    expect(text).toContain("[redacted]@127.0.0.1");
    expect(text).not.toContain("s3cretPW");
    expect(text).not.toContain("alice");
  });
});

describe("aiSdkModel with @ai-sdk/openai-compatible over real HTTP to the mock model", () => {
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    server = http.createServer(mockModelHandler({ delayMs: 0 }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const mockModel = (providerOptions?: { mock: { interruptAfter: number } }) =>
    aiSdkModel(
      createOpenAICompatible({ name: "mock", baseURL: base, includeUsage: true }).chatModel("mock"),
      {
        continuation: "assistant-prefix",
        ...(providerOptions ? { settings: { providerOptions: { mock: providerOptions } } } : {}),
      },
    );

  it("gives the same conversation as Fiberline's own OpenAI-compatible provider, calculator call included", async () => {
    const run = async (name: string, model: ReturnType<typeof mockModel>) => {
      const agent = defineAgent({ name, model, tools: [calculatorTool()] });
      const rt = agentRuntime(agent, new MemoryStore());
      return await rt.result(await rt.start(agent, { messages: user("What is 12 * 7?") }));
    };
    const viaSdk = await run("sdk", mockModel());
    const direct = await run(
      "direct",
      openAICompatible({ baseUrl: base, model: "mock", continuation: "assistant-prefix" }),
    );
    expect(viaSdk.messages).toEqual(direct.messages);
    expect(viaSdk.messages.find((m) => m.role === "tool")?.content).toContain("84");
    expect(viaSdk.usage.completionTokens).toBeGreaterThan(0);
  });

  it("continues a reply the server cut mid-stream as one seamless message", async () => {
    const agent = defineAgent({
      name: "cut-http",
      model: mockModel({ mock: { interruptAfter: 3 } }),
      modelRetry: { maxAttempts: 3, initialDelayMs: 1 },
    });
    const store = new MemoryStore();
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user("Tell me about durable streams") });
    const output = await rt.result(fiber);

    const reference = defineAgent({ name: "whole", model: mockModel() });
    const rt2 = agentRuntime(reference, new MemoryStore());
    const whole = await rt2.result(
      await rt2.start(reference, { messages: user("Tell me about durable streams") }),
    );

    expect(output.messages.at(-1)).toEqual(whole.messages.at(-1));
    const events = await storedEvents(store, fiber.id);
    expect(events.some((e) => e.type === "message.reset")).toBe(false);
    const shown = events
      .filter((e) => e.type === "text.delta")
      .map((e) => (e.data as { delta: string }).delta);
    expect(shown.join("")).toBe((whole.messages.at(-1) as { content: string }).content);
  });
});
