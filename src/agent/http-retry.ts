/**
 * Retry timing for HTTP calls: `Retry-After` parsing and bounded exponential backoff with jitter
 * (the abortable sleep itself is `src/core/sleep.ts`). Used by the OpenAI-compatible provider
 * before a response body is read.
 */

/**
 * Reads `retry-after-ms` or `Retry-After` (delta seconds or an HTTP date) as milliseconds to wait.
 *
 * @example
 * parseRetryAfter(new Headers({ "retry-after": "2" })); // 2000
 */
export function parseRetryAfter(headers: Headers, now: number = Date.now()): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && /^\s*\d+(?:\.\d+)?\s*$/.test(ms)) return Math.ceil(Number(ms));
  const value = headers.get("retry-after")?.trim();
  if (value === undefined || value === "") return undefined;
  if (/^\d+(?:\.\d+)?$/.test(value)) return Math.ceil(Number(value) * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The delay before retry number `attempt + 1`: `initialDelayMs` doubling per attempt, capped at `maxDelayMs`, minus up to 25% jitter. */
export function backoffDelay(attempt: number, initialDelayMs: number, maxDelayMs: number): number {
  const base = Math.min(initialDelayMs * 2 ** attempt, maxDelayMs);
  // Up to 25% jitter below the nominal delay, so clients that failed together retry apart.
  return Math.round(base * (1 - Math.random() * 0.25));
}
