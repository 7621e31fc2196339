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

  // Known defect, found by this fuzz: plain data is never trial-cloned by `assertStorable`
  // (src/core/validate.ts, not this change's to edit), so a step result of plain objects nested
  // 2,500 deep passes it, overflows the stack of MemoryStore's copy in every commit (store_error),
  // and the fiber is recovered until it fails with recovery_exhausted instead of the step being
  // refused. `it.fails`: this starts failing once validation refuses it (or the copy takes it).
  it.fails("a step result of plain objects nested 2,500 deep is stored or refused, not crash-looped", async () => {
    await handOver(() => new MemoryStore(), nested(2_500, "leaf", false), "step");
  });

  // Known defect, found by this fuzz: `assertStorable` reads the value's properties unguarded, so
  // a getter that throws or a revoked Proxy escapes as that raw error: ctx.stash rejects with a
  // plain Error / TypeError (no code), and a step retries the permanent failure 3 times, then fails
  // with step_failed. It should be refused at once with not_cloneable. `it.fails`: this starts
  // failing once that is fixed.
  it.fails.each(VIAS)(
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
