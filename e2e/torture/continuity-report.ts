/**
 * The continuity torture run's report: the fault log, the counts the summary line prints, and the
 * lines `continuity.spec.ts` and `run.mjs` print from it (the summary, the faults by kind, the
 * replay command). Written by `continuity-engine.ts`.
 */

import { CONTINUITY_FAULT_KINDS, type ContinuityFaultKind } from "./continuity-schedule";

/** One line of the fault log. */
export interface ContinuityFaultRecord {
  n: number;
  kind: ContinuityFaultKind;
  gapMs: number;
  /** Seconds since the run began. */
  at: number;
  /** How long the fault took, restarts included (ms). */
  tookMs: number;
  /** Fibers live when it hit: the chunks the edge held of each, and its home there. */
  fibers: Array<{ id: string; seq: number; home: string }>;
}

/** The run's outcome. */
export interface ContinuityReport {
  seed: number;
  live: number;
  pace: number;
  leaseMs: number;
  faults: number;
  fibers: number;
  /** Fibers that ended at the edge (taken over at least once). */
  endedAtEdge: number;
  /** Fibers taken over by the edge that came home and ended in the browser (`homer`). */
  cameHome: number;
  lost: number;
  duplicated: number;
  reExecuted: number;
  problems: string[];
  log: ContinuityFaultRecord[];
  byKind: Record<ContinuityFaultKind, number>;
  /** The kinds the schedule was narrowed to (`--only`), if it was. */
  kinds?: readonly ContinuityFaultKind[];
}

/** An empty report of the run of `seed`. */
export function emptyReport(options: {
  seed: number;
  live: number;
  pace: number;
  leaseMs: number;
  kinds?: readonly ContinuityFaultKind[];
}): ContinuityReport {
  return {
    ...options,
    faults: 0,
    fibers: 0,
    endedAtEdge: 0,
    cameHome: 0,
    lost: 0,
    duplicated: 0,
    reExecuted: 0,
    problems: [],
    log: [],
    byKind: Object.fromEntries(CONTINUITY_FAULT_KINDS.map((k) => [k, 0])) as Record<
      ContinuityFaultKind,
      number
    >,
  };
}

/** A failed run, carrying the report so far (seed and fault log included). */
export class ContinuityTortureFailure extends Error {
  override name = "ContinuityTortureFailure";
  constructor(
    message: string,
    readonly report: ContinuityReport,
  ) {
    super(message);
  }
}

/** The summary line: `faults: 40, fibers: 12, lost: 0, duplicated: 0, re-executed: 0`. */
export function continuitySummaryLine(report: ContinuityReport): string {
  return `faults: ${report.faults}, fibers: ${report.fibers}, lost: ${report.lost}, duplicated: ${report.duplicated}, re-executed: ${report.reExecuted}`;
}

/** The fault counts by kind, the seed, and how many fibers ended at the edge or came home. */
export function continuityKindsLine(report: ContinuityReport): string {
  const kinds = Object.entries(report.byKind)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${kind} ${n}`)
    .join(", ");
  return `seed ${report.seed}; ${kinds}; ${report.endedAtEdge} of ${report.fibers} fibers ended at the edge, ${report.cameHome} came home`;
}

/** The command that replays `report`'s schedule. */
export function continuityReplay(report: ContinuityReport): string {
  const only = report.kinds ? ` --only ${report.kinds.join(",")}` : "";
  return `npm run torture -- --continuity --faults ${report.log.length} --seed ${report.seed} --live ${report.live} --pace ${report.pace}${only}`;
}

/** The fault log as lines a person can read. */
export function formatContinuityLog(report: ContinuityReport): string {
  return [
    `seed ${report.seed}: replay with  ${continuityReplay(report)}`,
    ...report.log.map(
      (f) =>
        `  #${f.n} ${f.kind.padEnd(18)} +${f.at}s gap ${f.gapMs}ms took ${f.tookMs}ms  ${f.fibers.map((x) => `${x.id}@${x.seq}(${x.home})`).join(" ")}`,
    ),
  ].join("\n");
}
