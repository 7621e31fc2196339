/**
 * `aiSdkModel` with a model of provider specification v4 (AI SDK 7's `MockLanguageModelV4`, from
 * the `ai7` alias; ai 7 needs Node 22, so this runs in real Chromium): an agent loop with a tool
 * call and v4's new parts in the stream (`ping`, a citation on `text-end`), a retried `error`
 * part, and a specification this version does not know, refused before anything runs.
 */

import { MockLanguageModelV4 } from "ai7/test";
import { afterEach, describe, expect, it } from "vitest";
import { defineAgent } from "../agent/agent";
import { agentRuntime, closeRuntimes, recordingTool, type ToolRun } from "../agent/agent-harness";
import { MemoryStore } from "../store/memory-store";
import { type AiSdkLanguageModel, aiSdkModel } from "./ai-sdk-model";

afterEach(closeRuntimes);

/** A v4 stream part (the provider package of ai 7 is nested under the alias, so derived here). */
type LanguageModelV4StreamPart =
  Awaited<ReturnType<MockLanguageModelV4["doStream"]>>["stream"] extends ReadableStream<infer P> ? P : never;

const user = (content: string) => [{ role: "user" as const, content }];

const finish = (
  unified: "stop" | "tool-calls",
  input: number,
  output: number,
): LanguageModelV4StreamPart => ({
  type: "finish",
  finishReason: { unified, raw: undefined },
  usage: {
    inputTokens: { total: input, noCache: input, cacheRead: undefined, cacheWrite: undefined },
    outputTokens: { total: output, text: output, reasoning: undefined },
  },
});

/** A doStream result streaming `parts`, one per read. */
const streamOf = (parts: LanguageModelV4StreamPart[]) => ({
  stream: new ReadableStream<LanguageModelV4StreamPart>({
    start(controller) {
      for (const part of parts) controller.enqueue(part);
      controller.close();
    },
  }),
});

describe("aiSdkModel with a v4 model (AI SDK 7)", () => {
  it("runs an agent loop: a tool call, its result sent back, the answer; v4's new parts ignored", async () => {
    const runs: ToolRun[] = [];
    const model = new MockLanguageModelV4({
      doStream: [
        streamOf([
          { type: "stream-start", warnings: [] },
          { type: "ping" },
          { type: "tool-call", toolCallId: "call_1", toolName: "delete_file", input: '{"path":"a.txt"}' },
          finish("tool-calls", 20, 4),
        ]),
        streamOf([
          { type: "text-start", id: "t1" },
          { type: "text-delta", id: "t1", delta: "Deleted " },
          { type: "ping" },
          { type: "text-delta", id: "t1", delta: "a.txt." },
          { type: "text-end", id: "t1" },
          finish("stop", 40, 3),
        ]),
      ],
    });
    // A v4 model is accepted as it is, with no cast.
    const asModel: AiSdkLanguageModel = model;
    const agent = defineAgent({ name: "sdk7", model: aiSdkModel(asModel), tools: [recordingTool(runs)] });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user("delete a.txt") }));

    expect(runs.map((r) => r.path)).toEqual(["a.txt"]);
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: "Deleted a.txt." });
    expect(output.usage).toEqual({ promptTokens: 60, completionTokens: 7 });
    // The second call's prompt carries the call and its result, as v4 expects them.
    const prompt = model.doStreamCalls[1]?.prompt ?? [];
    expect(prompt.map((m) => m.role)).toEqual(["user", "assistant", "tool"]);
    expect(prompt[2]).toMatchObject({
      role: "tool",
      content: [{ type: "tool-result", toolCallId: "call_1", toolName: "delete_file" }],
    });
  });

  it("retries a call whose stream reports an error part", async () => {
    const model = new MockLanguageModelV4({
      doStream: [
        streamOf([{ type: "error", error: new Error("overloaded") }]),
        streamOf([
          { type: "text-start", id: "t1" },
          { type: "text-delta", id: "t1", delta: "Hello." },
          { type: "text-end", id: "t1" },
          finish("stop", 5, 2),
        ]),
      ],
    });
    const agent = defineAgent({
      name: "sdk7-retry",
      model: aiSdkModel(model),
      modelRetry: { initialDelayMs: 1 },
    });
    const rt = agentRuntime(agent, new MemoryStore());
    const output = await rt.result(await rt.start(agent, { messages: user("hi") }));
    expect(output.messages.at(-1)).toEqual({ role: "assistant", content: "Hello." });
    expect(model.doStreamCalls).toHaveLength(2);
  });

  it("refuses a specification it does not know, saying which it supports", () => {
    const future = {
      ...new MockLanguageModelV4(),
      specificationVersion: "v5",
    } as unknown as AiSdkLanguageModel;
    expect(() => aiSdkModel(future)).toThrow(/"v5".*"v4" \(AI SDK 7\), "v3" \(AI SDK 6\) and "v2"/);
  });
});
