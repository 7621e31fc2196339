/**
 * A reply is complete once its finish reason arrived: a connection dropped after it (before the
 * usage chunk and `[DONE]`) or a crash after `message.end` was streamed must not ask the model
 * again, continue the finished text, or regenerate it (issue 20, item 4).
 */

import { afterEach, describe, expect, it } from "vitest";
import type { WriteGroup } from "../core/store";
import { MemoryStore } from "../store/memory-store";
import { crashableStore } from "../testing/crash-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, renderedText, storedEvents } from "./agent-harness";
import { openAICompatible } from "./openai";
import { ScriptedModel, sseBody } from "./scripted-model";

afterEach(closeRuntimes);

const ANSWER = "The answer is 42.";
const user = [{ role: "user" as const, content: "What is the answer?" }];

/** Where the usage chunk starts in the SSE body: everything before it includes the finish reason. */
function afterFinish(body: Uint8Array): number {
  const text = new TextDecoder().decode(body);
  return new TextEncoder().encode(text.slice(0, text.indexOf('data: {"choices":[],"usage"'))).length;
}

describe("a reply whose finish reason arrived", () => {
  for (const recovery of ["continue", "retry"] as const) {
    it(`is complete when the connection drops right after it (recovery: ${recovery})`, async () => {
      const model = new ScriptedModel({
        replies: [{ text: ANSWER }],
        cut: (request, body) => (request === 0 ? afterFinish(body) : undefined),
      });
      const store = new MemoryStore();
      const agent = defineAgent({ name: "done", model: model.provider(), recovery });
      const rt = agentRuntime(agent, store);
      const fiber = await rt.start(agent, { messages: user });
      const output = await rt.result(fiber);
      expect(output.messages.at(-1)).toEqual({ role: "assistant", content: ANSWER });
      expect(model.requests).toHaveLength(1);
      const events = await storedEvents(store, fiber.id);
      expect(events.some((e) => e.type === "message.reset")).toBe(false);
      expect([...renderedText(events).values()]).toEqual([ANSWER]);
      expect(events.find((e) => e.type === "message.end")?.data).toMatchObject({ finishReason: "stop" });
    });
  }

  it("is complete when the server closes in the middle of the usage chunk", async () => {
    const whole = sseBody({ text: ANSWER });
    const cut = whole.slice(0, whole.indexOf('"usage"') + 5);
    let calls = 0;
    const model = openAICompatible({
      baseUrl: "http://h.invalid/v1",
      model: "m",
      continuation: "assistant-prefix",
      fetch: (async () => {
        calls++;
        return new Response(cut, { headers: { "content-type": "text/event-stream" } });
      }) as typeof fetch,
    });
    const events = [];
    for await (const event of model.stream({ messages: user, tools: [] })) events.push(event);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop" });
    expect(calls).toBe(1);
  });

  it("is not asked for again after a crash that left message.end streamed but the step unfinished", async () => {
    const model = new ScriptedModel({ replies: [{ text: ANSWER }] });
    const disk = new MemoryStore();
    const dying = crashableStore(disk);
    const commit = dying.commit.bind(dying);
    // The process dies right after the commit that made message.end durable.
    dying.commit = async (groups: WriteGroup[]) => {
      const result = await commit(groups);
      if (groups.some((g) => g.chunks?.some((c) => c.type === "message.end"))) {
        dying.crash();
        return new Promise(() => {});
      }
      return result;
    };
    const agent = defineAgent({ name: "crashy", model: model.provider() });
    const first = agentRuntime(agent, dying);
    const fiber = await first.start(agent, { messages: user });
    await expect.poll(() => dying.crashed, { interval: 5 }).toBe(true);
    const step = (await disk.readJournal(fiber.id)).find((e) => e.key === "model#1");
    expect(step?.status).toBe("started");
    const second = agentRuntime(agent, disk);
    await second.recover();
    const output = await second.result(fiber);
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: ANSWER });
    expect(model.requests).toHaveLength(1);
    const events = await storedEvents(disk, fiber.id);
    expect(events.filter((e) => e.type === "message.end")).toHaveLength(1);
    expect([...renderedText(events).values()]).toEqual([ANSWER]);
  });
});
