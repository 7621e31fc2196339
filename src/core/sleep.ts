/**
 * An abortable timer, shared by step retries, the model provider's HTTP retries and the page
 * client's reconnect backoff.
 */

import { MAX_TIMER_MS } from "./validate";

/**
 * Sleeps until `left()` (the ms still to wait, by the caller's clock) is 0 or less: a timer may
 * fire a little before that clock says the time has come, and a wait past `MAX_TIMER_MS` ends
 * early, so it sleeps again for what is left. Rejects with `signal`'s reason as soon as it aborts.
 */
export async function sleepUntil(left: () => number, signal?: AbortSignal): Promise<void> {
  for (let ms = left(); ms > 0; ms = left()) await sleep(ms, signal);
}

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
