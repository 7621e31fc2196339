/**
 * IdbStore's row encoding: every journal entry and chunk reads back exactly as written (fields,
 * absent fields, values outside the packed ranges), and segments fold to the last entry per pos.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { JournalEntry, StreamChunk } from "../core/records";
import { decodeChunk, encodeChunk, encodeSegment, foldSegments } from "./idb-rows";

const time = fc.oneof(fc.integer({ min: 0, max: 2 ** 45 }), fc.double({ min: 0, max: 2 ** 45, noNaN: true }));
const value = fc.oneof(fc.constant(undefined), fc.constant(null), fc.string(), fc.integer(), fc.object());

const entryArb: fc.Arbitrary<JournalEntry> = fc
  .record(
    {
      pos: fc.nat(100_000),
      kind: fc.constantFrom("step", "sleep", "event", "now", "random", "uuid", "future-kind"),
      key: fc.string({ minLength: 1 }),
      status: fc.constantFrom("started", "completed", "failed", "future-status"),
      attempt: fc.oneof(fc.nat(50), fc.constant(2 ** 53), fc.constant(-1)),
      startedAt: time,
      endedAt: time,
      result: value,
      error: fc.record({ name: fc.string(), message: fc.string() }),
      dueAt: time,
      streamFrom: fc.nat(),
      order: fc.record({ settled: fc.nat(), calls: fc.nat(), emits: fc.nat() }),
    },
    { requiredKeys: ["pos", "kind", "key", "status", "attempt", "startedAt"] },
  )
  .map((entry) => ({ fiberId: "f", ...entry }) as JournalEntry);

describe("journal rows", () => {
  it("read back every entry exactly as written, absent fields absent", () => {
    fc.assert(
      fc.property(entryArb, (entry) => {
        const [back] = foldSegments("f", [encodeSegment([entry])]);
        const expected: Record<string, unknown> = { ...entry };
        // `result: undefined` and no result read the same way to the engine.
        if (expected.result === undefined) delete expected.result;
        const actual: Record<string, unknown> = { ...back };
        if (actual.result === undefined) delete actual.result;
        expect(actual).toEqual(expected);
        for (const field of ["endedAt", "error", "dueAt", "streamFrom", "order"]) {
          expect(field in (back as object)).toBe(field in entry);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("fold to the last entry written at each pos, ordered by pos", () => {
    // Some positions far apart, and some past the highest array index (no run takes either).
    const anyPos = fc.oneof(
      entryArb,
      entryArb.map((e) => ({ ...e, pos: e.pos + 2 ** 32 - 50_000 })),
    );
    fc.assert(
      fc.property(fc.array(fc.array(anyPos, { maxLength: 5 }), { maxLength: 8 }), (commits) => {
        const last = new Map<number, JournalEntry>();
        for (const commit of commits) for (const entry of commit) last.set(entry.pos, entry);
        const folded = foldSegments("f", commits.filter((c) => c.length > 0).map(encodeSegment));
        expect(folded.map((e) => [e.pos, e.key, e.status])).toEqual(
          [...last.values()].sort((a, b) => a.pos - b.pos).map((e) => [e.pos, e.key, e.status]),
        );
      }),
    );
  });
});

describe("journal segments", () => {
  it("keep one timestamp per commit: later entries store their distance from the first", () => {
    const at = 1_780_000_000_123;
    const completed: JournalEntry = {
      fiberId: "f",
      pos: 7,
      kind: "step",
      key: "s#8",
      status: "completed",
      attempt: 1,
      startedAt: at,
      endedAt: at + 3,
      result: 1,
    };
    const started: JournalEntry = { ...completed, pos: 8, key: "s#9", status: "started", startedAt: at + 4 };
    delete started.endedAt;
    delete started.result;
    const segment = encodeSegment([completed, started]);
    expect(segment[0]).toBe(at);
    expect((segment[1] as unknown[])[3]).toBe(0);
    expect((segment[2] as unknown[])[3]).toBe(4);
    expect(foldSegments("f", [segment])).toEqual([completed, started]);
  });

  it("read segments written before the time base (schema v2 to v4) with their absolute times", () => {
    // [pos, meta, key, startedAt, duration, error, dueAt, streamFrom, result]; meta 19: completed step, attempt 1.
    const shipped = [
      [0, 19, "s#1", 1_700_000_000_000, 5, null, null, 1, "a"],
      [1, 18, "s#2", 1_700_000_000_006],
    ];
    const newer = encodeSegment([
      {
        fiberId: "f",
        pos: 1,
        kind: "step",
        key: "s#2",
        status: "completed",
        attempt: 1,
        startedAt: 1_700_000_000_006,
        endedAt: 1_700_000_000_010,
        result: "b",
      },
    ]);
    expect(foldSegments("f", [shipped, newer])).toEqual([
      {
        fiberId: "f",
        pos: 0,
        kind: "step",
        key: "s#1",
        status: "completed",
        attempt: 1,
        startedAt: 1_700_000_000_000,
        endedAt: 1_700_000_000_005,
        result: "a",
        streamFrom: 1,
      },
      {
        fiberId: "f",
        pos: 1,
        kind: "step",
        key: "s#2",
        status: "completed",
        attempt: 1,
        startedAt: 1_700_000_000_006,
        endedAt: 1_700_000_000_010,
        result: "b",
      },
    ]);
  });
});

describe("chunk rows", () => {
  it("leave the seq to the key, and read rows written with it (schema v2 to v4)", () => {
    const chunk: StreamChunk = { fiberId: "f", seq: 41, type: "token", data: "hi", at: 5, step: 2 };
    expect(encodeChunk(chunk)).toEqual(["token", "hi", 5, 2]);
    expect(decodeChunk("f", 41, [41, "token", "hi", 5, 2])).toEqual(chunk);
    expect(decodeChunk("f", 41, [41, "token", "hi", 5, null, 3])).toEqual({
      ...chunk,
      step: undefined,
      ordinal: 3,
    });
  });

  it("read back every chunk exactly as written", () => {
    const chunkArb: fc.Arbitrary<StreamChunk> = fc
      .record(
        {
          seq: fc.nat(),
          type: fc.string({ minLength: 1 }),
          data: value,
          at: time,
          step: fc.nat(),
          ordinal: fc.nat(),
        },
        { requiredKeys: ["seq", "type", "data", "at"] },
      )
      .map((chunk) => ({ fiberId: "f", ...chunk }) as StreamChunk);
    fc.assert(
      fc.property(chunkArb, (chunk) => {
        const back = decodeChunk("f", chunk.seq, encodeChunk(chunk));
        expect(back).toEqual(chunk);
        expect("step" in back).toBe("step" in chunk);
        expect("ordinal" in back).toBe("ordinal" in chunk);
      }),
      { numRuns: 300 },
    );
  });
});
