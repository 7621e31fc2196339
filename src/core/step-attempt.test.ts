/**
 * `runAttempt`: the attempt's signal and `emit` end with the attempt, whether the step read its
 * signal during the attempt, only after it, or never (the controller is made on first use).
 */

import { describe, expect, it } from "vitest";
import type { StepContext } from "./define";
import { CancelledError, TimeoutError } from "./errors";
import { runAttempt } from "./step-attempt";

function attemptContext(emitted: unknown[]): Omit<StepContext, "signal"> {
  return {
    attempt: 1,
    idempotencyKey: "f:s#1",
    interrupted: false,
    emitted: [],
    emit: (type, data) => {
      emitted.push([type, data]);
    },
  };
}

describe("runAttempt", () => {
  it("aborts the signal a step kept, once the attempt returned", async () => {
    let kept: AbortSignal | undefined;
    const result = await runAttempt(
      ({ signal }) => {
        kept = signal;
        expect(signal.aborted).toBe(false);
        return 7;
      },
      attemptContext([]),
      new AbortController().signal,
      undefined,
    );
    expect(result).toBe(7);
    expect(kept?.aborted).toBe(true);
    expect(kept?.reason).toBeInstanceOf(CancelledError);
  });

  it("gives a step that reads its signal only after the attempt an aborted one, and refuses its emits", async () => {
    const emitted: unknown[] = [];
    let late: StepContext | undefined;
    await runAttempt(
      (step) => {
        late = step;
        step.emit("token", "in time");
        return null;
      },
      attemptContext(emitted),
      new AbortController().signal,
      undefined,
    );
    const step = late as StepContext;
    expect(step.signal.aborted).toBe(true);
    expect(step.signal.reason).toBeInstanceOf(CancelledError);
    expect(() => step.emit("token", "late")).toThrow(CancelledError);
    expect(emitted).toEqual([["token", "in time"]]);
  });

  it("rejects with the fiber's reason and aborts the attempt's signal with it", async () => {
    const fiber = new AbortController();
    const reason = new CancelledError("cancelled by test");
    let kept: AbortSignal | undefined;
    const attempt = runAttempt(
      ({ signal }) => {
        kept = signal;
        return new Promise(() => {});
      },
      attemptContext([]),
      fiber.signal,
      undefined,
    );
    await Promise.resolve();
    fiber.abort(reason);
    await expect(attempt).rejects.toBe(reason);
    expect(kept?.reason).toBe(reason);
  });

  it("times out with TimeoutError, and the signal read after the timeout carries it", async () => {
    let step: StepContext | undefined;
    const attempt = runAttempt(
      (s) => {
        step = s;
        return new Promise(() => {});
      },
      attemptContext([]),
      new AbortController().signal,
      5,
    );
    await expect(attempt).rejects.toBeInstanceOf(TimeoutError);
    expect(step?.signal.reason).toBeInstanceOf(TimeoutError);
    expect(() => step?.emit("token", "late")).toThrow(TimeoutError);
  });
});
