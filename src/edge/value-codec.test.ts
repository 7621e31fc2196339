/**
 * The JSON codec behind `SqliteStore`: every structured-cloneable value comes back as
 * `structuredClone` would return it, and what structured clone refuses is refused.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeValue, encodeValue } from "./value-codec";

const roundTrip = (value: unknown) => decodeValue(encodeValue(value));

describe("value codec", () => {
  it.each([
    ["undefined", undefined],
    ["null", null],
    ["NaN", Number.NaN],
    ["-0", -0],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["-Infinity", Number.NEGATIVE_INFINITY],
    ["a bigint", 12345678901234567890n],
    ["a string with a NUL", "a\u0000b"],
    ["a date", new Date(1_700_000_000_000)],
    ["an invalid date", new Date(Number.NaN)],
    ["a regexp", /fi+ber/giu],
    ["a map with object keys", new Map<unknown, unknown>([[{ k: 1 }, new Set([1, "1"])]])],
    ["boxed primitives", [Object(true), Object(2), Object("three"), Object(4n)]],
    ["an object with undefined fields", { a: undefined, b: { c: undefined } }],
    ["an object that uses the tag key", { $fl: "ref", id: 0 }],
    ["an object with a __proto__ key", JSON.parse('{"__proto__": {"polluted": true}, "x": 1}')],
    // biome-ignore lint/suspicious/noSparseArray: the hole is what is being tested.
    ["a sparse array", [1, , 3]],
  ])("keeps %s", (_name, value) => {
    expect(roundTrip(value)).toStrictEqual(structuredClone(value));
  });

  it("keeps a typed array view of part of a buffer, and the buffer it shares with another view", () => {
    const buffer = new ArrayBuffer(16);
    new Uint8Array(buffer).set([1, 2, 3, 4, 5, 6, 7, 8]);
    const value = {
      a: new Uint16Array(buffer, 2, 3),
      b: new DataView(buffer, 4, 4),
      big: new BigInt64Array(2),
    };
    const back = roundTrip(value) as typeof value;
    expect(back).toStrictEqual(structuredClone(value));
    expect(back.a.buffer).toBe(back.b.buffer);
    expect(back.a.byteOffset).toBe(2);
  });

  it("keeps shared references and cycles", () => {
    const shared = { n: 1 };
    const cyclic: Record<string, unknown> = { shared, again: shared, list: [shared] };
    cyclic.self = cyclic;
    const back = roundTrip(cyclic) as typeof cyclic;
    expect(back.self).toBe(back);
    expect(back.again).toBe(back.shared);
    expect((back.list as unknown[])[0]).toBe(back.shared);
  });

  it("keeps an error's class, message and cause, as structured clone does", () => {
    const error = new RangeError("too far", { cause: new Error("inner") });
    const back = roundTrip(error) as RangeError;
    expect(back).toBeInstanceOf(RangeError);
    expect(back.message).toBe("too far");
    expect((back.cause as Error).message).toBe("inner");
  });

  it("keeps named properties of an array", () => {
    const array = Object.assign([1, 2], { label: "x" });
    expect(roundTrip(array)).toStrictEqual(structuredClone(array));
  });

  it.each([
    ["a function", { f: () => 1 }],
    ["a symbol", Symbol("s")],
    [
      "a class with private state",
      new (class Counter {
        #n = 1;
        get n() {
          return this.#n;
        }
      })(),
    ],
  ])(
    "refuses %s like structured clone (DataCloneError) or clones it like structured clone",
    (_name, value) => {
      let cloned: unknown;
      let refused: unknown;
      try {
        cloned = structuredClone(value);
      } catch (error) {
        refused = error;
      }
      if (refused)
        expect(() => encodeValue(value)).toThrow(expect.objectContaining({ name: "DataCloneError" }));
      else expect(roundTrip(value)).toStrictEqual(cloned);
    },
  );

  it("writes a plain JSON value as JSON.stringify would, and tags only what JSON cannot hold", () => {
    const row = { id: "f1", pos: 3, output: { text: "hi", list: [1, null, true] }, at: 1.5 };
    expect(encodeValue(row)).toBe(JSON.stringify(row));
    const shared = { k: 1 };
    for (const value of [{ a: -0 }, { a: undefined }, [shared, shared], { $fl: 1 }, new Date(0)])
      expect(encodeValue(value)).toContain('"$fl"');
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(decodeValue(encodeValue(v))).toStrictEqual(structuredClone(v));
      }),
      { numRuns: 300 },
    );
  });

  it("round-trips arbitrary values exactly as structuredClone does", () => {
    const value = fc.anything({
      withBigInt: true,
      withBoxedValues: true,
      withDate: true,
      withMap: true,
      withSet: true,
      withNullPrototype: false,
      withObjectString: true,
      withSparseArray: true,
      withTypedArray: true,
      withUnicodeString: true,
    });
    fc.assert(
      fc.property(value, (v) => {
        expect(roundTrip(v)).toStrictEqual(structuredClone(v));
      }),
      { numRuns: 300 },
    );
  });
});
