/**
 * The continuity torture run as a Playwright test (`npm run torture -- --continuity`, through
 * `run.mjs` and `continuity.playwright.config.ts`): the continuity page replicating tickers and
 * agents to the edge under `wrangler dev`, with a seeded schedule of browser, edge and link faults.
 * `npm test` runs a short schedule (5 faults, a fresh seed; project "crash"). The seed is printed
 * first; on failure the fault log is printed with the command that replays it.
 */

import { writeFileSync } from "node:fs";
import { expect, test } from "@playwright/test";
import type { LedgerEntry } from "../continuity/servers";
import { runContinuityTorture } from "./continuity-engine";
import { type Chunk, judgeFiber } from "./continuity-judge";
import {
  type ContinuityReport,
  ContinuityTortureFailure,
  continuityKindsLine,
  continuitySummaryLine,
  formatContinuityLog,
} from "./continuity-report";
import type { ContinuityFaultKind } from "./continuity-schedule";

const faults = Number(process.env.TORTURE_FAULTS ?? 5);
const seed = process.env.TORTURE_SEED
  ? Number(process.env.TORTURE_SEED)
  : Math.floor(Math.random() * 2 ** 31);
const live = Number(process.env.TORTURE_LIVE ?? 3);
const pace = Number(process.env.TORTURE_PACE ?? 8);
const leaseMs = Number(process.env.TORTURE_LEASE_MS ?? 5_000);
const port = Number(process.env.FIBERLINE_TORTURE_PORT ?? 5640);
const kinds = process.env.TORTURE_KINDS
  ? (process.env.TORTURE_KINDS.split(",") as ContinuityFaultKind[])
  : undefined;

function save(report: ContinuityReport, failure?: string): void {
  const file = process.env.TORTURE_REPORT;
  if (file) writeFileSync(file, JSON.stringify({ ...report, failure }, null, 2));
}

test("the judge counts what a broken home would do: a lost tick, a seq shown twice, a step re-run uninterrupted", () => {
  const end: Chunk = { seq: 4, type: "fiber.end", data: { status: "completed" } };
  const tick = (seq: number, i: number): Chunk => ({ seq, type: "tick", data: { i } });
  const effect = (i: number, where: string, interrupted: boolean, at: number): LedgerEntry => ({
    fiber: "t",
    kind: "tick",
    key: `t:tick#${i}`,
    where,
    interrupted,
    at,
  });
  const good = [tick(1, 1), tick(2, 2), tick(3, 3), end];
  const effects = [
    effect(1, "browser", false, 1),
    effect(2, "browser", false, 2),
    effect(3, "browser", false, 3),
  ];
  const fiber = {
    id: "t",
    plan: { kind: "ticker" as const, name: "ticker" as const, input: { ticks: 3, intervalMs: 1 } },
    shown: good,
    replica: { status: "completed", home: "edge", chunks: good },
    effects,
    faultTimes: [],
    leaseMs: 5_000,
  };
  expect(judgeFiber(fiber)).toMatchObject({ lost: 0, duplicated: 0, reExecuted: 0, problems: [] });
  // The edge re-ran tick 3 after a takeover (a fault at 3.5): fine interrupted, re-execution
  // otherwise; and interrupted too when no fault came between (a home that lost a completed
  // entry says interrupted as a crash would).
  const rerun = (interrupted: boolean, faultTimes = [3.5]) =>
    judgeFiber({ ...fiber, faultTimes, effects: [...effects, effect(3, "edge", interrupted, 4)] });
  expect(rerun(true)).toMatchObject({ reExecuted: 0, problems: [] });
  expect(rerun(false)).toMatchObject({ reExecuted: 1 });
  expect(rerun(true, [])).toMatchObject({ reExecuted: 1 });
  // The page missed tick 2 (and the replica's seq 2), or showed seq 2 twice.
  expect(judgeFiber({ ...fiber, shown: [tick(1, 1), tick(3, 3), end] }).lost).toBeGreaterThan(0);
  expect(
    judgeFiber({ ...fiber, shown: [tick(1, 1), tick(2, 2), tick(2, 2), tick(3, 3), end] }).duplicated,
  ).toBeGreaterThan(0);
  // The page shows a chunk at seq 3 the replica does not hold.
  expect(
    judgeFiber({ ...fiber, shown: [tick(1, 1), tick(2, 2), tick(3, 2), end] }).duplicated,
  ).toBeGreaterThan(0);
  // A stream that never ended.
  expect(judgeFiber({ ...fiber, shown: good.slice(0, 3) }).lost).toBeGreaterThan(0);
});

test("continuity torture: browser, edge and link faults lose, duplicate and re-run nothing across the two homes", async () => {
  test.setTimeout(300_000 + faults * 40_000);
  console.log(
    `continuity torture: seed ${seed}, ${faults} faults, ${live} live fibers, pace ${pace}, lease ${leaseMs} ms, ports ${port}-${port + 4}`,
  );
  let report: ContinuityReport;
  try {
    report = await runContinuityTorture({
      seed,
      faults,
      live,
      pace,
      leaseMs,
      port,
      ...(kinds ? { kinds } : {}),
      log: (line) => console.log(line),
    });
  } catch (error) {
    if (error instanceof ContinuityTortureFailure) {
      console.log(`continuity torture FAILED: ${error.message}\n${formatContinuityLog(error.report)}`);
      save(error.report, error.message);
    }
    throw error;
  }
  save(report);
  if (report.problems.length > 0)
    console.log(`${report.problems.join("\n")}\n${formatContinuityLog(report)}`);
  console.log(continuityKindsLine(report));
  console.log(continuitySummaryLine(report));
  expect(report.problems).toEqual([]);
  expect(report).toMatchObject({ faults, lost: 0, duplicated: 0, reExecuted: 0 });
});
