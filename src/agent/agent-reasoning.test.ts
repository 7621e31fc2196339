/**
 * Reasoning ("thinking") of models that stream it: it reaches the reader as `reasoning.delta`
 * chunks, is kept on the assistant message the agent returns, survives a cut stream without
 * being shown twice, and is never sent back to the model (issue 15, section 3).
 */

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { FiberEvent } from "../core/records";
import { MemoryStore } from "../store/memory-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, recordingTool, storedEvents, type ToolRun } from "./agent-harness";
import { mockReply } from "./mock-model";
import { mockModelHandler } from "./mock-server";
import { messageIdOf } from "./model-step";
import { openAICompatible } from "./openai";
import { ScriptedModel, type ScriptedReply } from "./scripted-model";
import type { AssistantMessage } from "./types";

afterEach(closeRuntimes);

let server: Server;
let baseUrl: string;
beforeAll(async () => {
  server = createServer(mockModelHandler({ delayMs: 0 }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const user = (content: string) => [{ role: "user" as const, content }];

/** Per message: the reasoning and the text a reader shows, honouring `message.reset`. */
function rendered(events: readonly FiberEvent[]): Map<string, { reasoning: string; text: string }> {
  const out = new Map<string, { reasoning: string; text: string }>();
  for (const ev of events) {
    const data = ev.data as { messageId: string; delta?: string };
    if (ev.type === "message.start" || ev.type === "message.reset")
      out.set(data.messageId, { reasoning: "", text: "" });
    const message = out.get(data.messageId);
    if (ev.type === "reasoning.delta" && message) message.reasoning += data.delta;
    if (ev.type === "text.delta" && message) message.text += data.delta;
  }
  return out;
}

const replies: ScriptedReply[] = [
  {
    reasoning: "The user wants a.txt gone; I should call delete_file.",
    toolCalls: [{ id: "call_1", name: "delete_file", arguments: '{"path":"a.txt"}' }],
  },
  { reasoning: "The tool said it is deleted. Tell them.", text: "Deleted a.txt for you." },
];

describe("reasoning", () => {
  it("streams as reasoning.delta chunks before the text and is kept on the assistant messages", async () => {
    const runs: ToolRun[] = [];
    const agent = defineAgent({
      name: "thinker",
      model: new ScriptedModel({ replies }).provider(),
      tools: [recordingTool(runs)],
    });
    const store = new MemoryStore();
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user("delete a.txt") });
    const output = await rt.result(fiber);

    const events = await storedEvents(store, fiber.id);
    const shown = rendered(events);
    expect(shown.get(messageIdOf(fiber.id, 1))).toEqual({ reasoning: replies[0]?.reasoning, text: "" });
    expect(shown.get(messageIdOf(fiber.id, 2))).toEqual({
      reasoning: replies[1]?.reasoning,
      text: "Deleted a.txt for you.",
    });
    const second = events.filter(
      (e) => (e.data as { messageId?: string }).messageId === messageIdOf(fiber.id, 2),
    );
    const types = second.map((e) => e.type).filter((t, i, all) => t !== all[i - 1]);
    expect(types).toEqual(["message.start", "reasoning.delta", "text.delta", "message.end"]);

    const assistants = output.messages.filter((m): m is AssistantMessage => m.role === "assistant");
    expect(assistants.map((m) => m.reasoning)).toEqual([replies[0]?.reasoning, replies[1]?.reasoning]);
    expect(runs).toHaveLength(1);
  });

  it("is not sent back to the model in the next request", async () => {
    const model = new ScriptedModel({ replies });
    const agent = defineAgent({ name: "thinker", model: model.provider(), tools: [recordingTool([])] });
    const rt = agentRuntime(agent, new MemoryStore());
    await rt.result(await rt.start(agent, { messages: user("delete a.txt") }));

    expect(model.requests).toHaveLength(2);
    const sentBack = model.requests[1]?.messages.find((m) => m.role === "assistant");
    expect(sentBack).toBeDefined();
    expect(sentBack).not.toHaveProperty("reasoning");
    expect(JSON.stringify(model.requests[1]?.messages)).not.toContain("I should call delete_file");
  });

  it("of a stream cut mid-reasoning is shown once: the reply restarts after message.reset", async () => {
    const reply: ScriptedReply = { reasoning: "Seventeen times twenty-three is 391.", text: "391" };
    // The first request is cut a third of the way in, inside the reasoning deltas.
    const model = new ScriptedModel({
      replies: [reply],
      cut: (request, body) => (request === 0 ? Math.floor(body.length / 3) : undefined),
    });
    const agent = defineAgent({
      name: "cut-thinker",
      model: model.provider(),
      modelRetry: { initialDelayMs: 1 },
    });
    const store = new MemoryStore();
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user("17 x 23?") });
    const output = await rt.result(fiber);

    const events = await storedEvents(store, fiber.id);
    expect(events.some((e) => e.type === "message.reset")).toBe(true);
    expect(rendered(events).get(messageIdOf(fiber.id, 1))).toEqual({
      reasoning: reply.reasoning,
      text: "391",
    });
    expect(model.requests.map((r) => r.prefix)).toEqual(["", ""]);
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: "391", reasoning: reply.reasoning });
  });

  it("of a stream cut mid-text is kept while the text continues from its prefix", async () => {
    const reply: ScriptedReply = { reasoning: "Short thought.", text: "A longer answer that gets cut off." };
    const model = new ScriptedModel({
      replies: [reply],
      cut: (request, body) => (request === 0 ? Math.floor(body.length * 0.6) : undefined),
    });
    const agent = defineAgent({
      name: "cut-answer",
      model: model.provider(),
      modelRetry: { initialDelayMs: 1 },
    });
    const store = new MemoryStore();
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user("explain") });
    const output = await rt.result(fiber);

    const events = await storedEvents(store, fiber.id);
    expect(events.some((e) => e.type === "message.reset")).toBe(false);
    expect(model.requests[1]?.prefix).not.toBe("");
    expect(rendered(events).get(messageIdOf(fiber.id, 1))).toEqual({
      reasoning: reply.reasoning,
      text: reply.text,
    });
    expect(output.messages.at(-1)).toEqual({
      role: "assistant",
      content: reply.text,
      reasoning: reply.reasoning,
    });
  });
});

describe("reasoning from the mock model over HTTP", () => {
  it("comes first for a prompt that asks it to think, and a cut mid-answer continues without repeating it", async () => {
    const prompt = "think about why agent loops need durability";
    const expected = mockReply([{ role: "user", content: prompt }]);
    expect(expected.reasoning).toMatch(/^The user asks: "think about why/);
    const bodies: { messages: { role: string; content: unknown }[] }[] = [];
    const model = openAICompatible({
      baseUrl,
      model: "mock",
      continuation: "assistant-prefix",
      // The first request is cut after 6 text pieces, once the reasoning has streamed whole.
      extraBody: { mock: { interruptAfter: 6 } },
      fetch: (input, init) => {
        bodies.push(JSON.parse(String(init?.body)));
        return fetch(input, init);
      },
    });
    const agent = defineAgent({ name: "mock-thinker", model, modelRetry: { initialDelayMs: 1 } });
    const store = new MemoryStore();
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user(prompt) });
    const output = await rt.result(fiber);

    const events = await storedEvents(store, fiber.id);
    expect(bodies).toHaveLength(2);
    expect(bodies[1]?.messages.at(-1)).toMatchObject({ role: "assistant", content: expect.any(String) });
    expect(events.some((e) => e.type === "message.reset")).toBe(false);
    expect(rendered(events).get(messageIdOf(fiber.id, 1))).toEqual({
      reasoning: expected.reasoning,
      text: expected.text,
    });
    expect(output.messages.at(-1)).toEqual({
      role: "assistant",
      content: expected.text,
      reasoning: expected.reasoning,
    });
  });

  it("is absent for prompts that do not ask for it", () => {
    expect(mockReply([{ role: "user", content: "what is 12 * 7" }])).not.toHaveProperty("reasoning");
    expect(mockReply([{ role: "user", content: "think: what is 12 * 7" }]).reasoning).toMatch(
      /calculator tool/,
    );
  });
});
