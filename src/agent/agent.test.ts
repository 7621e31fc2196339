/**
 * The agent loop against the mock model served over real HTTP: tool calls, approvals, argument
 * validation, max turns, and a model call cut off by a crash recovering by `continue` and by
 * `retry` so that the reader sees exactly the uninterrupted reply.
 */

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { FiberDefinition } from "../core/define";
import type { FiberEvent } from "../core/records";
import { createRuntime, type Runtime } from "../core/runtime";
import type { Store } from "../core/store";
import { MemoryStore } from "../store/memory-store";
import { crashableStore } from "../testing/crash-store";
import { type AgentInput, type AgentOutput, defineAgent } from "./agent";
import { calculatorTool, clockTool, evaluateArithmetic } from "./example-tools";
import { mockReply } from "./mock-model";
import { mockModelHandler } from "./mock-server";
import { openAICompatible } from "./openai";
import type { ChatMessage, ModelProvider, ToolDefinition } from "./types";

let server: Server;
let baseUrl: string;
beforeAll(async () => {
  server = createServer(mockModelHandler({ delayMs: 0 }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(
    runtimes.splice(0).map((r) => Promise.race([r.close(), new Promise((res) => setTimeout(res, 10))])),
  );
});

function mockModel(options: { delayMs?: number; continuation?: boolean } = {}): ModelProvider {
  return openAICompatible({
    baseUrl,
    model: "mock",
    continuation: options.continuation === false ? "none" : "assistant-prefix",
    headers: { "x-mock-delay-ms": String(options.delayMs ?? 0) },
  });
}

function run(agent: FiberDefinition<AgentInput, AgentOutput>, store: Store = new MemoryStore()): Runtime {
  const rt = createRuntime({ store, fibers: [agent], leaseMs: 30, pollIntervalMs: 20 });
  runtimes.push(rt);
  return rt;
}

async function readAll(rt: Runtime, id: string): Promise<FiberEvent[]> {
  const out: FiberEvent[] = [];
  for await (const ev of rt.events(id)) out.push(ev);
  return out;
}

/** What a chat UI shows: text per message, honouring message.reset. */
function rendered(events: FiberEvent[]): Map<string, string> {
  const text = new Map<string, string>();
  for (const ev of events) {
    const data = ev.data as { messageId?: string; delta?: string };
    if (ev.type === "message.start" || ev.type === "message.reset") text.set(String(data.messageId), "");
    if (ev.type === "text.delta")
      text.set(String(data.messageId), (text.get(String(data.messageId)) ?? "") + data.delta);
  }
  return text;
}

const user = (content: string): ChatMessage[] => [{ role: "user", content }];

describe("defineAgent with the mock model over HTTP", () => {
  it("answers a plain prompt with streamed text equal to the model's reply", async () => {
    const agent = defineAgent({ name: "plain", model: mockModel() });
    const rt = run(agent);
    const fiber = await rt.start(agent, { messages: user("Tell me about durable execution") });
    const output = await rt.result(fiber);
    const expected = mockReply(user("Tell me about durable execution")).text;
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: expected });
    expect(output.turns).toBe(1);
    expect(output.usage.completionTokens).toBeGreaterThan(0);
    const events = await readAll(rt, fiber.id);
    expect(events.map((e) => e.type).filter((t) => t !== "text.delta")).toEqual([
      "fiber.start",
      "message.start",
      "message.end",
      "fiber.end",
    ]);
    expect([...rendered(events).values()]).toEqual([expected]);
  });

  it("calls a tool, sends its result back and answers with it", async () => {
    const agent = defineAgent({ name: "calc", model: mockModel(), tools: [calculatorTool(), clockTool()] });
    const rt = run(agent);
    const fiber = await rt.start(agent, { messages: user("what is 12 * 7") });
    const output = await rt.result(fiber);
    expect(output.turns).toBe(2);
    const roles = output.messages.map((m) => m.role);
    expect(roles).toEqual(["user", "assistant", "tool", "assistant"]);
    expect(output.messages[2]).toMatchObject({
      role: "tool",
      content: JSON.stringify({ expression: "12 * 7", value: 84 }),
    });
    expect(String(output.messages[3]?.content)).toContain("84");
    const types = (await readAll(rt, fiber.id)).map((e) => e.type).filter((t) => t !== "text.delta");
    expect(types).toEqual([
      "fiber.start",
      "message.start",
      "tool.call",
      "message.end",
      "tool.result",
      "message.start",
      "message.end",
      "fiber.end",
    ]);
  });

  it("waits durably for approval and runs the tool only when approved", async () => {
    const deleted: string[] = [];
    const deleteFile: ToolDefinition<{ path: string }, string> = {
      name: "delete_file",
      description: "Deletes a file.",
      parameters: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
      requiresApproval: true,
      execute: ({ path }) => {
        deleted.push(path);
        return `deleted ${path}`;
      },
    };
    const agent = defineAgent({ name: "careful", model: mockModel(), tools: [deleteFile] });
    for (const approved of [false, true]) {
      deleted.length = 0;
      const rt = run(agent);
      const fiber = await rt.start(agent, { messages: user("please delete the file notes.txt") });
      await expect.poll(async () => (await rt.get(fiber.id))?.status).toBe("waiting");
      const approval = (await readUntil(rt, fiber.id, "tool.approval")).data as { event: string };
      await rt.sendEvent(fiber.id, approval.event, {
        approved,
        reason: approved ? undefined : "not now",
      });
      const output = await rt.result(fiber);
      const toolMessage = output.messages.find((m) => m.role === "tool");
      if (approved) {
        expect(deleted).toHaveLength(1);
        expect(toolMessage?.content).toContain("deleted");
      } else {
        expect(deleted).toEqual([]);
        expect(toolMessage?.content).toContain("denied");
      }
    }
  });

  it("sends invalid tool arguments back to the model as a tool error instead of failing", async () => {
    let call = 0;
    const scripted: ModelProvider = {
      name: "scripted",
      model: "scripted",
      supportsContinuation: false,
      async *stream({ messages }) {
        call++;
        if (call === 1) {
          yield { type: "tool_call", id: "call_1", name: "calculator", arguments: '{"expr": 5}' };
          yield { type: "finish", reason: "tool_calls" };
        } else {
          const last = messages.at(-1);
          yield { type: "text", delta: `saw: ${last?.role === "tool" ? last.content : "?"}` };
          yield { type: "finish", reason: "stop" };
        }
      },
    };
    const agent = defineAgent({ name: "strict", model: scripted, tools: [calculatorTool()] });
    const rt = run(agent);
    const output = await rt.result(await rt.start(agent, { messages: user("compute") }));
    expect(String(output.messages.at(-1)?.content)).toMatch(
      /saw: .*Invalid arguments for calculator: arguments.expression is required\. arguments.expr is not an allowed property\./,
    );
  });

  it("fails with max_turns when the model never stops calling tools", async () => {
    const looping: ModelProvider = {
      name: "looping",
      model: "looping",
      supportsContinuation: false,
      async *stream({ messages }) {
        yield { type: "tool_call", id: `call_${messages.length}`, name: "clock", arguments: "{}" };
        yield { type: "finish", reason: "tool_calls" };
      },
    };
    const agent = defineAgent({ name: "loops", model: looping, tools: [clockTool()], maxTurns: 3 });
    const rt = run(agent);
    await expect(rt.result(await rt.start(agent, { messages: user("go") }))).rejects.toMatchObject({
      code: "max_turns",
    });
  });
});

async function readUntil(rt: Runtime, id: string, type: string): Promise<FiberEvent> {
  for await (const ev of rt.events(id)) if (ev.type === type) return ev;
  throw new Error(`no ${type} chunk`);
}

describe("a model call cut off by a crash", () => {
  for (const continuation of [true, false]) {
    it(`recovers by ${continuation ? "continue" : "retry with message.reset"} and the reader sees exactly the uninterrupted reply`, async () => {
      const prompt = "Explain why agent loops need durability";
      const expected = mockReply(user(prompt)).text;
      const disk = new MemoryStore();
      const dying = crashableStore(disk);
      const agent = defineAgent({ name: "writer", model: mockModel({ delayMs: 3, continuation }) });
      const first = run(agent, dying);
      const fiber = await first.start(agent, { messages: user(prompt) });
      // Crash once a good part of the reply is durable.
      await expect
        .poll(
          async () => (await disk.readStream(fiber.id, 0)).filter((c) => c.type === "text.delta").length,
          { interval: 5 },
        )
        .toBeGreaterThan(8);
      dying.crash();
      const second = run(agent, disk);
      await second.recover();
      const output = await second.result(fiber);
      expect(output.messages.at(-1)?.content).toBe(expected);
      const events = await readAll(second, fiber.id);
      expect([...rendered(events).values()]).toEqual([expected]);
      expect(events.some((e) => e.type === "fiber.recovered")).toBe(true);
      expect(events.some((e) => e.type === "message.reset")).toBe(!continuation);
      expect(events.filter((e) => e.type === "message.start")).toHaveLength(continuation ? 1 : 1);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    });
  }

  it("runs a tool cut off by a crash again with the same key, and tells it so", async () => {
    const runs: Array<{ key: string; attempt: number; interrupted: boolean }> = [];
    let hang = true;
    const cut: ToolDefinition<{ expression: string }, number> = {
      name: "calculator",
      description: "Evaluates arithmetic.",
      parameters: {
        type: "object",
        properties: { expression: { type: "string" } },
        required: ["expression"],
      },
      execute: async ({ expression }, { idempotencyKey, attempt, interrupted }) => {
        runs.push({ key: idempotencyKey, attempt, interrupted });
        if (hang) await new Promise(() => {});
        return evaluateArithmetic(expression);
      },
    };
    const disk = new MemoryStore();
    const dying = crashableStore(disk);
    const agent = defineAgent({ name: "cut", model: mockModel({ delayMs: 4 }), tools: [cut] });
    const first = run(agent, dying);
    const fiber = await first.start(agent, { messages: user("calculate (3+4)*2") });
    await expect.poll(() => runs.length, { interval: 5 }).toBe(1);
    dying.crash();
    hang = false;
    const second = run(agent, disk);
    await second.recover();
    const output = await second.result(fiber);
    expect(String(output.messages.at(-1)?.content)).toContain("14");
    expect(runs.map((r) => [r.attempt, r.interrupted])).toEqual([
      [1, false],
      [2, true],
    ]);
    expect(runs[1]?.key).toBe(runs[0]?.key);
  });

  it("runs a tool exactly once when the crash comes after it finished", async () => {
    const effects = new Map<string, number>();
    const counted: ToolDefinition<{ expression: string }, number> = {
      name: "calculator",
      description: "Evaluates arithmetic.",
      parameters: {
        type: "object",
        properties: { expression: { type: "string" } },
        required: ["expression"],
      },
      execute: ({ expression }, { idempotencyKey }) => {
        effects.set(idempotencyKey, (effects.get(idempotencyKey) ?? 0) + 1);
        return evaluateArithmetic(expression);
      },
    };
    const disk = new MemoryStore();
    const dying = crashableStore(disk);
    const agent = defineAgent({ name: "once", model: mockModel({ delayMs: 4 }), tools: [counted] });
    const first = run(agent, dying);
    const fiber = await first.start(agent, { messages: user("calculate (3+4)*2") });
    await expect
      .poll(async () => (await disk.readStream(fiber.id, 0)).filter((c) => c.type === "text.delta").length, {
        interval: 5,
      })
      .toBeGreaterThan(2);
    dying.crash();
    const second = run(agent, disk);
    await second.recover();
    const output = await second.result(fiber);
    expect(String(output.messages.at(-1)?.content)).toContain("14");
    expect([...effects.values()]).toEqual([1]);
    expect([...effects.keys()][0]).toMatch(new RegExp(`^${fiber.id}:m1#0:call_`));
  });
});
