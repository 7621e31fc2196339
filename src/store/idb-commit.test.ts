/**
 * `FiberKeys`, IdbStore's memory of where each fiber's rows go: per-generation segment numbers,
 * and a bound on how many fibers it remembers.
 */

import { describe, expect, it } from "vitest";
import { FiberKeys } from "./idb-commit";

const step = (fiberId: string, generation: number) => ({
  fiberId,
  generation,
  journal: [
    {
      fiberId,
      pos: 0,
      kind: "step" as const,
      key: "s#1",
      status: "started" as const,
      attempt: 1,
      startedAt: 0,
    },
  ],
});

describe("FiberKeys", () => {
  it("knows the next segment for the generation it learned, and asks again for another one", () => {
    const keys = new FiberKeys();
    keys.rememberWriter("f", 7, 2, 5);
    expect(keys.ready(step("f", 2))).toBe(true);
    expect(keys.nextSegment(step("f", 2))).toBe(5);
    expect(keys.ready(step("f", 3))).toBe(false);
    expect(keys.nextSegment(step("f", 3))).toBeUndefined();
    // A patch-only group needs no keys at all; chunks need the handle only.
    expect(keys.ready({ fiberId: "g", generation: 0, fiber: { updatedAt: 1 } })).toBe(true);
    const chunks = [{ fiberId: "g", seq: 1, type: "t", data: null, at: 0 }];
    expect(keys.ready({ fiberId: "g", generation: 0, chunks })).toBe(false);
    keys.remember("g", 9);
    expect(keys.ready({ fiberId: "g", generation: 0, chunks })).toBe(true);
  });

  it("keeps only the fibers used last, so suspended fibers do not pile up", () => {
    const keys = new FiberKeys(3);
    for (const [i, id] of ["a", "b", "c"].entries()) keys.rememberWriter(id, i + 1, 1, 1);
    keys.nextSegment(step("a", 1)); // "a" is now the most recent
    keys.remember("d", 4);
    expect(keys.size).toBe(3);
    expect(keys.handle("b")).toBeUndefined();
    expect([keys.handle("a"), keys.handle("c"), keys.handle("d")]).toEqual([1, 3, 4]);
    expect(keys.ready(step("b", 1))).toBe(false);
  });
});
