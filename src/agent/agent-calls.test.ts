/**
 * Tool calls are identified by reply and position, not by the model's id alone: models number
 * their calls per reply (`call_0` every time), so keys and approvals built from that id alone
 * let one call's effect or consent stand in for another's (issue 20, items 1 and 2).
 */

import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { FiberEvent } from "../core/records";
import { MemoryStore } from "../store/memory-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, recordingTool, storedEvents, type ToolRun } from "./agent-harness";
import { messageIdOf } from "./model-step";
import { ScriptedModel, type ScriptedReply } from "./scripted-model";
import { approvalEventName, toolCallKey } from "./tool-step";

afterEach(closeRuntimes);

const deleteCall = (id: string, path: string) => ({
  id,
  name: "delete_file",
  arguments: JSON.stringify({ path }),
});
const user = (content: string) => [{ role: "user" as const, content }];
type ToolRefData = { event: string; messageId: string; index: number; toolCallId: string };

async function approvals(store: MemoryStore, id: string, count: number): Promise<FiberEvent[]> {
  await expect
    .poll(async () => (await storedEvents(store, id)).filter((e) => e.type === "tool.approval").length, {
      interval: 5,
    })
    .toBeGreaterThanOrEqual(count);
  return (await storedEvents(store, id)).filter((e) => e.type === "tool.approval");
}

describe("tool idempotency keys", () => {
  it("differ between turns that reuse the model's tool-call id, so a deduplicating tool runs both", async () => {
    const replies: ScriptedReply[] = [
      { toolCalls: [deleteCall("call_0", "a.txt")] },
      { toolCalls: [deleteCall("call_0", "b.txt")] },
      { text: "Both deleted." },
    ];
    const runs: ToolRun[] = [];
    const agent = defineAgent({
      name: "reuse",
      model: new ScriptedModel({ replies }).provider(),
      tools: [recordingTool(runs)],
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const fiber = await rt.start(agent, { messages: user("delete a.txt, then b.txt") });
    const output = await rt.result(fiber);
    expect(runs.map((r) => [r.path, r.effect])).toEqual([
      ["a.txt", true],
      ["b.txt", true],
    ]);
    expect(runs.map((r) => r.key)).toEqual([`${fiber.id}:m1#0:call_0`, `${fiber.id}:m2#0:call_0`]);
    expect(output.messages.filter((m) => m.role === "tool").map((m) => m.content)).toEqual([
      JSON.stringify("deleted a.txt"),
      JSON.stringify("deleted b.txt"),
    ]);
  });

  it("differ between calls of one reply that share an id", async () => {
    const replies: ScriptedReply[] = [
      { toolCalls: [deleteCall("dup", "a.txt"), deleteCall("dup", "b.txt")] },
      { text: "Done." },
    ];
    const runs: ToolRun[] = [];
    const agent = defineAgent({
      name: "dup",
      model: new ScriptedModel({ replies }).provider(),
      tools: [recordingTool(runs)],
    });
    const rt = agentRuntime(agent, new MemoryStore());
    await rt.result(await rt.start(agent, { messages: user("delete both") }));
    expect(runs.map((r) => r.effect)).toEqual([true, true]);
    expect(new Set(runs.map((r) => r.key)).size).toBe(2);
  });

  it("never repeat for two different calls, whatever the fiber ids and the model's ids", () => {
    // Fiber ids may hold ':' (never '#'); model ids anything. Small alphabets make near-misses likely.
    const ref = fc.record({
      fiber: fc.string({ unit: fc.constantFrom("a", ":", "m", "1"), minLength: 1, maxLength: 6 }),
      turn: fc.integer({ min: 1, max: 12 }),
      index: fc.integer({ min: 0, max: 12 }),
      toolCallId: fc.string({ unit: fc.constantFrom("a", ":", "m", "1", "#", "0"), maxLength: 6 }),
    });
    const key = (r: { fiber: string; turn: number; index: number; toolCallId: string }) =>
      toolCallKey({ messageId: messageIdOf(r.fiber, r.turn), index: r.index, toolCallId: r.toolCallId });
    fc.assert(
      fc.property(ref, ref, (x, y) => {
        if (key(x) === key(y)) expect(x).toEqual(y);
      }),
      { numRuns: 2_000 },
    );
    expect(toolCallKey({ messageId: "f:m2", index: 3, toolCallId: "call_0" })).toBe("f:m2#3:call_0");
  });
});

describe("approvals", () => {
  it("bind to their call: a duplicated approval does not approve a later call that reuses the id", async () => {
    const replies: ScriptedReply[] = [
      { toolCalls: [deleteCall("call_0", "notes.txt")] },
      { toolCalls: [deleteCall("call_0", "important.db")] },
      { text: "Done." },
    ];
    const runs: ToolRun[] = [];
    const store = new MemoryStore();
    const agent = defineAgent({
      name: "consent",
      model: new ScriptedModel({ replies }).provider(),
      tools: [recordingTool(runs, { requiresApproval: true })],
    });
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user("tidy up") });
    const [first] = await approvals(store, fiber.id, 1);
    const firstData = first?.data as { event: string; messageId: string; index: number; toolCallId: string };
    expect(firstData.event).toBe(approvalEventName(firstData));
    // A double click: the same approval twice.
    await rt.sendEvent(fiber.id, firstData.event, { approved: true });
    await rt.sendEvent(fiber.id, firstData.event, { approved: true });
    const [, second] = await approvals(store, fiber.id, 2);
    const secondData = second?.data as { event: string; arguments: { path: string } };
    expect(secondData.arguments.path).toBe("important.db");
    expect(secondData.event).not.toBe(firstData.event);
    await expect.poll(async () => (await rt.get(fiber.id))?.status).toBe("waiting");
    expect(runs.map((r) => r.path)).toEqual(["notes.txt"]);
    await rt.sendEvent(fiber.id, secondData.event, { approved: false, reason: "keep it" });
    const output = await rt.result(fiber);
    expect(runs.map((r) => r.path)).toEqual(["notes.txt"]);
    expect(output.messages.filter((m) => m.role === "tool").at(-1)?.content).toContain(
      "denied this call: keep it",
    );
  });

  it("can be sent for a fiber with a long id and a long model call id (the name fits 200 characters)", async () => {
    const runs: ToolRun[] = [];
    const store = new MemoryStore();
    const longCall = `toolu_${"9".repeat(60)}`;
    const agent = defineAgent({
      name: "long-consent",
      model: new ScriptedModel({
        replies: [
          { toolCalls: [deleteCall(longCall, "a"), deleteCall(`${longCall}b`, "b")] },
          { text: "ok" },
        ],
      }).provider(),
      tools: [recordingTool(runs, { requiresApproval: true })],
    });
    const rt = agentRuntime(agent, store);
    // A chat transport's id after a few regenerations: within the 200 characters of an id.
    const fiber = await rt.start(agent, { messages: user("go") }, { id: `ai/chat/${"x".repeat(180)}` });
    const [first] = await approvals(store, fiber.id, 1);
    const data = first?.data as ToolRefData;
    expect(`approval:${toolCallKey(data)}`.length).toBeGreaterThan(200);
    expect(data.event).toBe(approvalEventName(data));
    expect(data.event).toMatch(/^approval:m1#0:[0-9a-f]{8}$/);
    await rt.sendEvent(fiber.id, data.event, { approved: true });
    const [, second] = await approvals(store, fiber.id, 2);
    const secondData = second?.data as ToolRefData;
    expect(secondData.event).toMatch(/^approval:m1#1:[0-9a-f]{8}$/);
    await rt.sendEvent(fiber.id, secondData.event, { approved: true });
    await rt.result(fiber);
    expect(runs.map((r) => r.path)).toEqual(["a", "b"]);
    // A name that fits is the one it always was.
    const short = { messageId: messageIdOf("f1", 2), index: 0, toolCallId: "call_0" };
    expect(approvalEventName(short)).toBe("approval:f1:m2#0:call_0");
  });

  it("deny unless the payload says approved: true", async () => {
    const runs: ToolRun[] = [];
    const store = new MemoryStore();
    const agent = defineAgent({
      name: "strict-consent",
      model: new ScriptedModel({
        replies: [{ toolCalls: [deleteCall("c", "x")] }, { text: "ok" }],
      }).provider(),
      tools: [recordingTool(runs, { requiresApproval: true })],
    });
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user("go") });
    const [approval] = await approvals(store, fiber.id, 1);
    const event = (approval?.data as { event?: string } | undefined)?.event ?? "";
    await rt.sendEvent(fiber.id, event, { approved: "yes" });
    const output = await rt.result(fiber);
    expect(runs).toEqual([]);
    expect(output.messages.find((m) => m.role === "tool")?.content).toContain("denied");
  });
});
