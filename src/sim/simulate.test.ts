/**
 * The deterministic simulation tester as part of the unit suite: a fixed sample of seeds, a
 * time-seeded batch that prints its first seed, a replay of one seed that must produce the same
 * trace twice, and planted bugs the checker must report (so it cannot silently pass). A smaller
 * fixed sample, a replay and a planted bug run on `IdbStore` over fake-indexeddb (`store: "idb"`),
 * where transactions of several runtimes interleave.
 */

import { describe, expect, it } from "vitest";
import { runSchedule, type ScheduleResult } from "./simulate";

const FIXED_SEEDS = 300;
const RANDOM_SEEDS = 100;
const IDB_SEEDS = 40;

async function runBatch(
  from: number,
  count: number,
  store: "memory" | "idb" = "memory",
): Promise<ScheduleResult[]> {
  const results: ScheduleResult[] = [];
  for (let seed = from; seed < from + count; seed++) results.push(await runSchedule(seed, { store }));
  return results;
}

function summary(results: readonly ScheduleResult[]): string[] {
  return results.flatMap((r) =>
    r.violations.map((v) => `seed ${v.seed} ${v.invariant}${v.fiberId ? ` ${v.fiberId}` : ""}: ${v.detail}`),
  );
}

describe("deterministic simulation", () => {
  it(`holds every invariant on seeds 1..${FIXED_SEEDS}`, async () => {
    const results = await runBatch(1, FIXED_SEEDS);
    const failures = summary(results);
    // Replay any of these with: npm run simulate -- --from SEED --seeds 1 --verbose
    expect(failures, failures.slice(0, 20).join("\n")).toEqual([]);
  }, 120_000);

  it("holds every invariant on a time-seeded batch", async () => {
    const from = Date.now() % 1_000_000_000;
    console.log(`simulation: time-seeded batch, seeds ${from}..${from + RANDOM_SEEDS - 1}`);
    const failures = summary(await runBatch(from, RANDOM_SEEDS));
    expect(failures, failures.slice(0, 20).join("\n")).toEqual([]);
  }, 120_000);

  it(`holds every invariant on IdbStore (fake-indexeddb), seeds 1..${IDB_SEEDS}`, async () => {
    const failures = summary(await runBatch(1, IDB_SEEDS, "idb"));
    // Replay any of these with: npm run simulate -- --from SEED --seeds 1 --verbose --store idb
    expect(failures, failures.slice(0, 20).join("\n")).toEqual([]);
  }, 120_000);

  it.each([
    ["memory", [3, 29, 157]],
    ["idb", [3, 9]],
  ] as const)("replays a seed exactly on the %s store: same trace, same violations", async (store, seeds) => {
    for (const seed of seeds) {
      const first = await runSchedule(seed, { store });
      const second = await runSchedule(seed, { store });
      expect(second.digest).toBe(first.digest);
      expect(second.trace).toEqual(first.trace);
      expect(second.violations.map((v) => [v.invariant, v.detail, v.at])).toEqual(
        first.violations.map((v) => [v.invariant, v.detail, v.at]),
      );
      expect(second.steps).toBe(first.steps);
    }
  });

  it.each([
    ["memory", 40],
    ["idb", 20],
  ] as const)("catches a store that acknowledges a write it never applied (%s)", async (store, seeds) => {
    let planted = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const result = await runSchedule(seed, { plant: "lost-write", store });
      if (!result.planted) continue;
      planted++;
      expect(
        result.violations.map((v) => v.invariant),
        `seed ${seed}`,
      ).toContain("step-write-ahead");
    }
    expect(planted).toBeGreaterThan(seeds / 4);
  });

  it("catches a step whose side effect happens twice in one attempt", async () => {
    let planted = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const result = await runSchedule(seed, { plant: "duplicate-effect" });
      if (!result.planted) continue;
      planted++;
      expect(
        result.violations.map((v) => v.invariant),
        `seed ${seed}`,
      ).toContain("effect-twice");
    }
    expect(planted).toBeGreaterThan(10);
  });
});
