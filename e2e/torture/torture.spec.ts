/**
 * The torture run as a Playwright test: a seeded random schedule of faults over a mix of lab and
 * agent fibers on the built demo. `npm test` runs a short schedule (`TORTURE_FAULTS`, default 16)
 * with a fresh seed each time; `npm run torture -- --faults 200 [--seed N]` runs a long one. The
 * seed is printed first; on failure the fault log is printed with the command that replays it.
 */

import { writeFileSync } from "node:fs";
import { expect, test } from "../../src/testing/index";
import { formatFaultLog, runTorture, summaryLine, TortureFailure, type TortureReport } from "./engine";

const faults = Number(process.env.TORTURE_FAULTS ?? 16);
const seed = process.env.TORTURE_SEED
  ? Number(process.env.TORTURE_SEED)
  : Math.floor(Math.random() * 2 ** 31);
const live = Number(process.env.TORTURE_LIVE ?? 3);
const pace = Number(process.env.TORTURE_PACE ?? 12);

function save(report: TortureReport, failure?: string): void {
  const file = process.env.TORTURE_REPORT;
  if (file) writeFileSync(file, JSON.stringify({ ...report, failure }, null, 2));
}

test("torture: a seeded schedule of crashes, worker stops, reloads, closed tabs and offline spells loses, duplicates and re-runs nothing", async ({
  app,
}) => {
  test.setTimeout(120_000 + faults * 30_000);
  console.log(`torture: seed ${seed}, ${faults} faults, ${live} live fibers, pace ${pace}`);
  let report: TortureReport;
  try {
    report = await runTorture(app, { seed, faults, live, pace, log: (line) => console.log(line) });
  } catch (error) {
    if (error instanceof TortureFailure) {
      console.log(`torture FAILED: ${error.message}\n${formatFaultLog(error.report)}`);
      save(error.report, error.message);
    }
    throw error;
  }
  save(report);
  if (report.problems.length > 0) console.log(`${report.problems.join("\n")}\n${formatFaultLog(report)}`);
  console.log(summaryLine(report));
  expect(report.problems).toEqual([]);
  expect(report).toMatchObject({ faults, lost: 0, duplicated: 0, reExecuted: 0 });
});
