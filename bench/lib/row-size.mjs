/**
 * The size of an IndexedDB row as Chromium stores it once its LevelDB log is compacted: the
 * structured-clone bytes of the value (V8's serializer, which Blink uses, plus Blink's few-byte
 * envelope) and the encoded key (Chromium's IndexedDB key coding: a type byte, varint lengths,
 * strings as UTF-16, numbers as 8-byte doubles), plus the LevelDB key prefix (database, object
 * store and index ids) and the value's version prefix. B8's steady-state rows use it; it leaves
 * out LevelDB's block framing and its compression (which would shrink field names and keys).
 */

import { serialize } from "node:v8";

/** Bytes of Blink's envelope around V8's serialization, of the LevelDB key prefix and of the value's version varint. */
const BLINK_ENVELOPE = 3;
const KEY_PREFIX = 4;
const VALUE_PREFIX = 1;

function varintBytes(n) {
  let bytes = 1;
  let x = n;
  while (x >= 0x80) {
    x = Math.floor(x / 0x80);
    bytes++;
  }
  return bytes;
}

/** Bytes of Chromium's encoding of an IndexedDB key. */
export function keyBytes(key) {
  if (Array.isArray(key)) return 1 + varintBytes(key.length) + key.reduce((sum, k) => sum + keyBytes(k), 0);
  if (typeof key === "string") return 1 + varintBytes(key.length) + 2 * key.length;
  if (typeof key === "number") return 1 + 8;
  throw new Error(`unsupported key ${JSON.stringify(key)}`);
}

/**
 * `value` rebuilt as the page's V8 held it when it was stored. A row reaches the harness through
 * structured clones (worker to page) and Playwright, which change two things V8's serializer
 * sees: arrays come back *holey*, which it writes in its sparse format (an index per element,
 * ~1-3 bytes more each), and small integers come back as heap doubles, which it writes as 8-byte
 * doubles instead of a 1-5 byte varint. The row on disk is the serialization of the values the
 * store built: packed arrays, small integers as such.
 */
function packed(value) {
  if (typeof value === "number") {
    // V8 keeps integers in 31 bits as small integers ("Smis"); `| 0` makes one of a heap double.
    return Number.isInteger(value) && value >= -(2 ** 30) && value < 2 ** 30 && !Object.is(value, -0)
      ? value | 0
      : value;
  }
  if (Array.isArray(value)) {
    const out = [];
    for (const item of value) out.push(packed(item));
    return out;
  }
  if (value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    const out = {};
    for (const [k, item] of Object.entries(value)) out[k] = packed(item);
    return out;
  }
  return value;
}

/** Bytes of one stored row: prefix + key, version + serialized value. */
export function rowBytes(key, value) {
  return KEY_PREFIX + keyBytes(key) + VALUE_PREFIX + BLINK_ENVELOPE + serialize(packed(value)).length;
}

/** Bytes of the fibers store's index entries for a record (status, createdAt, idempotencyKey): index key + primary key. */
export function fiberIndexBytes(record) {
  let total = 0;
  for (const field of ["status", "createdAt", "idempotencyKey"]) {
    if (record[field] === undefined) continue;
    total += KEY_PREFIX + keyBytes(record[field]) + keyBytes(record.id) + VALUE_PREFIX;
  }
  return total;
}
