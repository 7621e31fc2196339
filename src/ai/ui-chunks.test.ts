/**
 * The agent-chunk to UI-message-chunk mapping, chunk by chunk, typed against `ai`'s own
 * `UIMessageChunk` and validated by its own `uiMessageChunkSchema`; and `foldResets`.
 */

import { safeValidateTypes } from "@ai-sdk/provider-utils";
import { readUIMessageStream, type UIMessage, type UIMessageChunk, uiMessageChunkSchema } from "ai";
import { describe, expect, it } from "vitest";
import type { AgentChunk } from "../agent/agent";
import type { FiberEvent } from "../core/records";
import { DISCARDED, foldResets, isDiscardedPart, UiChunkMapper } from "./ui-chunks";

let seq = 0;
const ev = (chunk: AgentChunk | { type: string; data: unknown }): FiberEvent => ({
  seq: ++seq,
  at: 0,
  ...chunk,
});
const m1 = "f:m1";
const m2 = "f:m2";
const call = { messageId: m1, index: 0, toolCallId: "call_0" };

const agentStream: FiberEvent[] = [
  ev({ type: "fiber.start", data: { name: "assistant", version: "1" } }),
  ev({ type: "message.start", data: { messageId: m1, turn: 1, model: "mock" } }),
  ev({ type: "reasoning.delta", data: { messageId: m1, delta: "Think." } }),
  ev({ type: "text.delta", data: { messageId: m1, delta: "Sure, " } }),
  ev({ type: "text.delta", data: { messageId: m1, delta: "deleting." } }),
  ev({ type: "tool.call", data: { ...call, name: "delete_file", arguments: '{"path":"a.txt"}' } }),
  ev({ type: "message.end", data: { messageId: m1, finishReason: "tool_calls", usage: null } }),
  ev({
    type: "tool.approval",
    data: { ...call, name: "delete_file", arguments: { path: "a.txt" }, event: "approval:f:m1#0:call_0" },
  }),
  ev({ type: "tool.result", data: { ...call, name: "delete_file", status: "ok", result: "deleted" } }),
  ev({ type: "message.start", data: { messageId: m2, turn: 2, model: "mock" } }),
  ev({ type: "text.delta", data: { messageId: m2, delta: "Done." } }),
  ev({ type: "message.end", data: { messageId: m2, finishReason: "stop", usage: null } }),
  ev({ type: "fiber.end", data: { status: "completed", result: {} } }),
];

const key = "f:m1#0:call_0";
const expected: UIMessageChunk[] = [
  { type: "start-step" },
  { type: "reasoning-start", id: "f:m1:p1" },
  { type: "reasoning-delta", id: "f:m1:p1", delta: "Think." },
  { type: "text-start", id: "f:m1:p2" },
  { type: "text-delta", id: "f:m1:p2", delta: "Sure, " },
  { type: "text-delta", id: "f:m1:p2", delta: "deleting." },
  { type: "tool-input-available", toolCallId: key, toolName: "delete_file", input: { path: "a.txt" } },
  // Parts stay open until the model call ends, so that a reset could still mark them.
  { type: "reasoning-end", id: "f:m1:p1" },
  { type: "text-end", id: "f:m1:p2" },
  { type: "tool-approval-request", approvalId: "approval:f:m1#0:call_0", toolCallId: key },
  { type: "tool-output-available", toolCallId: key, output: "deleted" },
  { type: "finish-step" },
  { type: "start-step" },
  { type: "text-start", id: "f:m2:p3" },
  { type: "text-delta", id: "f:m2:p3", delta: "Done." },
  { type: "text-end", id: "f:m2:p3" },
  { type: "finish-step" },
  { type: "finish", finishReason: "stop" },
];

describe("UiChunkMapper", () => {
  it("maps an agent run to UI message chunks, one step per model call", async () => {
    const mapper = new UiChunkMapper();
    const chunks = agentStream.flatMap((event) => mapper.map(event));
    expect(chunks).toEqual(expected);
    for (const chunk of chunks) {
      const checked = await safeValidateTypes({ value: chunk, schema: uiMessageChunkSchema });
      expect(checked.success, JSON.stringify(chunk)).toBe(true);
    }
  });

  it("maps errors, denials, a failed fiber, a cancelled one, and the fiber's own chunks", () => {
    const mapper = new UiChunkMapper();
    const out = [
      ev({ type: "tool.result", data: { ...call, name: "x", status: "error", error: "boom" } }),
      ev({ type: "tool.result", data: { ...call, name: "x", status: "denied", error: "no" } }),
      ev({ type: "progress", data: { pct: 50 } }),
      ev({
        type: "fiber.end",
        data: { status: "failed", error: { message: "Too many turns.", code: "max_turns" } },
      }),
    ].flatMap((e) => mapper.map(e));
    expect(out).toEqual([
      { type: "tool-output-error", toolCallId: key, errorText: "boom" },
      { type: "tool-output-denied", toolCallId: key },
      { type: "data-progress", data: { pct: 50 }, transient: true },
      { type: "error", errorText: "Too many turns. (max_turns)" },
    ] satisfies UIMessageChunk[]);
    expect(
      new UiChunkMapper().map(
        ev({ type: "fiber.end", data: { status: "cancelled", error: { message: "Stopped." } } }),
      ),
    ).toEqual([{ type: "abort", reason: "Stopped." }]);
  });

  it("shows an approval already answered: no request with ai 6, the request and ai 7's response with resetStep", () => {
    const approval = agentStream.find((e) => e.type === "tool.approval") as FiberEvent;
    const answers = (name: string) =>
      name === "approval:f:m1#0:call_0" ? { approved: false, reason: "not today" } : undefined;
    expect(new UiChunkMapper({ answers }).map(approval)).toEqual([]);
    expect(new UiChunkMapper({ answers, resetStep: true }).map(approval)).toEqual([
      { type: "tool-approval-request", approvalId: "approval:f:m1#0:call_0", toolCallId: key },
      {
        type: "tool-approval-response",
        approvalId: "approval:f:m1#0:call_0",
        approved: false,
        reason: "not today",
      },
    ]);
    expect(new UiChunkMapper({ answers: () => undefined }).map(approval)).toEqual([
      { type: "tool-approval-request", approvalId: "approval:f:m1#0:call_0", toolCallId: key },
    ]);
  });

  it("closes a step's parts as discarded at message.reset, and the AI SDK keeps the mark on the parts", async () => {
    const mapper = new UiChunkMapper();
    const live = [
      ev({ type: "message.start", data: { messageId: m1, turn: 1, model: "mock" } }),
      ev({ type: "text.delta", data: { messageId: m1, delta: "Half" } }),
      ev({ type: "tool.call", data: { ...call, name: "delete_file", arguments: "{}" } }),
      ev({ type: "message.reset", data: { messageId: m1, reason: "The reply was interrupted." } }),
      ev({ type: "text.delta", data: { messageId: m1, delta: "Whole." } }),
      ev({ type: "message.end", data: { messageId: m1, finishReason: "stop", usage: null } }),
      ev({ type: "fiber.end", data: { status: "completed" } }),
    ].flatMap((e) => mapper.map(e));
    expect(live).toContainEqual({ type: "text-end", id: "f:m1:p1", providerMetadata: DISCARDED });
    const message = await lastMessage([{ type: "start" }, ...live]);
    const kept = message?.parts.filter((p) => !isDiscardedPart(p)).map((p) => p.type);
    expect(kept).toEqual(["step-start", "text"]);
    expect(message?.parts.filter(isDiscardedPart).map((p) => p.type)).toEqual(["text", "tool-delete_file"]);
  });

  it("shows a tool call regenerated under the same provider id as a new, live part (ai 6)", async () => {
    // A model that names its calls from the conversation gives the regenerated call the id the
    // discarded one had: its part must not inherit the discarded mark, nor hide its approval.
    const mapper = new UiChunkMapper();
    const approval = "approval:f:m1#0:call_0";
    const live = [
      ev({ type: "message.start", data: { messageId: m1, turn: 1, model: "mock" } }),
      ev({ type: "tool.call", data: { ...call, name: "delete_file", arguments: '{"path":"a.txt"}' } }),
      ev({ type: "message.reset", data: { messageId: m1, reason: "The reply was interrupted." } }),
      ev({ type: "tool.call", data: { ...call, name: "delete_file", arguments: '{"path":"a.txt"}' } }),
      ev({ type: "message.end", data: { messageId: m1, finishReason: "tool_calls", usage: null } }),
      ev({
        type: "tool.approval",
        data: { ...call, name: "delete_file", arguments: { path: "a.txt" }, event: approval },
      }),
      ev({ type: "tool.result", data: { ...call, name: "delete_file", status: "ok", result: "deleted" } }),
      ev({ type: "fiber.end", data: { status: "completed" } }),
    ].flatMap((e) => mapper.map(e));
    const message = await lastMessage([{ type: "start" }, ...live]);
    const tools = message?.parts.filter((p) => p.type === "tool-delete_file") ?? [];
    expect(tools.filter(isDiscardedPart).map((p) => (p as { state: string }).state)).toEqual([
      "output-error",
    ]);
    const shown = tools.filter((p) => !isDiscardedPart(p)) as Array<{
      state: string;
      output?: unknown;
      approval?: { id: string };
    }>;
    expect(shown.map((p) => [p.state, p.output, p.approval?.id])).toEqual([
      ["output-available", "deleted", approval],
    ]);
  });

  it("with resetStep (ai 7), takes a step's parts back with one reset-step and opens new parts after it", () => {
    const mapper = new UiChunkMapper({ resetStep: true });
    const live = [
      ev({ type: "message.start", data: { messageId: m1, turn: 1, model: "mock" } }),
      ev({ type: "reasoning.delta", data: { messageId: m1, delta: "hm" } }),
      ev({ type: "text.delta", data: { messageId: m1, delta: "Half" } }),
      ev({ type: "tool.call", data: { ...call, name: "delete_file", arguments: "{}" } }),
      ev({ type: "message.reset", data: { messageId: m1, reason: "The reply was interrupted." } }),
      ev({ type: "text.delta", data: { messageId: m1, delta: "Whole." } }),
      ev({ type: "message.end", data: { messageId: m1, finishReason: "stop", usage: null } }),
    ].flatMap((e) => mapper.map(e));
    const after = live.slice(live.findIndex((c) => (c.type as string) === "reset-step"));
    // Nothing of the taken-back parts follows the reset (ai 7 forgot them: an end would throw).
    expect(after).toEqual([
      { type: "reset-step" },
      { type: "text-start", id: "f:m1:p3" },
      { type: "text-delta", id: "f:m1:p3", delta: "Whole." },
      { type: "text-end", id: "f:m1:p3" },
    ]);
    expect(live.filter((c) => "providerMetadata" in c)).toEqual([]);
  });
});

describe("foldResets", () => {
  it("drops what a reset took back, and the reset, and keeps everything else in order", () => {
    const stream = [
      ev({ type: "message.start", data: { messageId: m1, turn: 1, model: "mock" } }),
      ev({ type: "reasoning.delta", data: { messageId: m1, delta: "hm" } }),
      ev({ type: "text.delta", data: { messageId: m1, delta: "Half" } }),
      ev({ type: "message.reset", data: { messageId: m1, reason: "cut" } }),
      ev({ type: "text.delta", data: { messageId: m1, delta: "Whole." } }),
      ev({ type: "message.end", data: { messageId: m1, finishReason: "stop", usage: null } }),
    ];
    expect(foldResets(stream).map((e) => e.type)).toEqual(["message.start", "text.delta", "message.end"]);
    expect(foldResets(stream)[1]?.data).toEqual({ messageId: m1, delta: "Whole." });
  });
});

/** The message `readUIMessageStream` (what `useChat` uses) builds from `chunks`. */
async function lastMessage(chunks: UIMessageChunk[]): Promise<UIMessage | undefined> {
  const stream = new ReadableStream<UIMessageChunk>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  let last: UIMessage | undefined;
  for await (const message of readUIMessageStream({ stream })) last = message;
  return last;
}
