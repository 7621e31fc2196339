import { describe, expect, it } from "vitest";
import type { FiberEvent } from "../../src/core/records";
import { applyChunk, emptyTurn, turnText } from "./turn-view";

const chunk = (seq: number, type: string, data: unknown): FiberEvent => ({ seq, type, data, at: seq });

function fold(events: FiberEvent[]) {
  return events.reduce(applyChunk, emptyTurn());
}

describe("applyChunk", () => {
  it("keeps reasoning apart from the text, per model call, and out of the reply's text", () => {
    const view = fold([
      chunk(1, "message.start", { messageId: "m1", turn: 1, model: "mock" }),
      chunk(2, "reasoning.delta", { messageId: "m1", delta: "Let me " }),
      chunk(3, "reasoning.delta", { messageId: "m1", delta: "think." }),
      chunk(4, "text.delta", { messageId: "m1", delta: "Answer." }),
    ]);
    expect(view.segments).toEqual([
      { kind: "reasoning", messageId: "m1", text: "Let me think." },
      { kind: "text", messageId: "m1", text: "Answer." },
    ]);
    expect(turnText(view)).toBe("Answer.");
  });

  it("a reset drops the call's reasoning with its text", () => {
    const view = fold([
      chunk(1, "reasoning.delta", { messageId: "m1", delta: "Hmm" }),
      chunk(2, "text.delta", { messageId: "m1", delta: "Half" }),
      chunk(3, "message.reset", { messageId: "m1", reason: "retry" }),
    ]);
    expect(view.segments).toEqual([]);
  });

  it("a failed fiber.end says what happened and keeps the details", () => {
    const view = fold([
      chunk(1, "fiber.end", {
        status: "failed",
        error: {
          name: "StepFailedError",
          code: "step_failed",
          message: 'Step "model#1" failed',
          cause: {
            name: "ModelError",
            code: "model_error",
            message: "custom answered 401",
            data: { kind: "http_status", retryable: false, status: 401 },
          },
        },
      }),
    ]);
    expect(view.outcome).toBe("failed");
    expect(view.error).toContain("refused the API key (HTTP 401)");
    expect(view.detail).toBe('step_failed: Step "model#1" failed\nmodel_error: custom answered 401');
  });

  it("shows the last announced retry until the model makes progress again", () => {
    const retry = (seq: number, attempt: number) =>
      chunk(seq, "message.retry", {
        messageId: "m1",
        attempt,
        maxAttempts: 5,
        delayMs: 1000,
        retryAt: 5000 + seq,
        error: { code: "model_error", message: `Could not reach the model (${seq})` },
      });
    const waiting = fold([
      chunk(1, "message.start", { messageId: "m1", turn: 1, model: "m" }),
      retry(2, 2),
      retry(3, 3),
    ]);
    expect(waiting.retry).toEqual({
      attempt: 3,
      maxAttempts: 5,
      retryAt: 5003,
      reason: "Could not reach the model (3)",
    });
    expect(
      applyChunk(waiting, chunk(4, "text.delta", { messageId: "m1", delta: "Hi" })).retry,
    ).toBeUndefined();
    expect(
      applyChunk(waiting, chunk(4, "message.reset", { messageId: "m1", reason: "retry" })).retry,
    ).toEqual(waiting.retry);
  });
});
