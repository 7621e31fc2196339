/**
 * Anthropic's extended thinking with tools, through the real `@ai-sdk/anthropic` provider over
 * real HTTP (a local server speaking the Messages API's event stream): a reply's thinking blocks
 * go back to the model with their signature (and a redacted block with its data), unchanged and
 * before the tool call, in the request after the tool ran. Anthropic rejects that request when
 * they are missing. Also after a crash at any write of the run.
 */

import http from "node:http";
import type { AddressInfo } from "node:net";
import { createAnthropic } from "@ai-sdk/anthropic";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type AgentOutput, defineAgent } from "../agent/agent";
import { closeRuntimes } from "../agent/agent-harness";
import type { ToolDefinition } from "../agent/types";
import { createRuntime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { crashableStore } from "../testing/crash-store";
import { aiSdkModel } from "./ai-sdk-model";

afterEach(closeRuntimes);

const THINKING = "The user asks the time. I should call the clock tool.";
const SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";
const REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP";

function sse(events: Array<Record<string, unknown>>): string {
  return events.map((event) => `event: ${String(event.type)}\ndata: ${JSON.stringify(event)}\n\n`).join("");
}

const start = (id: string) => ({
  type: "message_start",
  message: {
    id,
    type: "message",
    role: "assistant",
    model: "claude-sonnet-4-5",
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: 12, output_tokens: 1 },
  },
});

/** Thinking (signed), redacted thinking, then a call of `clock`. */
const thinkingReply = sse([
  start("msg_1"),
  { type: "content_block_start", index: 0, content_block: { type: "thinking", thinking: "" } },
  {
    type: "content_block_delta",
    index: 0,
    delta: { type: "thinking_delta", thinking: THINKING.slice(0, 20) },
  },
  { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: THINKING.slice(20) } },
  { type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: SIGNATURE } },
  { type: "content_block_stop", index: 0 },
  { type: "content_block_start", index: 1, content_block: { type: "redacted_thinking", data: REDACTED } },
  { type: "content_block_stop", index: 1 },
  {
    type: "content_block_start",
    index: 2,
    content_block: { type: "tool_use", id: "toolu_01", name: "clock", input: {} },
  },
  {
    type: "content_block_delta",
    index: 2,
    delta: { type: "input_json_delta", partial_json: '{"zone":"UTC"}' },
  },
  { type: "content_block_stop", index: 2 },
  {
    type: "message_delta",
    delta: { stop_reason: "tool_use", stop_sequence: null },
    usage: { output_tokens: 40 },
  },
  { type: "message_stop" },
]);

const finalReply = sse([
  start("msg_2"),
  { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
  { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "It is noon (UTC)." } },
  { type: "content_block_stop", index: 0 },
  {
    type: "message_delta",
    delta: { stop_reason: "end_turn", stop_sequence: null },
    usage: { output_tokens: 8 },
  },
  { type: "message_stop" },
]);

interface AnthropicRequest {
  messages: Array<{ role: string; content: string | Array<Record<string, unknown>> }>;
}

let server: http.Server;
let baseURL: string;
/** The bodies of the requests that carried the tool's result. */
const afterTool: AnthropicRequest[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on("end", () => {
      const request = JSON.parse(body) as AnthropicRequest;
      const answered = request.messages.some(
        (m) => Array.isArray(m.content) && m.content.some((part) => part.type === "tool_result"),
      );
      if (answered) afterTool.push(request);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(answered ? finalReply : thinkingReply);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const clock: ToolDefinition<{ zone: string }, string> = {
  name: "clock",
  description: "The time now.",
  parameters: { type: "object", properties: { zone: { type: "string" } }, required: ["zone"] },
  execute: () => "12:00",
};

const fast = { leaseMs: 30, pollIntervalMs: 10 };

const assistant = () =>
  defineAgent({
    name: "assistant",
    model: aiSdkModel(createAnthropic({ baseURL, apiKey: "test-key" })("claude-sonnet-4-5"), {
      settings: { providerOptions: { anthropic: { thinking: { type: "enabled", budgetTokens: 1024 } } } },
    }),
    tools: [clock],
  });

/** The assistant turn of the request after the tool, as Anthropic received it. */
const expectedTurn = {
  role: "assistant",
  content: [
    { type: "thinking", thinking: THINKING, signature: SIGNATURE },
    { type: "redacted_thinking", data: REDACTED },
    { type: "tool_use", id: "toolu_01", name: "clock", input: { zone: "UTC" } },
  ],
};

describe("aiSdkModel with Anthropic's extended thinking", () => {
  it("sends the reply's signed and redacted thinking back, unchanged and before the tool call", async () => {
    afterTool.length = 0;
    const runtime = createRuntime({ store: new MemoryStore(), fibers: [assistant()], ...fast });
    const fiber = await runtime.start("assistant", {
      messages: [{ role: "user", content: "What time is it?" }],
    });
    const output = (await runtime.result(fiber.id)) as AgentOutput;
    await runtime.close();

    expect(afterTool).toHaveLength(1);
    expect(afterTool[0]?.messages[1]).toEqual(expectedTurn);
    const turn = output.messages.find((m) => m.role === "assistant" && m.tool_calls);
    expect(turn).toMatchObject({
      reasoning: THINKING,
      reasoningParts: [
        { length: THINKING.length, providerMetadata: { anthropic: { signature: SIGNATURE } } },
        { length: 0, providerMetadata: { anthropic: { redactedData: REDACTED } } },
      ],
    });
    expect(output.messages.at(-1)).toMatchObject({ role: "assistant", content: "It is noon (UTC)." });
  });

  it("sends them back after a crash at any write of the run", { timeout: 60_000 }, async () => {
    let writes = 0;
    {
      // How many writes a whole run makes.
      const counting = crashableStore(new MemoryStore());
      const runtime = createRuntime({ store: counting, fibers: [assistant()], ...fast });
      const fiber = await runtime.start("assistant", {
        messages: [{ role: "user", content: "What time is it?" }],
      });
      await runtime.result(fiber.id);
      await runtime.close();
      writes = counting.writes;
    }
    expect(writes).toBeGreaterThan(4);
    for (let at = 2; at <= writes; at++) {
      afterTool.length = 0;
      const disk = new MemoryStore();
      const dying = crashableStore(disk, { crashAtWrite: at, applyCrashingWrite: true });
      const first = createRuntime({ store: dying, fibers: [assistant()], ...fast });
      const started = first.start("assistant", { messages: [{ role: "user", content: "What time is it?" }] });
      started.catch(() => {});
      // Lease renewals make the count vary by a few writes: a run may end before write `at`.
      const ended = async () => (await disk.listFibers())[0]?.status === "completed";
      await expect.poll(async () => dying.crashed || (await ended()), { timeout: 5_000 }).toBe(true);
      if (!dying.crashed) {
        await first.close();
        continue;
      }
      void first.close().catch(() => {});
      const second = createRuntime({ store: disk, fibers: [assistant()], ...fast });
      await second.recover();
      const [fiber] = await second.list({ name: "assistant" });
      if (fiber === undefined) {
        await second.close();
        continue; // crashed before the fiber was created
      }
      await second.result(fiber.id);
      await second.close();
      for (const request of afterTool)
        expect(request.messages[1], `crash at write ${at}`).toEqual(expectedTurn);
      expect(afterTool.length, `crash at write ${at}`).toBeGreaterThan(0);
    }
  });
});
