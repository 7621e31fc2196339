/**
 * The continuity torture run as a Playwright test (`npm run torture -- --continuity`, through
 * `run.mjs` and `continuity.playwright.config.ts`): the continuity page replicating tickers and
 * agents to the edge under `wrangler dev`, with a seeded schedule of browser, edge and link faults.
 * The seed is printed first; on failure the fault log is printed with the command that replays it.
 */

import { writeFileSync } from "node:fs";
import { expect, test } from "@playwright/test";
import {
  type ContinuityReport,
  ContinuityTortureFailure,
  continuityKindsLine,
  continuitySummaryLine,
  formatContinuityLog,
  runContinuityTorture,
} from "./continuity-engine";

const faults = Number(process.env.TORTURE_FAULTS ?? 6);
const seed = process.env.TORTURE_SEED
  ? Number(process.env.TORTURE_SEED)
  : Math.floor(Math.random() * 2 ** 31);
const live = Number(process.env.TORTURE_LIVE ?? 3);
const pace = Number(process.env.TORTURE_PACE ?? 8);
const leaseMs = Number(process.env.TORTURE_LEASE_MS ?? 5_000);
const port = Number(process.env.FIBERLINE_TORTURE_PORT ?? 5640);

function save(report: ContinuityReport, failure?: string): void {
  const file = process.env.TORTURE_REPORT;
  if (file) writeFileSync(file, JSON.stringify({ ...report, failure }, null, 2));
}

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
