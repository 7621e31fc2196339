/**
 * Input checks applied before anything is written: ids, structured-cloneability and payload size.
 * Used by the runtime for inputs, step results, stashes, emits, events and fiber results.
 */

import type { StepOptions } from "./define";
import { describeError, InvalidInputError } from "./errors";
import { FIBER_STATUSES } from "./records";

/**
 * Ids and idempotency keys: 1-200 characters from letters, digits and `_ - . : @ /`, but not `.`
 * or `..` alone, which a URL (the event route's `/fibers/:id/events`) reads as a path step.
 */
const ID_PATTERN = /^(?!\.\.?$)[A-Za-z0-9_.:@/-]{1,200}$/;

/** Throws `invalid_id` unless `id` is a well-formed fiber id. */
export function assertValidId(id: unknown, what = "fiber id"): asserts id is string {
  if (typeof id !== "string" || !ID_PATTERN.test(id)) {
    throw new InvalidInputError(
      "invalid_id",
      `Invalid ${what} ${describe(id)}: use 1-200 characters from letters, digits and _ - . : @ / (not "." or ".." alone).`,
    );
  }
}

/**
 * How deep containers (objects, arrays, Maps, Sets) may nest in a stored value. Chromium's
 * IndexedDB writes a value nested 2,500 deep and then cannot read its row back (the whole journal
 * of the fiber becomes unreadable), and a copy that recurses overflows the stack around the same
 * depth; 1,000 reads back everywhere we store (the payload fuzz, `src/store/stash-payloads.fuzz*`).
 */
export const MAX_NESTING = 1_000;

/**
 * Throws `not_cloneable` when `value` cannot be stored (functions, symbols, promises, class
 * instances with private state, containers nested deeper than `MAX_NESTING`, a getter that throws,
 * a revoked Proxy...) and `payload_too_large` when its estimated size exceeds `maxBytes`.
 */
export function assertStorable(value: unknown, what: string, maxBytes: number): void {
  let measured: Measured;
  try {
    measured = measure(value, maxBytes);
  } catch (cause) {
    // Reading the value ran its code: a getter threw, a Proxy was revoked or its trap threw.
    throw notCloneable(what, `reading it threw ${describeError(cause)}`, cause);
  }
  const { size, plain, depth } = measured;
  if (depth > MAX_NESTING) {
    throw new InvalidInputError(
      "not_cloneable",
      `The ${what} cannot be stored: it nests objects or arrays more than ${MAX_NESTING} levels deep, which IndexedDB cannot read back. Flatten it (a list with references instead of a chain), or store it as a string.`,
    );
  }
  // Plain data (primitives, arrays, plain objects: what nearly every chunk and step result is)
  // is cloneable by construction; only anything else pays for a trial structured clone.
  if (!plain) {
    try {
      structuredClone(value);
    } catch (cause) {
      throw notCloneable(what, `it is not structured-cloneable (${describeError(cause)})`, cause);
    }
  }
  if (size > maxBytes) {
    throw new InvalidInputError(
      "payload_too_large",
      `The ${what} is about ${size} bytes, over the limit of ${maxBytes} bytes. Store large data elsewhere and pass a reference, or raise maxPayloadBytes in createRuntime().`,
    );
  }
}

function notCloneable(what: string, why: string, cause: unknown): InvalidInputError {
  return new InvalidInputError(
    "not_cloneable",
    `The ${what} cannot be stored: ${why}. Pass plain data: objects, arrays, strings, numbers, booleans, null, Dates, Maps, Sets, typed arrays.`,
    { cause },
  );
}

/**
 * Estimates the stored size of a structured-cloneable value in bytes, at the most any store takes
 * for it: strings as UTF-8 with JSON's escapes (what the edge's SQLite rows hold; IndexedDB's
 * UTF-16 is never more), binary data as the whole buffer a view shares (a clone copies all of
 * it). Stops counting once past `stopAt`.
 */
export function estimateSize(value: unknown, stopAt = Number.POSITIVE_INFINITY): number {
  return measure(value, stopAt).size;
}

interface Measured {
  size: number;
  /** Whether the whole value was walked and is plain data. */
  plain: boolean;
  /** How deep containers nest, as far as walked (the walk stops past `MAX_NESTING`). */
  depth: number;
}

/**
 * `estimateSize`, whether the whole value was plain data (primitives other than symbols, arrays
 * and objects whose prototype is `Object.prototype` or `null`; false as well when the count
 * stopped early), and how deep its containers nest. Throws what reading the value throws.
 */
function measure(value: unknown, stopAt: number): Measured {
  let total = 0;
  let plain = true;
  let deepest = 0;
  const seen = new Set<object>();
  // Two stacks rather than one of pairs: this runs on every chunk and step result.
  const stack: unknown[] = [value];
  const depths: number[] = [0];
  while (stack.length > 0 && total <= stopAt) {
    const v = stack.pop();
    const depth = (depths.pop() as number) + 1;
    switch (typeof v) {
      case "string":
        total += encodedLength(v);
        continue;
      case "number":
      case "bigint":
        total += 8;
        continue;
      case "boolean":
      case "undefined":
        total += 4;
        continue;
      case "object":
        break;
      default:
        plain = false;
        continue;
    }
    if (v === null) {
      total += 4;
      continue;
    }
    if (seen.has(v)) continue;
    seen.add(v);
    if (depth > deepest) {
      deepest = depth;
      if (depth > MAX_NESTING) break;
    }
    if (Array.isArray(v)) {
      for (const item of v) {
        stack.push(item);
        depths.push(depth);
      }
      total += 2;
      continue;
    }
    const prototype = Object.getPrototypeOf(v);
    if (prototype !== Object.prototype && prototype !== null) {
      plain = false;
      if (ArrayBuffer.isView(v)) {
        total += v.buffer.byteLength; // a view of 16 bytes into 3 MB clones the 3 MB
        continue;
      }
      if (v instanceof ArrayBuffer) {
        total += v.byteLength;
        continue;
      }
      if (typeof Blob !== "undefined" && v instanceof Blob) {
        total += v.size;
        continue;
      }
      if (v instanceof Date) {
        total += 8;
        continue;
      }
      if (v instanceof Map) {
        for (const [k, item] of v) {
          stack.push(k, item);
          depths.push(depth, depth);
        }
        total += 2;
        continue;
      }
      if (v instanceof Set) {
        for (const item of v) {
          stack.push(item);
          depths.push(depth);
        }
        total += 2;
        continue;
      }
      // Any other object (a class instance) is cloned as its own enumerable fields, like a plain one.
    }
    for (const [k, item] of Object.entries(v)) {
      total += encodedLength(k);
      stack.push(item);
      depths.push(depth);
    }
    total += 2;
  }
  return { size: total, plain: plain && stack.length === 0, depth: deepest };
}

/**
 * The bytes of `text` as a JSON string in UTF-8, counted up: quotes, 2 bytes a character from
 * U+0080, 3 from U+0800 (a surrogate pair 6, for 4 stored), 2 for a quote, a backslash or one of
 * `\b \f \n \r \t`, 6 for any other control character (`\u00XX`). So `"中".repeat(400_000)`
 * counts 1.2 MB, as the edge stores it.
 */
function encodedLength(text: string): number {
  let bytes = text.length + 2;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) bytes += c >= 0x800 ? 2 : 1;
    else if (c === 0x22 || c === 0x5c || (c >= 0x08 && c <= 0x0d && c !== 0x0b)) bytes += 1;
    else if (c < 0x20) bytes += 5;
  }
  return bytes;
}

/**
 * The longest delay a timer can wait: `setTimeout` takes a signed 32-bit delay (about 24.8 days)
 * and fires a longer one at once, so a larger step timeout or backoff would end at once, not
 * late (durable waits re-arm instead: `fiber-waits.ts`).
 */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Throws `invalid_argument` unless `options` (a step's, or a tool's `timeoutMs` and `retry`) holds
 * numbers the runtime can honour: a timeout in (0, MAX_TIMER_MS] ms, a whole number of attempts
 * >= 1, delays in [0, MAX_TIMER_MS] ms and a known backoff. `where` names the call for the message.
 */
export function assertStepOptions(options: StepOptions, where: string): void {
  const { timeoutMs, retry, awaitStart } = options;
  assertArgument(
    awaitStart === undefined || typeof awaitStart === "boolean",
    `${where}: awaitStart must be true or false (got ${String(awaitStart)}).`,
  );
  assertArgument(
    timeoutMs === undefined || (typeof timeoutMs === "number" && timeoutMs > 0 && timeoutMs <= MAX_TIMER_MS),
    `${where}: timeoutMs must be a number of milliseconds above 0 and at most ${MAX_TIMER_MS} (got ${String(timeoutMs)}); leave it out for no deadline.`,
  );
  if (retry === undefined) return;
  assertArgument(typeof retry === "object" && retry !== null, `${where}: retry must be an object.`);
  const { maxAttempts, backoff, initialDelayMs, maxDelayMs } = retry;
  assertArgument(
    maxAttempts === undefined || (Number.isInteger(maxAttempts) && maxAttempts >= 1),
    `${where}: retry.maxAttempts must be a whole number >= 1, the first attempt included (got ${String(maxAttempts)}).`,
  );
  assertArgument(
    backoff === undefined || backoff === "exponential" || backoff === "fixed",
    `${where}: retry.backoff must be "exponential" or "fixed" (got ${String(backoff)}).`,
  );
  for (const [name, ms] of [
    ["initialDelayMs", initialDelayMs],
    ["maxDelayMs", maxDelayMs],
  ] as const) {
    assertArgument(
      ms === undefined || (typeof ms === "number" && ms >= 0 && ms <= MAX_TIMER_MS),
      `${where}: retry.${name} must be a number of milliseconds from 0 to ${MAX_TIMER_MS} (got ${String(ms)}).`,
    );
  }
}

/** The longest event name `sendEvent` takes (names are written by code, not users). */
export const MAX_EVENT_NAME_LENGTH = 200;

/** The longest cancel reason `cancel` takes: it is stored in the record and sent to every reader. */
export const MAX_CANCEL_REASON_LENGTH = 1_000;

/** Throws `invalid_argument` unless `name` is an event name `sendEvent` takes. */
export function assertEventName(name: unknown): asserts name is string {
  assertArgument(
    typeof name === "string" && name.length > 0 && name.length <= MAX_EVENT_NAME_LENGTH,
    `sendEvent(id, name, payload) needs an event name of 1-${MAX_EVENT_NAME_LENGTH} characters, got ${describe(name)}.`,
  );
}

/** Throws `invalid_argument` unless `reason` is a cancel reason (a string of at most 1,000 characters). */
export function assertCancelReason(reason: unknown): asserts reason is string {
  assertArgument(
    typeof reason === "string" && reason.length <= MAX_CANCEL_REASON_LENGTH,
    `cancel(id, reason) takes a reason of at most ${MAX_CANCEL_REASON_LENGTH} characters, got ${typeof reason === "string" ? `${reason.length} characters` : describe(reason)}.`,
  );
}

const QUERY_STATUSES: ReadonlySet<unknown> = new Set(FIBER_STATUSES);

/**
 * Throws `invalid_argument` unless `query` is a `FiberQuery` (or nothing): a page can send any
 * value, and a malformed one would otherwise fail deep in a store with an untyped error.
 */
export function assertFiberQuery(query: unknown): void {
  if (query === undefined) return;
  const bad = (what: string) => new InvalidInputError("invalid_argument", `list(query): ${what}`);
  if (query === null || typeof query !== "object" || Array.isArray(query)) {
    throw bad(
      `pass an object or nothing, not ${query === null ? "null" : Array.isArray(query) ? "an array" : typeof query}.`,
    );
  }
  const { status, name, limit, endedBefore, withInput } = query as Record<string, unknown>;
  const statuses = Array.isArray(status) ? status : [status];
  if (status !== undefined && !statuses.every((s) => QUERY_STATUSES.has(s))) {
    throw bad(
      `status must be one of ${[...QUERY_STATUSES].join(", ")} or an array of them, got ${safeJson(status)}.`,
    );
  }
  if (name !== undefined && typeof name !== "string")
    throw bad(`name must be a string, got ${describe(name)}.`);
  if (limit !== undefined && (typeof limit !== "number" || Number.isNaN(limit))) {
    throw bad(`limit must be a number, got ${describe(limit)}.`);
  }
  if (endedBefore !== undefined && (typeof endedBefore !== "number" || Number.isNaN(endedBefore))) {
    throw bad(`endedBefore must be a time in ms since the epoch, got ${describe(endedBefore)}.`);
  }
  if (withInput !== undefined && typeof withInput !== "boolean") {
    throw bad(`withInput must be true or false, got ${describe(withInput)}.`);
  }
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value)?.slice(0, 80) ?? String(value);
  } catch {
    return typeof value;
  }
}

/** Throws `invalid_argument` with `message` unless `condition` holds. */
export function assertArgument(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvalidInputError("invalid_argument", message);
}

function describe(value: unknown): string {
  if (typeof value === "string")
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
  return `of type ${value === null ? "null" : typeof value}`;
}
