#!/usr/bin/env node
/**
 * `node e2e/crash/leveldb-log-check.mjs <dir or file>...`: reads LevelDB log-format files (the
 * write-ahead `NNNNNN.log` and `MANIFEST-NNNNNN` of an IndexedDB `.indexeddb.leveldb` directory)
 * record by record, checking each record's CRC32C as LevelDB's `log::Reader` does, and prints
 * where a record is torn or fails its checksum, and whether intact records follow it. A torn
 * record at the very end is what a kill leaves and LevelDB drops silently; one with intact
 * records after it is what LevelDB reports as corruption at open. Used by `wipe-hunt.mjs` on the
 * copy of a profile taken just before the launch that wiped it.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const BLOCK = 32_768;
const HEADER = 7;

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

function crc32c(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function unmask(masked) {
  const rot = (masked - 0xa282ead8) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}

/** Every physical record of a log file: offset, type, length, and whether it is whole and intact. */
export function scanLog(buffer) {
  const records = [];
  for (let block = 0; block < buffer.length; block += BLOCK) {
    let at = block;
    const end = Math.min(block + BLOCK, buffer.length);
    while (end - at >= HEADER) {
      const type = buffer[at + 6];
      const length = buffer.readUInt16LE(at + 4);
      const stored = buffer.readUInt32LE(at);
      if (type === 0 && length === 0 && stored === 0) {
        // Zeroes: a preallocated or padded region (LevelDB skips it).
        records.push({ offset: at, type: 0, length: 0, state: "zero" });
        at += HEADER;
        continue;
      }
      if (at + HEADER + length > end) {
        records.push({
          offset: at,
          type,
          length,
          state: end === buffer.length ? "torn-at-end" : "bad-length",
        });
        break;
      }
      const payload = buffer.subarray(at + 6, at + HEADER + length); // type byte + data
      const ok = crc32c(payload) === unmask(stored);
      records.push({ offset: at, type, length, state: ok ? "ok" : "checksum-mismatch" });
      at += HEADER + length;
    }
  }
  return records;
}

/** A one-paragraph verdict on one log file. */
export function describeLog(path) {
  const buffer = readFileSync(path);
  const records = scanLog(buffer);
  const bad = records.findIndex((r) => r.state !== "ok" && r.state !== "zero");
  const zeros = records.filter((r) => r.state === "zero").length;
  const ok = records.filter((r) => r.state === "ok").length;
  if (bad === -1)
    return `${path}: ${buffer.length} B, ${ok} records, all intact${zeros ? ` (${zeros} zero headers)` : ""}`;
  const first = records[bad];
  const after = records.slice(bad + 1).filter((r) => r.state === "ok").length;
  return `${path}: ${buffer.length} B, ${ok} intact records; first bad record at byte ${first.offset} (block ${Math.floor(first.offset / BLOCK)}, type ${first.type}, length ${first.length}): ${first.state}; ${after} intact records after it${zeros ? `; ${zeros} zero headers` : ""}`;
}

function* logFiles(path) {
  if (statSync(path).isDirectory()) {
    for (const entry of readdirSync(path)) yield* logFiles(join(path, entry));
  } else if (/(\.log|MANIFEST-\d+)$/.test(path) && !/\/LOG$/.test(path)) {
    yield path;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const arg of process.argv.slice(2)) for (const file of logFiles(arg)) console.log(describeLog(file));
}
