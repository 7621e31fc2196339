/**
 * The suspicions of issue 20 argued from the code, each settled by a test: a surrogate pair split
 * between deltas, `Retry-After` waits counted as stalls, usage of failed attempts, and replies
 * too large for the journal or with too many tool calls.
 */

import { afterEach, describe, expect, it } from "vitest";
import { InvalidInputError } from "../core/errors";
import { createRuntime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, recordingTool, storedEvents, type ToolRun } from "./agent-harness";
import { ModelError } from "./errors";
import { openAICompatible } from "./openai";
import { sseBody } from "./scripted-model";
import type { ModelEvent, ModelProvider, ModelRequest, ToolDefinition } from "./types";

afterEach(closeRuntimes);

const user = [{ role: "user" as const, content: "hi" }];
const fast = { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 2 };

/** A provider whose attempt number n (0-based) plays `attempts[n]`, recording each request. */
function attemptsProvider(
  attempts: ((request: ModelRequest) => AsyncGenerator<ModelEvent>)[],
  requests: ModelRequest[] = [],
): ModelProvider {
  return {
    name: "attempts",
    model: "attempts",
    supportsContinuation: true,
    stream(request) {
      requests.push(request);
      const attempt = attempts[requests.length - 1];
      if (!attempt) throw new Error("no more attempts scripted");
      return attempt(request);
    },
  };
}

const broken = () => new ModelError("connection reset", { kind: "network", retryable: true });

describe("suspicions argued from the code", () => {
  it("a surrogate pair split between deltas never leaves half a character in the stream or the prefix", async () => {
    const requests: ModelRequest[] = [];
    const model = attemptsProvider(
      [
        async function* () {
          yield { type: "text", delta: "Hi \ud83d" };
          throw broken();
        },
        async function* (request) {
          const rest = "Hi \ud83d\ude00!".slice(request.prefix?.length ?? 0);
          yield { type: "text", delta: rest };
          yield { type: "finish", reason: "stop" };
        },
      ],
      requests,
    );
    const store = new MemoryStore();
    const agent = defineAgent({ name: "emoji", model, modelRetry: fast });
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user });
    const output = await rt.result(fiber);
    expect(output.messages.at(-1)?.content).toBe("Hi 😀!");
    expect(requests[1]?.prefix).toBe("Hi ");
    const deltas = (await storedEvents(store, fiber.id))
      .filter((e) => e.type === "text.delta")
      .map((e) => (e.data as { delta: string }).delta);
    for (const delta of deltas) expect(delta.isWellFormed()).toBe(true);
    expect(deltas.join("")).toBe("Hi 😀!");
  });

  it("a Retry-After wait is not a stall: the retry comes when the endpoint asked, once", async () => {
    const calls: number[] = [];
    const model = openAICompatible({
      baseUrl: "http://h.invalid/v1",
      model: "m",
      fetch: (async () => {
        calls.push(Date.now());
        if (calls.length === 1)
          return new Response('{"error":{"message":"slow down"}}', {
            status: 429,
            headers: { "retry-after-ms": "300" },
          });
        return new Response(sseBody({ text: "ok" }), { headers: { "content-type": "text/event-stream" } });
      }) as typeof fetch,
    });
    const agent = defineAgent({ name: "patient", model, noProgressTimeoutMs: 150, modelRetry: fast });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user }));
    expect(output.messages.at(-1)?.content).toBe("ok");
    expect(calls).toHaveLength(2);
    expect((calls[1] ?? 0) - (calls[0] ?? 0)).toBeGreaterThanOrEqual(290);
  });

  it("usage counts the tokens of attempts that failed after reporting them", async () => {
    const model = attemptsProvider([
      async function* () {
        yield { type: "text", delta: "Par" };
        yield { type: "usage", usage: { promptTokens: 10, completionTokens: 5 } };
        throw broken();
      },
      async function* () {
        yield { type: "text", delta: "tial" };
        yield { type: "usage", usage: { promptTokens: 12, completionTokens: 7 } };
        yield { type: "finish", reason: "stop" };
      },
    ]);
    const agent = defineAgent({ name: "billing", model, modelRetry: fast });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user }));
    expect(output.messages.at(-1)?.content).toBe("Partial");
    expect(output.usage).toEqual({ promptTokens: 22, completionTokens: 12 });
  });

  it("a reply too large for the journal is cut while streaming instead of failing the fiber after it", async () => {
    const model = attemptsProvider([
      async function* () {
        for (let i = 0; i < 60; i++) yield { type: "text", delta: "y".repeat(100) };
        yield { type: "finish", reason: "stop" };
      },
    ]);
    const agent = defineAgent({ name: "verbose", model, maxReplyChars: 1_000 });
    const store = new MemoryStore();
    const rt = createRuntime({ store, fibers: [agent], maxPayloadBytes: 4_096 });
    try {
      const fiber = await rt.start(agent, { messages: user });
      const output = await rt.result(fiber);
      expect(output.messages.at(-1)?.content).toBe("y".repeat(1_000));
      const end = (await storedEvents(store, fiber.id)).find((e) => e.type === "message.end");
      expect(end?.data).toMatchObject({ finishReason: "length" });
    } finally {
      await rt.close();
    }
  });

  it("a conversation whose result would not fit stops before its next tool runs, not after the last", async () => {
    const runs: string[] = [];
    const fetchPage: ToolDefinition<{ n: number }, string> = {
      name: "fetch_page",
      description: "Fetches a page.",
      parameters: { type: "object", properties: { n: { type: "number" } } },
      execute: async ({ n }) => {
        runs.push(`page ${n}`);
        return "p".repeat(1_500); // each result fits; four of them in the result do not
      },
    };
    const callPage = (n: number) =>
      async function* (): AsyncGenerator<ModelEvent> {
        yield { type: "tool_call", id: `call_${n}`, name: "fetch_page", arguments: JSON.stringify({ n }) };
        yield { type: "finish", reason: "tool_calls" };
      };
    const model = attemptsProvider([callPage(1), callPage(2), callPage(3), callPage(4), callPage(5)]);
    const agent = defineAgent({ name: "reader", model, tools: [fetchPage], maxTurns: 10 });
    const store = new MemoryStore();
    const rt = createRuntime({ store, fibers: [agent], maxPayloadBytes: 4_096 });
    try {
      const fiber = await rt.start(agent, { messages: user });
      const error = await rt.result(fiber).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "payload_too_large" });
      expect((error as Error).message).toContain('Agent "reader"');
      expect((error as Error).message).toContain("stopped before running more tools");
      expect(runs).toEqual(["page 1", "page 2"]);
    } finally {
      await rt.close();
    }
  });

  it("keeps at most maxToolCalls calls of one reply", async () => {
    const call = (i: number): ModelEvent => ({
      type: "tool_call",
      id: `c${i}`,
      name: "none",
      arguments: "{}",
    });
    const model = attemptsProvider([
      async function* () {
        for (let i = 0; i < 5; i++) yield call(i);
        yield { type: "finish", reason: "tool_calls" };
      },
      async function* () {
        yield { type: "text", delta: "done" };
        yield { type: "finish", reason: "stop" };
      },
    ]);
    const agent = defineAgent({ name: "busy", model, maxToolCalls: 2 });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user }));
    const assistant = output.messages[1];
    expect(assistant?.role === "assistant" ? assistant.tool_calls?.map((c) => c.id) : undefined).toEqual([
      "c0",
      "c1",
    ]);
    expect(output.messages.filter((m) => m.role === "tool")).toHaveLength(2);
  });
});

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
function quiet(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

describe("the no-progress watchdog", () => {
  it("gives a model that thinks before its first event firstEventTimeoutMs, and the gaps after it noProgressTimeoutMs", async () => {
    const requests: ModelRequest[] = [];
    const thinker = async function* (request: ModelRequest): AsyncGenerator<ModelEvent> {
      await quiet(300, request.signal); // thinking: nothing streamed
      yield { type: "text", delta: "Forty" };
      yield { type: "text", delta: "-two." };
      yield { type: "finish", reason: "stop" };
    };
    const agent = defineAgent({
      name: "thinker",
      model: attemptsProvider([thinker], requests),
      noProgressTimeoutMs: 100,
      firstEventTimeoutMs: 2_000,
      modelRetry: fast,
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user }));
    expect(output.messages.at(-1)?.content).toBe("Forty-two.");
    expect(requests).toHaveLength(1);

    // A model that goes quiet after its first event is a stall, retried.
    const stalled: ModelRequest[] = [];
    const quitter = attemptsProvider(
      [
        async function* (request) {
          yield { type: "text", delta: "Forty" };
          await quiet(300, request.signal);
          yield { type: "finish", reason: "stop" };
        },
        async function* () {
          yield { type: "text", delta: "-two." };
          yield { type: "finish", reason: "stop" };
        },
      ],
      stalled,
    );
    const second = defineAgent({
      name: "quitter",
      model: quitter,
      noProgressTimeoutMs: 100,
      firstEventTimeoutMs: 2_000,
      modelRetry: fast,
    });
    const rt2 = agentRuntime(second, new MemoryStore());
    const out2 = await rt2.result(await rt2.start(second, { messages: user }));
    expect(out2.messages.at(-1)?.content).toBe("Forty-two.");
    expect(stalled).toHaveLength(2);
  });

  it("refuses a timeout a timer cannot wait (Infinity, past 2^31 - 1 ms, negative) when the agent is defined", () => {
    for (const ms of [Number.POSITIVE_INFINITY, 30 * 86_400_000, -1, Number.NaN]) {
      for (const option of ["noProgressTimeoutMs", "firstEventTimeoutMs"] as const) {
        const define = () => defineAgent({ name: "a", model: attemptsProvider([]), [option]: ms });
        expect(define).toThrow(InvalidInputError);
        expect(define).toThrow(`${option} must be a number of milliseconds from 0 (never)`);
      }
    }
  });

  it("turns each timeout off with 0, and only that one", async () => {
    const thinksThenQuits = async function* (request: ModelRequest): AsyncGenerator<ModelEvent> {
      await quiet(300, request.signal); // before the first event
      yield { type: "text", delta: "Forty" };
      await quiet(300, request.signal); // between events
      yield { type: "text", delta: "-two." };
      yield { type: "finish", reason: "stop" };
    };
    // What a second attempt, reached only once the first was aborted as stalled, streams: the rest.
    const answersAtOnce = async function* (request: ModelRequest): AsyncGenerator<ModelEvent> {
      yield { type: "text", delta: "Forty-two.".slice(request.prefix?.length ?? 0) };
      yield { type: "finish", reason: "stop" };
    };
    const run = async (name: string, firstEventTimeoutMs: number, noProgressTimeoutMs: number) => {
      const requests: ModelRequest[] = [];
      const agent = defineAgent({
        name,
        model: attemptsProvider([thinksThenQuits, answersAtOnce], requests),
        firstEventTimeoutMs,
        noProgressTimeoutMs,
        modelRetry: fast,
      });
      const rt = agentRuntime(agent, new MemoryStore());
      const output = await rt.result(await rt.start(agent, { messages: user }));
      expect(output.messages.at(-1)?.content).toBe("Forty-two.");
      return requests.length;
    };
    expect(await run("both-off", 0, 0)).toBe(1);
    expect(await run("between-off", 100, 0)).toBe(2); // the silence before the first event still counts
    expect(await run("first-off", 0, 100)).toBe(2); // the silence between events still counts
  });

  it("counts an OpenAI-compatible server's keep-alive comments as signs of life, up to a limit", async () => {
    const encoder = new TextEncoder();
    const sse = (data: unknown) => encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
    const delta = (content: string) => sse({ choices: [{ index: 0, delta: { content } }] });
    /** A server that answers a first token, then keeps the connection alive with comments for `keptMs`. */
    const server = (keptMs: number[], calls: { n: number }) =>
      (async () => {
        const ms = keptMs[calls.n++] ?? 0;
        const body = new ReadableStream<Uint8Array>({
          async start(controller) {
            controller.enqueue(delta("Forty"));
            // A pause mid-reply (OpenRouter's ": OPENROUTER PROCESSING" every 40 ms).
            for (let spent = 0; spent < ms; spent += 40) {
              await new Promise((resolve) => setTimeout(resolve, 40));
              controller.enqueue(encoder.encode(": OPENROUTER PROCESSING\n\n"));
            }
            controller.enqueue(delta("-two."));
            controller.enqueue(sse({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }));
            controller.enqueue(encoder.encode("data: [DONE]\n\n"));
            controller.close();
          },
        });
        return new Response(body, { headers: { "content-type": "text/event-stream" } });
      }) as typeof fetch;
    const run = async (keptMs: number[]) => {
      const calls = { n: 0 };
      const model = openAICompatible({
        baseUrl: "http://h.invalid/v1",
        model: "m",
        fetch: server(keptMs, calls),
      });
      const agent = defineAgent({
        name: "kept",
        model,
        noProgressTimeoutMs: 100,
        firstEventTimeoutMs: 600,
        modelRetry: fast,
        recovery: "retry",
      });
      const rt = agentRuntime(agent, new MemoryStore());
      const output = await rt.result(await rt.start(agent, { messages: user }));
      return { text: output.messages.at(-1)?.content, calls: calls.n };
    };
    // 400 ms of keep-alives between two tokens (four times noProgressTimeoutMs): one call.
    expect(await run([400])).toEqual({ text: "Forty-two.", calls: 1 });
    // Keep-alives with no event for longer than firstEventTimeoutMs: a stall, retried.
    expect(await run([1_500, 0])).toEqual({ text: "Forty-two.", calls: 2 });
  });

  it("takes a tool call's streamed arguments for progress: a long call is not a stall", async () => {
    const encoder = new TextEncoder();
    const sse = (data: unknown) => encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
    const runs: ToolRun[] = [];
    let requests = 0;
    const fetch = (async (_url: unknown, init?: RequestInit) => {
      requests++;
      const answered = String(init?.body).includes('"role":"tool"');
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          const delta = (d: unknown) => controller.enqueue(sse({ choices: [{ index: 0, delta: d }] }));
          if (answered) delta({ content: "Done." });
          else {
            delta({
              tool_calls: [
                { index: 0, id: "c1", type: "function", function: { name: "delete_file", arguments: "" } },
              ],
            });
            // A long argument, a character every 40 ms for ~1 s: more than either timeout, no event.
            for (const char of JSON.stringify({ path: "x".repeat(16) })) {
              await new Promise((resolve) => setTimeout(resolve, 40));
              delta({ tool_calls: [{ index: 0, function: { arguments: char } }] });
            }
          }
          const reason = answered ? "stop" : "tool_calls";
          controller.enqueue(sse({ choices: [{ index: 0, delta: {}, finish_reason: reason }] }));
          controller.enqueue(encoder.encode("data: [DONE]\n\n"));
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    }) as typeof globalThis.fetch;
    const agent = defineAgent({
      name: "writer",
      model: openAICompatible({ baseUrl: "http://h.invalid/v1", model: "m", fetch }),
      tools: [recordingTool(runs)],
      noProgressTimeoutMs: 200,
      firstEventTimeoutMs: 300,
      modelRetry: { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 2 },
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user }));
    expect(output.messages.at(-1)?.content).toBe("Done.");
    expect(requests).toBe(2);
    expect(runs).toHaveLength(1);
  });
});
