/**
 * One attempt of a step's function, bounded by the fiber's signal and the attempt's timeout, and
 * the retry arithmetic between attempts. Used by `FiberRun`'s `ctx.step`.
 */

import type { RetryPolicy, StepContext } from "./define";
import { CancelledError, TimeoutError } from "./errors";

/** The retry policy a step gets when it names none, field by field. */
export const DEFAULT_RETRY: Required<RetryPolicy> = {
  maxAttempts: 3,
  backoff: "exponential",
  initialDelayMs: 250,
  maxDelayMs: 30_000,
};

/**
 * Runs `fn` once with `step` as its context (its `signal` added here). Rejects with the fiber
 * signal's reason when the fiber is cancelled or fenced, and with `TimeoutError` past `timeoutMs`;
 * the attempt's signal is aborted in every case once it is over, so late work can stop, and its
 * `emit` throws from then on.
 *
 * The attempt's `AbortController`, and the `CancelledError` that ends it normally, are made only
 * when the step reads `signal` or emits after the end: most steps do neither, and on a step loop's
 * hot path those two allocations (an error captures a stack trace) were about a tenth of the engine's
 * CPU per step.
 */
export async function runAttempt<T>(
  fn: (step: StepContext) => Promise<T> | T,
  step: Omit<StepContext, "signal">,
  fiberSignal: AbortSignal,
  timeoutMs: number | undefined,
): Promise<T> {
  let controller: AbortController | undefined;
  // Set once the attempt is over, with why: the fiber's reason, a timeout, or (normal end) none yet.
  let over: { reason: unknown } | undefined;
  const reasonOver = (): unknown => {
    const ended = over as { reason: unknown };
    ended.reason ??= new CancelledError("The step attempt is over.");
    return ended.reason;
  };
  const signal = (): AbortSignal => {
    if (controller === undefined) {
      controller = new AbortController();
      if (over !== undefined) controller.abort(reasonOver());
    }
    return controller.signal;
  };
  let rejectStopped: (reason: unknown) => void = () => {};
  const stopped = new Promise<never>((_, reject) => {
    rejectStopped = reject;
  });
  const stop = (reason: unknown) => {
    if (over !== undefined) return;
    over = { reason };
    controller?.abort(reason);
    rejectStopped(reason);
  };
  const onAbort = () => stop(fiberSignal.reason);
  fiberSignal.addEventListener("abort", onAbort, { once: true });
  if (fiberSignal.aborted) onAbort();
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (timeoutMs !== undefined) {
    timer = setTimeout(() => {
      const message = `Attempt ${step.attempt} of step ${step.idempotencyKey} ran past its ${timeoutMs} ms timeout.`;
      stop(new TimeoutError(message));
    }, timeoutMs);
  }
  try {
    return await Promise.race([
      Promise.resolve().then(() =>
        fn({
          // Field by field: a literal of one shape is cheaper to make than a spread.
          attempt: step.attempt,
          idempotencyKey: step.idempotencyKey,
          interrupted: step.interrupted,
          emitted: step.emitted,
          get signal() {
            return signal();
          },
          // An attempt that is over (timed out, fiber cancelled or fenced) may still be running
          // user code: its chunks must not land among the next attempt's.
          emit: (type, data) => {
            if (over !== undefined) throw reasonOver();
            step.emit(type, data);
          },
        }),
      ),
      stopped,
    ]);
  } finally {
    clearTimeout(timer);
    fiberSignal.removeEventListener("abort", onAbort);
    if (over === undefined) {
      over = { reason: undefined };
      if (controller !== undefined) controller.abort(reasonOver());
    }
  }
}

/** The delay before retry number `retryIndex` (0 for the first retry). */
export function backoffMs(policy: Required<RetryPolicy>, retryIndex: number): number {
  const base = policy.backoff === "fixed" ? policy.initialDelayMs : policy.initialDelayMs * 2 ** retryIndex;
  return Math.min(base, policy.maxDelayMs);
}
