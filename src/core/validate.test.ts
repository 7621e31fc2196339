/**
 * `assertStorable`: plain data is accepted without a trial clone, anything else is checked by
 * `structuredClone`, and the size limit holds either way.
 */

import { describe, expect, it, vi } from "vitest";
import { assertStorable, estimateSize, MAX_NESTING } from "./validate";

const LIMIT = 10_000;

describe("assertStorable", () => {
  it("accepts plain data, nested and cyclic, without a trial structured clone", () => {
    const clone = vi.spyOn(globalThis, "structuredClone");
    const cyclic: Record<string, unknown> = { name: "loop" };
    cyclic.self = cyclic;
    for (const value of [
      null,
      undefined,
      1,
      "text",
      true,
      10n,
      [1, [2, { a: [3] }]],
      cyclic,
      Object.create(null),
    ]) {
      expect(() => assertStorable(value, "value", LIMIT)).not.toThrow();
    }
    expect(clone).not.toHaveBeenCalled();
    clone.mockRestore();
  });

  it("accepts cloneable non-plain values anywhere in plain data", () => {
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
      norm() {
        return Math.hypot(this.x, this.y);
      }
    }
    const values = [
      { at: new Date(0) },
      [new Map([["k", new Set([1])]])],
      { bytes: new Uint8Array(8) },
      { point: new Point(1, 2) },
      { error: new Error("kept") },
    ];
    for (const value of values) expect(() => assertStorable(value, "value", LIMIT)).not.toThrow();
  });

  it.each([
    ["a function deep in an array", [1, [2, { f: () => 3 }]]],
    ["a symbol in an object", { s: Symbol("x") }],
    ["a WeakMap in an object", { w: new WeakMap() }],
    ["a promise", Promise.resolve(1)],
  ])("rejects %s with not_cloneable", (_what, value) => {
    expect(() => assertStorable(value, "stashed value", LIMIT)).toThrow(
      expect.objectContaining({ code: "not_cloneable", message: expect.stringContaining("stashed value") }),
    );
  });

  it("rejects plain and non-plain values over the limit with payload_too_large", () => {
    for (const value of [{ text: "x".repeat(LIMIT) }, new Map([["text", "x".repeat(LIMIT)]])]) {
      expect(() => assertStorable(value, "value", LIMIT)).toThrow(
        expect.objectContaining({ code: "payload_too_large" }),
      );
    }
  });

  it(`accepts containers nested ${MAX_NESTING} deep and refuses one level more with not_cloneable`, () => {
    const chain = (depth: number, wrap: (inner: unknown) => unknown) => {
      let value: unknown = "leaf";
      for (let i = 0; i < depth; i++) value = wrap(value);
      return value;
    };
    const wraps: Array<(inner: unknown) => unknown> = [
      (inner) => ({ next: inner }),
      (inner) => [inner],
      (inner) => new Map([["next", inner]]),
      (inner) => new Set([inner]),
    ];
    for (const wrap of wraps) {
      expect(() => assertStorable(chain(MAX_NESTING, wrap), "value", Number.MAX_SAFE_INTEGER)).not.toThrow();
      expect(() =>
        assertStorable(chain(MAX_NESTING + 1, wrap), "step result", Number.MAX_SAFE_INTEGER),
      ).toThrow(
        expect.objectContaining({ code: "not_cloneable", message: expect.stringContaining("levels deep") }),
      );
    }
    // Wide is not deep: many siblings at one level.
    expect(() =>
      assertStorable({ items: Array.from({ length: 5_000 }, (_, i) => ({ i })) }, "value", LIMIT * 100),
    ).not.toThrow();
  });

  it("refuses a value whose reading throws (a getter, a revoked Proxy) with not_cloneable, at once", () => {
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const values = [
      {
        get boom(): never {
          throw new Error("getter throws");
        },
      },
      { inner: revoked.proxy },
      [revoked.proxy],
    ];
    for (const value of values) {
      expect(() => assertStorable(value, "stash", LIMIT)).toThrow(
        expect.objectContaining({
          code: "not_cloneable",
          message: expect.stringContaining("reading it threw"),
        }),
      );
    }
  });

  it("counts keys, strings, numbers and containers", () => {
    // keys "ab" and "n", the string, the array and its items, the object.
    expect(estimateSize({ ab: "xyz", n: [1, true, null] })).toBe(4 + 3 + 5 + 2 + 8 + 4 + 4 + 2);
  });

  it("counts text as UTF-8 with JSON's escapes, as the edge stores it", () => {
    expect(estimateSize("abc")).toBe(5);
    expect(estimateSize("é")).toBe(2 + 2); // U+00E9: 2 bytes
    expect(estimateSize("中")).toBe(2 + 3); // U+4E2D: 3 bytes
    expect(estimateSize("😀")).toBe(2 + 6); // a surrogate pair: 4 bytes, counted 6
    expect(estimateSize('"\\\n\t')).toBe(2 + 8); // \" \\ \n \t: 2 bytes each
    expect(estimateSize("\u0001")).toBe(2 + 6); // \u0001
    expect(estimateSize({ 中: 1 })).toBe(5 + 8 + 2); // a key counts as text too
    // JSON text inside a string (a tool's result): as many bytes as JSON.stringify writes.
    const json = JSON.stringify({ rows: Array.from({ length: 50 }, (_, i) => ({ id: i, name: `n\t${i}` })) });
    expect(estimateSize(json)).toBe(new TextEncoder().encode(JSON.stringify(json)).length);
    // 400,000 CJK characters: 0.8 MB as UTF-16, 1.2 MB as the edge's row holds them.
    expect(() => assertStorable("中".repeat(400_000), "result", 1024 * 1024)).toThrow(
      expect.objectContaining({ code: "payload_too_large" }),
    );
  });

  it("counts a view as the whole buffer it shares, which a clone copies", () => {
    const view = new Uint8Array(3_000_000).subarray(0, 16);
    expect(structuredClone(view).buffer.byteLength).toBe(3_000_000);
    expect(estimateSize(view)).toBe(3_000_000);
    expect(estimateSize(new Uint8Array(16))).toBe(16);
  });
});
