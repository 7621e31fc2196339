/**
 * The worker's live view of a reply's model call: which attempt runs, why the last one failed
 * and when the next starts, or that the worker waits for the network. The assistant's model
 * (`assistant.ts`) is wrapped here per fiber; the agent asks for its provider once per attempt,
 * so the wrapper sees every attempt and its outcome. Served by `demo-routes.ts` as
 * `GET /demo-api/model-call?fiberId=`; kept in the worker's memory only, so a restarted worker
 * counts from 1 again. The page takes the attempts from the reply's durable `message.retry`
 * chunks instead (the agent goes on counting after a restart) and only the network wait from here.
 *
 * It also makes two failures final that retrying cannot change: a request the browser refuses to
 * build (a header with a character outside ISO-8859-1, from a key saved before settings were
 * validated) and any other non-retryable model error, so a reply fails at once with its reason.
 */

import { ModelError } from "../../src/agent/errors";
import type { ModelEvent, ModelProvider, ModelRequest } from "../../src/agent/types";
import type { RetryPolicy } from "../../src/core/define";
import { NonRetryableError } from "../../src/core/errors";
import type { ModelCallStatus } from "../shared/demo-api";

/** The assistant's model retry policy; the agent announces each wait in a `message.retry` chunk. */
export const MODEL_RETRY = {
  maxAttempts: 5,
  backoff: "exponential",
  initialDelayMs: 1_000,
  maxDelayMs: 20_000,
} as const satisfies RetryPolicy;

/** How long a wait for the network pauses the agent's no-progress timer, renewed while it lasts. */
const OFFLINE_PAUSE_MS = 30_000;

/** The delay before attempt `attempt + 1`, as `callModel` computes it for this policy. */
export function retryDelay(attempt: number): number {
  return Math.min(MODEL_RETRY.initialDelayMs * 2 ** (attempt - 1), MODEL_RETRY.maxDelayMs);
}

const calls = new Map<string, ModelCallStatus>();

/** The current or last model call of `fiberId`, if this worker made one. */
export function modelCallStatus(fiberId: string): ModelCallStatus | null {
  return calls.get(fiberId) ?? null;
}

/** `provider`, reporting each attempt of `fiberId`'s model calls to {@link modelCallStatus}. */
export function watchModel(fiberId: string, provider: ModelProvider): ModelProvider {
  return {
    name: provider.name,
    model: provider.model,
    supportsContinuation: provider.supportsContinuation,
    async *stream(request: ModelRequest): AsyncGenerator<ModelEvent, void, undefined> {
      const previous = calls.get(fiberId);
      // A call after a failed attempt is the next attempt; after anything else, a new call.
      const attempt = previous?.state === "retrying" ? previous.attempt + 1 : 1;
      const report = (patch: Partial<ModelCallStatus>) => {
        const base: ModelCallStatus = { attempt, maxAttempts: MODEL_RETRY.maxAttempts, state: "calling" };
        calls.set(fiberId, { ...base, ...patch });
      };
      report({ ...(previous?.lastError ? { lastError: previous.lastError } : {}) });
      await waitForNetwork(request, () => report({ state: "offline" }));
      report({});
      let failed = false;
      try {
        for await (const event of provider.stream(request)) {
          if (calls.get(fiberId)?.state !== "streaming") report({ state: "streaming" });
          yield event;
        }
      } catch (error) {
        failed = true;
        const final = finalError(error);
        const retrying = !request.signal?.aborted && !isPermanent(final) && attempt < MODEL_RETRY.maxAttempts;
        const lastError = error instanceof Error ? error.message : String(error);
        report(
          retrying
            ? { state: "retrying", lastError, retryAt: Date.now() + retryDelay(attempt) }
            : { state: "failed", lastError },
        );
        throw final;
      } finally {
        // Also when the agent stops reading at the finish reason, which returns this generator early.
        if (!failed) report({ state: "done" });
      }
    },
  };
}

/** `error`, or a non-retryable one when no retry can change it. */
function finalError(error: unknown): unknown {
  if (error instanceof ModelError && error.retryable && /ISO-8859-1/.test(String(describeCause(error)))) {
    return new ModelError(
      `${error.message}. A header of this request (the API key?) holds a character HTTP cannot carry: save the key again in Settings.`,
      { ...error.data, retryable: false },
      { cause: error },
    );
  }
  return error;
}

function describeCause(error: Error): string {
  const cause = error.cause;
  return `${error.message} ${cause instanceof Error ? cause.message : String(cause ?? "")}`;
}

function isPermanent(error: unknown): boolean {
  return error instanceof NonRetryableError || (error instanceof ModelError && !error.retryable);
}

/**
 * Resolves once the worker is online (at once when it is), calling `onOffline` first if it is
 * not: a request made offline can only fail, and each failure would spend an attempt. The
 * agent's no-progress timer is paused while this waits, as it is for a provider's backoff.
 */
async function waitForNetwork(request: ModelRequest, onOffline: () => void): Promise<void> {
  if (navigator.onLine) return;
  onOffline();
  const signal = request.signal;
  await new Promise<void>((resolve, reject) => {
    let paused = 0;
    // Checked each second as well as on "online": a worker is not always sent that event.
    const check = () => {
      if (navigator.onLine) return finish(resolve);
      if (Date.now() - paused >= OFFLINE_PAUSE_MS / 2) {
        paused = Date.now();
        request.onRetryWait?.(OFFLINE_PAUSE_MS);
      }
    };
    const timer = setInterval(check, 1_000);
    const online = () => check();
    const aborted = () => finish(() => reject(signal?.reason));
    function finish(settle: () => void): void {
      clearInterval(timer);
      removeEventListener("online", online);
      signal?.removeEventListener("abort", aborted);
      settle();
    }
    addEventListener("online", online);
    signal?.addEventListener("abort", aborted, { once: true });
    if (signal?.aborted) aborted();
    else check();
  });
}
