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
 */
export async function runAttempt<T>(
  fn: (step: StepContext) => Promise<T> | T,
  step: Omit<StepContext, "signal">,
  fiberSignal: AbortSignal,
  timeoutMs: number | undefined,
): Promise<T> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(fiberSignal.reason);
  fiberSignal.addEventListener("abort", onAbort, { once: true });
  if (fiberSignal.aborted) onAbort();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stopped = new Promise<never>((_, reject) => {
    controller.signal.addEventListener("abort", () => reject(controller.signal.reason), { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        const message = `Attempt ${step.attempt} of step ${step.idempotencyKey} ran past its ${timeoutMs} ms timeout.`;
        controller.abort(new TimeoutError(message));
      }, timeoutMs);
    }
  });
  try {
    return await Promise.race([
      Promise.resolve().then(() =>
        fn({
          ...step,
          signal: controller.signal,
          // An attempt that is over (timed out, fiber cancelled or fenced) may still be running
          // user code: its chunks must not land among the next attempt's.
          emit: (type, data) => {
            if (controller.signal.aborted) throw controller.signal.reason;
            step.emit(type, data);
          },
        }),
      ),
      stopped,
    ]);
  } finally {
    clearTimeout(timer);
    fiberSignal.removeEventListener("abort", onAbort);
    if (!controller.signal.aborted) controller.abort(new CancelledError("The step attempt is over."));
  }
}

/** The delay before retry number `retryIndex` (0 for the first retry). */
export function backoffMs(policy: Required<RetryPolicy>, retryIndex: number): number {
  const base = policy.backoff === "fixed" ? policy.initialDelayMs : policy.initialDelayMs * 2 ** retryIndex;
  return Math.min(base, policy.maxDelayMs);
}
