/**
 * Stash and step-result payloads fuzzed on `MemoryStore` in Node (issue 17): any value is stored
 * and read back as `structuredClone` makes it, or refused with a typed error while what was
 * committed before it stays readable. The property is `stash-payloads.fuzz.ts`; Chromium's
 * IndexedDB runs a smaller sample of it (`stash-payloads.fuzz.browser.test.ts`).
 */

import { describe, expect, it } from "vitest";
import { MemoryStore } from "./memory-store";
import { chainOf, checkPayloads, handOver, nested, type Via } from "./stash-payloads.fuzz";

const VIAS: Via[] = ["stash", "step"];

describe("values fiber code stashes or returns from a step", () => {
  it("are stored exactly, or refused with a typed error that keeps what was committed", {
    timeout: 180_000,
  }, async () => {
    const seen = await checkPayloads(() => new MemoryStore(), 300);
    // The generators reach both outcomes for both ways of handing a value over.
    for (const key of [
      "stash stored",
      "step stored",
      "stash refused not_cloneable",
      "step refused not_cloneable",
    ])
      expect(seen.get(key) ?? 0, key).toBeGreaterThan(0);
  });

  it.each(VIAS)("nested 1,000 deep (objects and Maps) is stored whole (%s)", async (via) => {
    for (const map of [false, true]) {
      const handled = await handOver(() => new MemoryStore(), nested(1_000, "leaf", map), via);
      expect(handled).toHaveProperty("stored");
      if ("stored" in handled) expect(chainOf(handled.stored)).toEqual({ depth: 1_000, leaf: "leaf" });
    }
  });

  it.each(VIAS)("nested 10,000 deep (objects and Maps) is refused with not_cloneable (%s)", async (via) => {
    for (const map of [false, true])
      expect(await handOver(() => new MemoryStore(), nested(10_000, "leaf", map), via)).toEqual({
        refused: "not_cloneable",
      });
  });

  // Found by this fuzz: plain data is never trial-cloned, so `assertStorable` passed a step result
  // of plain objects nested 2,500 deep, which overflowed MemoryStore's copy in every commit until
  // the fiber failed with recovery_exhausted. Validation now refuses nesting past MAX_NESTING.
  it.each(VIAS)("plain objects nested 2,500 deep are refused with not_cloneable (%s)", async (via) => {
    expect(await handOver(() => new MemoryStore(), nested(2_500, "leaf", false), via)).toEqual({
      refused: "not_cloneable",
    });
  });

  // Found by this fuzz: `assertStorable` read the value's properties unguarded, so a getter that
  // throws or a revoked Proxy escaped as that raw error (and a step retried it). Now refused.
  it.each(VIAS)(
    "a value whose getter throws, or a revoked Proxy, is refused with not_cloneable (%s)",
    async (via) => {
      const revoked = Proxy.revocable({}, {});
      revoked.revoke();
      const values = [
        {
          get boom(): never {
            throw new Error("getter throws");
          },
        },
        { inner: revoked.proxy },
      ];
      for (const value of values)
        expect(await handOver(() => new MemoryStore(), value, via)).toEqual({ refused: "not_cloneable" });
    },
  );
});
