import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { cloneValue } from "./clone";

/** Every object and array reachable from `value`. */
function objectsOf(value: unknown, into = new Set<object>()): Set<object> {
  if (typeof value === "object" && value !== null && !into.has(value)) {
    into.add(value);
    for (const item of Object.values(value)) objectsOf(item, into);
  }
  return into;
}

describe("cloneValue", () => {
  it("copies plain data exactly as structuredClone does, sharing nothing with the original", () => {
    fc.assert(
      fc.property(
        fc.jsonValue(),
        fc.anything({ withNullPrototype: true, withObjectString: true }),
        (json, any) => {
          for (const value of [json, any]) {
            const copy = cloneValue(value);
            expect(copy).toStrictEqual(structuredClone(value));
            const mine = objectsOf(copy);
            for (const original of objectsOf(value)) expect(mine.has(original)).toBe(false);
          }
        },
      ),
    );
  });

  it("keeps undefined values, -0, NaN and bigint, and an own __proto__ key as a property", () => {
    const value = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>;
    const copy = cloneValue({ value, u: undefined, z: -0, n: Number.NaN, b: 10n });
    expect(Object.hasOwn(copy.value, "__proto__")).toBe(true);
    expect((copy.value as { polluted?: boolean }).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(copy.value)).toBe(Object.prototype);
    expect("u" in copy).toBe(true);
    expect(Object.is(copy.z, -0)).toBe(true);
    expect(copy.n).toBeNaN();
    expect(copy.b).toBe(10n);
  });

  it("hands shared and cyclic references to structuredClone, which keeps them", () => {
    const shared = { x: 1 };
    const copy = cloneValue({ a: shared, b: shared });
    expect(copy.a).toBe(copy.b);
    expect(copy.a).not.toBe(shared);
    const cyclic: { self?: unknown } = {};
    cyclic.self = cyclic;
    const again = cloneValue(cyclic);
    expect(again.self).toBe(again);
  });

  it("hands non-plain values to structuredClone: Dates, Maps, typed arrays, holes", () => {
    const holes = [1, 2, 3];
    delete holes[1];
    const value = { at: new Date(5), map: new Map([[1, { y: 2 }]]), bytes: new Uint8Array([1, 2]), holes };
    const copy = cloneValue(value);
    expect(copy.at).toBeInstanceOf(Date);
    expect(copy.at.getTime()).toBe(5);
    expect(copy.map.get(1)).toEqual({ y: 2 });
    expect(copy.bytes).toEqual(new Uint8Array([1, 2]));
    expect(1 in copy.holes).toBe(false);
  });

  it("throws structuredClone's DataCloneError for what cannot be stored", () => {
    for (const bad of [
      () => 1,
      Symbol("s"),
      { f: () => 1 },
      [Symbol("s")],
      { deep: { p: Promise.resolve() } },
    ]) {
      expect(() => cloneValue(bad)).toThrow(expect.objectContaining({ name: "DataCloneError" }));
    }
  });
});
