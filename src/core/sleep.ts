/**
 * An abortable timer, shared by step retries, the model provider's HTTP retries and the page
 * client's reconnect backoff.
 */

import { MAX_TIMER_MS } from "./validate";

/**
 * Resolves after `ms`, or rejects with `signal`'s reason as soon as it aborts. A wait past
 * `MAX_TIMER_MS` (24.8 days), which a timer would end at once, ends at that: callers that wait
 * for a time loop until it has come.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      },
      Math.min(ms, MAX_TIMER_MS),
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
