/**
 * `resumePoint`: where a kept message stands in a reply's UI chunks, checked against messages
 * built by the AI SDK's own `readUIMessageStream` from prefixes of the same chunks.
 */

import { readUIMessageStream, type UIMessage, type UIMessageChunk } from "ai";
import { describe, expect, it } from "vitest";
import type { AgentChunk } from "../agent/agent";
import type { FiberEvent } from "../core/records";
import { changesNoPart, resumePoint } from "./resume-point";
import { UiChunkMapper } from "./ui-chunks";

let seq = 0;
const ev = (chunk: AgentChunk): FiberEvent => ({ seq: ++seq, at: 0, ...chunk });
const m1 = "f:m1";
const m2 = "f:m2";
const call = { messageId: m1, index: 0, toolCallId: "call_0" };
const reply: FiberEvent[] = [
  ev({ type: "message.start", data: { messageId: m1, turn: 1, model: "mock" } }),
  ev({ type: "reasoning.delta", data: { messageId: m1, delta: "Think." } }),
  ev({ type: "text.delta", data: { messageId: m1, delta: "Sure, " } }),
  ev({ type: "tool.call", data: { ...call, name: "delete_file", arguments: '{"path":"a.txt"}' } }),
  ev({ type: "message.end", data: { messageId: m1, finishReason: "tool_calls", usage: null } }),
  ev({ type: "tool.result", data: { ...call, name: "delete_file", status: "ok", result: "deleted" } }),
  ev({ type: "message.start", data: { messageId: m2, turn: 2, model: "mock" } }),
  ev({ type: "text.delta", data: { messageId: m2, delta: "Done " } }),
  ev({ type: "text.delta", data: { messageId: m2, delta: "now." } }),
  ev({ type: "message.end", data: { messageId: m2, finishReason: "stop", usage: null } }),
];

function chunksOf(resetStep: boolean): UIMessageChunk[] {
  const mapper = new UiChunkMapper({ resetStep });
  return reply.flatMap((event) => mapper.map(event));
}

/** The message the AI SDK builds from `chunks`. */
async function built(chunks: readonly UIMessageChunk[], message?: UIMessage): Promise<UIMessage> {
  const stream = new ReadableStream<UIMessageChunk>({
    start(controller) {
      for (const chunk of [{ type: "start", messageId: "f" } as const, ...chunks]) controller.enqueue(chunk);
      controller.close();
    },
  });
  let last: UIMessage = message ?? { id: "f", role: "assistant", parts: [] };
  for await (const next of readUIMessageStream({ stream, ...(message ? { message } : {}) })) last = next;
  return last;
}

describe("resumePoint", () => {
  it("for every prefix the SDK builds a message from, continuing there rebuilds the whole message", async () => {
    for (const resetStep of [false, true]) {
      const chunks = chunksOf(resetStep).filter((c) => (c.type as string) !== "reset-step");
      const whole = await built(chunks);
      for (let cut = 0; cut <= chunks.length; cut++) {
        const kept = await built(chunks.slice(0, cut));
        const point = resumePoint(chunks, kept, { resetStep });
        if (point.from === "start") {
          // Only a message kept inside an open text or reasoning part, and only without reset-step.
          expect(resetStep, `cut ${cut}`).toBe(false);
          expect(
            kept.parts.some((p) => "state" in p && p.state === "streaming"),
            `cut ${cut}`,
          ).toBe(true);
          continue;
        }
        const rest = chunks.slice(point.index);
        const resumed = await built(
          point.from === "step" ? [{ type: "reset-step" } as unknown as UIMessageChunk, ...rest] : rest,
          structuredClone(kept),
        );
        if (point.from === "step") continue; // ai 6's builder here ignores reset-step; Chromium tests ai 7's.
        expect(resumed.parts, `cut ${cut}`).toEqual(whole.parts);
      }
    }
  });

  it("resumes from the start when the message holds a part the reply does not build", async () => {
    const chunks = chunksOf(false);
    const foreign = { type: "text" as const, text: "not from this reply", state: "done" as const };
    const inStep = await built(chunks.slice(0, 5));
    inStep.parts.push(foreign);
    expect(resumePoint(chunks, inStep, { resetStep: false })).toEqual({ from: "start" });
    // ai 7's reset-step takes back the step it is in, foreign part and all.
    expect(resumePoint(chunks, inStep, { resetStep: true }).from).toBe("step");
    // In an earlier step nothing takes it back.
    const earlier = await built(chunks.slice(0, -2));
    earlier.parts.splice(1, 0, foreign);
    expect(resumePoint(chunks, earlier, { resetStep: true })).toEqual({ from: "start" });
  });

  it("tells a tail that changes no part (a step's end, the finish) from one that does", () => {
    expect(changesNoPart([{ type: "finish-step" }, { type: "finish", finishReason: "stop" }])).toBe(true);
    expect(changesNoPart([{ type: "text-delta", id: "x", delta: "a" }])).toBe(false);
  });
});
