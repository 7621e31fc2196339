/**
 * `cloneValue`: `structuredClone` for the plain data stores hold, several times faster.
 *
 * What a store keeps is nearly always plain data: primitives, arrays and objects whose prototype
 * is `Object.prototype` or `null` (fiber records, journal entries, chunks, step results). Those
 * are copied by hand. Anything else anywhere inside the value (a `Date`, `Map`, typed array, class
 * instance, a function or symbol, an object reached twice or through a cycle, an array with holes)
 * sends the whole value to `structuredClone`, which keeps its exact semantics: shared references
 * stay shared, and what cannot be cloned throws its `DataCloneError`.
 *
 * One difference remains, on purpose: non-index properties added to an array are dropped here
 * but kept by `structuredClone`. Checking for them costs a key listing per array.
 */

/** Marks a value the hand copy does not take. */
const NOT_PLAIN: unique symbol = Symbol("not plain");

/** A deep copy of `value`, as `structuredClone(value)` would make it. */
export function cloneValue<T>(value: T): T {
  if (typeof value !== "object" || value === null) {
    return typeof value === "function" || typeof value === "symbol" ? structuredClone(value) : value;
  }
  const copy = copyPlain(value, new Set());
  return copy === NOT_PLAIN ? structuredClone(value) : (copy as T);
}

function copyPlain(value: object, seen: Set<object>): unknown {
  if (seen.has(value)) return NOT_PLAIN;
  seen.add(value);
  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype) return NOT_PLAIN;
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (item === undefined && !(i in value)) return NOT_PLAIN;
      const copy = copyItem(item, seen);
      if (copy === NOT_PLAIN) return NOT_PLAIN;
      out[i] = copy;
    }
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return NOT_PLAIN;
  const out: Record<string, unknown> = {};
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    const copy = copyItem((value as Record<string, unknown>)[key], seen);
    if (copy === NOT_PLAIN) return NOT_PLAIN;
    if (key === "__proto__") {
      // An own "__proto__" key (JSON.parse makes one) stays a property, as structuredClone keeps it.
      Object.defineProperty(out, key, { value: copy, enumerable: true, writable: true, configurable: true });
    } else {
      out[key] = copy;
    }
  }
  return out;
}

function copyItem(item: unknown, seen: Set<object>): unknown {
  if (typeof item === "object" && item !== null) return copyPlain(item, seen);
  return typeof item === "function" || typeof item === "symbol" ? NOT_PLAIN : item;
}
