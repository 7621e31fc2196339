/**
 * Tool deadlines: a tool that never answers (a `fetch` to a server that accepts the connection
 * and sends nothing) must not stall the agent forever. Each attempt gets `timeoutMs`, its signal
 * is aborted when it runs late, the retries run, and then the model is told the tool did not
 * finish in time and the loop goes on. Options the runtime cannot honour are refused up front.
 */

import { afterEach, describe, expect, it } from "vitest";
import { NonRetryableError } from "../core/errors";
import { MAX_TIMER_MS } from "../core/validate";
import { MemoryStore } from "../store/memory-store";
import { crashableStore } from "../testing/crash-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, storedEvents } from "./agent-harness";
import { ScriptedModel } from "./scripted-model";
import type { ToolDefinition } from "./types";

afterEach(closeRuntimes);

const user = [{ role: "user" as const, content: "look it up" }];
const lookupCall = { id: "call_0", name: "lookup", arguments: JSON.stringify({ q: "x" }) };

/** A tool that hangs until its signal aborts, recording each attempt and why it was stopped. */
function hangingTool(
  attempts: { attempt: number; aborted: unknown }[],
  options: Partial<ToolDefinition> = {},
): ToolDefinition<{ q: string }, string> {
  return {
    name: "lookup",
    description: "Looks something up on a slow server.",
    parameters: { type: "object", properties: { q: { type: "string" } }, required: ["q"] },
    ...options,
    execute: (_args, { attempt, signal }) =>
      new Promise<string>((_, reject) => {
        const seen = { attempt, aborted: undefined as unknown };
        attempts.push(seen);
        signal.addEventListener("abort", () => {
          seen.aborted = signal.reason;
          reject(signal.reason);
        });
      }),
  };
}

describe("tool timeouts", () => {
  it("a tool that never answers is stopped at toolTimeoutMs, retried, then reported to the model, and the agent finishes", async () => {
    const attempts: { attempt: number; aborted: unknown }[] = [];
    const model = new ScriptedModel({
      replies: [{ toolCalls: [lookupCall] }, { text: "The lookup timed out." }],
    });
    const agent = defineAgent({
      name: "hang",
      model: model.provider(),
      tools: [hangingTool(attempts)],
      toolTimeoutMs: 30,
      toolRetry: { maxAttempts: 2, backoff: "fixed", initialDelayMs: 1 },
    });
    const store = new MemoryStore();
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user });
    const output = await rt.result(fiber);

    expect(attempts.map((a) => a.attempt)).toEqual([1, 2]);
    for (const { aborted } of attempts)
      expect(aborted).toMatchObject({ name: "TimeoutError", code: "timeout" });
    const error = "The tool lookup did not finish within 30 ms (2 attempts).";
    expect(output.messages.find((m) => m.role === "tool")?.content).toBe(JSON.stringify({ error }));
    expect(output.messages.at(-1)).toMatchObject({ role: "assistant", content: "The lookup timed out." });
    const results = (await storedEvents(store, fiber.id)).filter((e) => e.type === "tool.result");
    expect(results.map((e) => e.data)).toEqual([
      expect.objectContaining({ name: "lookup", status: "error", error }),
    ]);
    // The model's second request carried the timeout as the tool's answer.
    expect(model.requests[1]?.messages.at(-1)).toMatchObject({
      role: "tool",
      content: JSON.stringify({ error }),
    });
  });

  it("after a crash, the replay hands the model the same timeout answer without running the tool again", async () => {
    const attempts: { attempt: number; aborted: unknown }[] = [];
    let release: (() => void) | undefined;
    const waitCalls: number[] = [];
    const wait: ToolDefinition = {
      name: "wait",
      description: "Waits for something.",
      parameters: { type: "object", properties: {} },
      // Hangs in the first process (until the crash), answers in the second.
      execute: (_args, { attempt }) => {
        waitCalls.push(attempt);
        return release === undefined ? new Promise(() => {}) : "waited";
      },
    };
    const replies = [
      { toolCalls: [lookupCall] },
      { toolCalls: [{ id: "call_1", name: "wait", arguments: "{}" }] },
      { text: "done" },
    ];
    const agent = defineAgent({
      name: "replayed",
      model: new ScriptedModel({ replies }).provider(),
      tools: [hangingTool(attempts, { timeoutMs: 20, retry: { maxAttempts: 1 } }), wait],
    });
    const disk = new MemoryStore();
    const dying = crashableStore(disk);
    const first = agentRuntime(agent, dying);
    const fiber = await first.start(agent, { messages: user });
    await expect.poll(() => waitCalls.length, { interval: 5 }).toBe(1);
    dying.crash();
    release = () => {};
    const second = agentRuntime(agent, disk);
    await second.recover();
    const output = await second.result(fiber);

    expect(attempts).toHaveLength(1);
    expect(waitCalls).toEqual([1, 2]);
    const error = "The tool lookup did not finish within 20 ms (1 attempt).";
    expect(output.messages.filter((m) => m.role === "tool").map((m) => m.content)).toEqual([
      JSON.stringify({ error }),
      JSON.stringify("waited"),
    ]);
    const results = (await storedEvents(disk, fiber.id)).filter((e) => e.type === "tool.result");
    expect(results.map((e) => (e.data as { status: string }).status)).toEqual(["error", "ok"]);
  });

  it("a tool's own timeoutMs and retry win over the agent's", async () => {
    const attempts: { attempt: number; aborted: unknown }[] = [];
    const agent = defineAgent({
      name: "own",
      model: new ScriptedModel({ replies: [{ toolCalls: [lookupCall] }, { text: "done" }] }).provider(),
      tools: [hangingTool(attempts, { timeoutMs: 20, retry: { maxAttempts: 1 } })],
      toolTimeoutMs: 60_000,
      toolRetry: { maxAttempts: 5 },
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user }));
    expect(attempts).toHaveLength(1);
    expect(output.messages.find((m) => m.role === "tool")?.content).toBe(
      JSON.stringify({ error: "The tool lookup did not finish within 20 ms (1 attempt)." }),
    );
  });

  it("a tool that answers in time is not affected by its deadline", async () => {
    const agent = defineAgent({
      name: "quick",
      model: new ScriptedModel({ replies: [{ toolCalls: [lookupCall] }, { text: "found" }] }).provider(),
      tools: [
        {
          name: "lookup",
          description: "Looks something up.",
          parameters: { type: "object", properties: { q: { type: "string" } } },
          timeoutMs: 5_000,
          execute: async ({ q }) => `result for ${String(q)}`,
        },
      ],
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user }));
    expect(output.messages.find((m) => m.role === "tool")?.content).toBe(JSON.stringify("result for x"));
  });

  it("a retry after a late attempt that ignores its signal is told it is interrupted, with the same key", async () => {
    const runs: Array<{ attempt: number; interrupted: boolean; key: string }> = [];
    const agent = defineAgent({
      name: "charger",
      model: new ScriptedModel({ replies: [{ toolCalls: [lookupCall] }, { text: "charged" }] }).provider(),
      tools: [
        {
          name: "lookup",
          description: "Charges a card through a slow API that ignores cancellation.",
          parameters: { type: "object", properties: { q: { type: "string" } } },
          timeoutMs: 20,
          retry: { maxAttempts: 2, initialDelayMs: 1 },
          execute: async (_args, { attempt, interrupted, idempotencyKey }) => {
            runs.push({ attempt, interrupted, key: idempotencyKey });
            // The late first attempt may still charge: a tool told so asks the API by the key
            // instead of charging again.
            if (interrupted) return "looked up the charge by its key";
            await new Promise((r) => setTimeout(r, 60));
            return "charged";
          },
        },
      ],
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user }));
    expect(runs.map(({ attempt, interrupted }) => ({ attempt, interrupted }))).toEqual([
      { attempt: 1, interrupted: false },
      { attempt: 2, interrupted: true },
    ]);
    expect(runs[0]?.key).toBe(runs[1]?.key);
    expect(output.messages.find((m) => m.role === "tool")?.content).toBe(
      JSON.stringify("looked up the charge by its key"),
    );
  });

  it.each([
    [
      "a zero toolTimeoutMs",
      { toolTimeoutMs: 0 },
      /toolTimeoutMs.*timeoutMs must be a number of milliseconds above 0/,
    ],
    ["a NaN toolTimeoutMs", { toolTimeoutMs: Number.NaN }, /got NaN/],
    ["a toolTimeoutMs past what a timer can wait", { toolTimeoutMs: MAX_TIMER_MS + 1 }, /at most 2147483647/],
    ["0 tool attempts", { toolRetry: { maxAttempts: 0 } }, /retry.maxAttempts must be a whole number >= 1/],
    ["a fractional tool attempt count", { toolRetry: { maxAttempts: 2.5 } }, /got 2.5/],
    ["a negative tool retry delay", { toolRetry: { initialDelayMs: -1 } }, /retry.initialDelayMs must be/],
    [
      "an unknown backoff",
      { toolRetry: { backoff: "linear" as "fixed" } },
      /retry.backoff must be "exponential" or "fixed"/,
    ],
    [
      "a tool's own negative timeout",
      { tools: [hangingTool([], { timeoutMs: -5 })] },
      /tool "lookup": timeoutMs must/,
    ],
  ])("defineAgent refuses %s with invalid_argument", (_what, options, message) => {
    const define = () =>
      defineAgent({ name: "bad", model: new ScriptedModel({ replies: [] }).provider(), ...options });
    expect(define).toThrow(
      expect.objectContaining({ code: "invalid_argument", message: expect.stringMatching(message) }),
    );
  });
});

describe("tool failures", () => {
  it("a tool that throws a string gives the model the same tool message live and after a crash", async () => {
    let release = false;
    const waits: number[] = [];
    const model = new ScriptedModel({
      replies: [
        { toolCalls: [{ id: "c0", name: "boom", arguments: "{}" }] },
        { toolCalls: [{ id: "c1", name: "wait", arguments: "{}" }] },
        { text: "done" },
      ],
    });
    const agent = defineAgent({
      name: "thrower",
      model: model.provider(),
      tools: [
        {
          name: "boom",
          description: "Fails with a bare string.",
          parameters: { type: "object", properties: {} },
          retry: { maxAttempts: 1 },
          execute: () => {
            throw "quota exceeded";
          },
        },
        {
          name: "wait",
          description: "Hangs in the first life.",
          parameters: { type: "object", properties: {} },
          execute: (_args, { attempt }) => {
            waits.push(attempt);
            return release ? "waited" : new Promise<string>(() => {});
          },
        },
      ],
    });
    const disk = new MemoryStore();
    const dying = crashableStore(disk);
    const first = agentRuntime(agent, dying);
    const fiber = await first.start(agent, { messages: user });
    await expect.poll(() => waits.length, { interval: 5 }).toBe(1);
    dying.crash();
    release = true;
    const second = agentRuntime(agent, disk);
    await second.recover();
    const output = await second.result(fiber);
    const live = model.requests[1]?.messages.find((m) => m.role === "tool")?.content;
    expect(live).toBe(JSON.stringify({ error: "quota exceeded" }));
    // The replay rebuilt the same conversation: the stream, the result and the next model call.
    expect(output.messages.find((m) => m.role === "tool")?.content).toBe(live);
    expect(model.requests.at(-1)?.messages.find((m) => m.role === "tool")?.content).toBe(live);
    const streamed = (await storedEvents(disk, fiber.id)).find((e) => e.type === "tool.result");
    expect((streamed?.data as { error?: string } | undefined)?.error).toBe("quota exceeded");
  });

  it("a tool's NonRetryableError with a cause that is not an Error tells the model its own message", async () => {
    const model = new ScriptedModel({
      replies: [{ toolCalls: [{ id: "c0", name: "pay", arguments: "{}" }] }, { text: "asked" }],
    });
    const agent = defineAgent({
      name: "payer",
      model: model.provider(),
      tools: [
        {
          name: "pay",
          description: "Charges the card.",
          parameters: { type: "object", properties: {} },
          execute: () => {
            throw new NonRetryableError("The card was declined; ask the user for another card.", {
              cause: { status: 402 },
            });
          },
        },
      ],
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user }));
    expect(output.messages.find((m) => m.role === "tool")?.content).toBe(
      JSON.stringify({ error: "The card was declined; ask the user for another card." }),
    );
  });
});
