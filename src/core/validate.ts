/**
 * Input checks applied before anything is written: ids, structured-cloneability and payload size.
 * Used by the runtime for inputs, step results, stashes, emits, events and fiber results.
 */

import { InvalidInputError } from "./errors";

/** Ids and idempotency keys: 1-200 characters from letters, digits and `_ - . : @ /`. */
const ID_PATTERN = /^[A-Za-z0-9_.:@/-]{1,200}$/;

/** Throws `invalid_id` unless `id` is a well-formed fiber id. */
export function assertValidId(id: unknown, what = "fiber id"): asserts id is string {
  if (typeof id !== "string" || !ID_PATTERN.test(id)) {
    throw new InvalidInputError(
      "invalid_id",
      `Invalid ${what} ${describe(id)}: use 1-200 characters from letters, digits and _ - . : @ /.`,
    );
  }
}

/**
 * Throws `not_cloneable` when `value` cannot be stored (functions, symbols, promises, class
 * instances with private state...) and `payload_too_large` when its estimated size exceeds
 * `maxBytes`.
 */
export function assertStorable(value: unknown, what: string, maxBytes: number): void {
  const { size, plain } = measure(value, maxBytes);
  // Plain data (primitives, arrays, plain objects: what nearly every chunk and step result is)
  // is cloneable by construction; only anything else pays for a trial structured clone.
  if (!plain) {
    try {
      structuredClone(value);
    } catch (cause) {
      throw new InvalidInputError(
        "not_cloneable",
        `The ${what} cannot be stored: it is not structured-cloneable (${(cause as Error).message}). Pass plain data: objects, arrays, strings, numbers, booleans, null, Dates, Maps, Sets, typed arrays.`,
        { cause },
      );
    }
  }
  if (size > maxBytes) {
    throw new InvalidInputError(
      "payload_too_large",
      `The ${what} is about ${size} bytes, over the limit of ${maxBytes} bytes. Store large data elsewhere and pass a reference, or raise maxPayloadBytes in createRuntime().`,
    );
  }
}

/**
 * Estimates the stored size of a structured-cloneable value in bytes (strings count their UTF-16
 * length, binary data its byte length). Stops counting once past `stopAt`.
 */
export function estimateSize(value: unknown, stopAt = Number.POSITIVE_INFINITY): number {
  return measure(value, stopAt).size;
}

/**
 * `estimateSize`, and whether the whole value was plain data: primitives other than symbols,
 * arrays and objects whose prototype is `Object.prototype` or `null` (false as well when the
 * count stopped early).
 */
function measure(value: unknown, stopAt: number): { size: number; plain: boolean } {
  let total = 0;
  let plain = true;
  const seen = new Set<object>();
  const stack: unknown[] = [value];
  while (stack.length > 0 && total <= stopAt) {
    const v = stack.pop();
    switch (typeof v) {
      case "string":
        total += v.length + 2;
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
    if (Array.isArray(v)) {
      for (const item of v) stack.push(item);
      total += 2;
      continue;
    }
    const prototype = Object.getPrototypeOf(v);
    if (prototype !== Object.prototype && prototype !== null) {
      plain = false;
      if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
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
        for (const [k, item] of v) stack.push(k, item);
        total += 2;
        continue;
      }
      if (v instanceof Set) {
        for (const item of v) stack.push(item);
        total += 2;
        continue;
      }
      // Any other object (a class instance) is cloned as its own enumerable fields, like a plain one.
    }
    for (const [k, item] of Object.entries(v)) {
      total += k.length + 2;
      stack.push(item);
    }
    total += 2;
  }
  return { size: total, plain: plain && stack.length === 0 };
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
