/**
 * The torture run: injects a seeded schedule of faults (browser SIGKILLs, worker stops, reloads,
 * closed tabs, offline spells) into the built demo while a mix of lab and agent fibers runs,
 * checks the readers' logs after every fault and judges every fiber when it ends. Driven by
 * `torture.spec.ts` (a short schedule in `npm test`, a long one through `npm run torture`).
 */

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type AppSession, checkStream } from "../../src/testing/index";
import {
  approvalEvent,
  approvalKey,
  deletions,
  rpc,
  type Subject,
  setMockDelay,
  startAssistant,
  startBatch,
  startEffects,
  startTicker,
  verify,
} from "../crash/demo";
import { type FaultKind, type PlannedFault, type PlannedFiber, planFaults, planFiber } from "./schedule";
import { diagnoseWipe, freshWipeLine, leveldbDirName, type WipeRecord, wipeLine } from "./wipe";
import { chromiumLogSince, type FaultStart, faultStart, levelDbLogs } from "./wipe-logs";

/** Options of {@link runTorture}. */
export interface TortureOptions {
  seed: number;
  faults: number;
  /** Fibers kept running at once (default 3). */
  live?: number;
  /** Most chunks of progress between two faults (default 12). */
  pace?: number;
  /** Told about each line of the fault log as it happens. */
  log?(line: string): void;
}

/** One line of the fault log: what was done, when, and to which fibers. */
export interface FaultRecord {
  n: number;
  kind: FaultKind;
  gapMs: number;
  /** Seconds since the run began. */
  at: number;
  /** Fibers live when it hit, with the last seq their reader had. */
  fibers: Array<{ id: string; kind: Subject["kind"]; lastSeq: number }>;
}

/** The run's outcome. */
export interface TortureReport {
  seed: number;
  pace: number;
  live: number;
  faults: number;
  fibers: number;
  lost: number;
  duplicated: number;
  reExecuted: number;
  problems: string[];
  log: FaultRecord[];
  /** Chromium's wipes of the origin's IndexedDB, each excused and survived (none in most runs). */
  wipes: WipeRecord[];
  /** Counts of faults injected by kind. */
  byKind: Record<FaultKind, number>;
}

interface Tracked {
  subject: Subject;
  plan: PlannedFiber;
  approvalSent: boolean;
  judged: boolean;
  /** Lost to a wipe of the database by Chromium: neither checked nor judged any more. */
  dropped: boolean;
}

/** Runs the schedule of `options.seed` against `app` (no tab open yet) and reports. */
export async function runTorture(app: AppSession, options: TortureOptions): Promise<TortureReport> {
  const live = options.live ?? 3;
  const started = Date.now();
  const say = options.log ?? (() => {});
  const report: TortureReport = {
    seed: options.seed,
    pace: options.pace ?? 12,
    live,
    faults: 0,
    fibers: 0,
    lost: 0,
    duplicated: 0,
    reExecuted: 0,
    problems: [],
    log: [],
    wipes: [],
    byKind: { crash: 0, "stop-worker": 0, reload: 0, "close-tab": 0, offline: 0 },
  };
  const tracked: Tracked[] = [];
  await app.openTab("/");
  await setMockDelay(app.page, 30);

  const current = () => tracked.filter((t) => !t.dropped);
  const running = () => current().filter((t) => !t.subject.log.ended);
  const chunksSoFar = () => tracked.reduce((n, t) => n + t.subject.log.events.length, 0);

  const topUp = async () => {
    while (running().length < live) {
      const plan = planFiber(options.seed, tracked.length);
      const subject =
        plan.kind === "ticker"
          ? await startTicker(app, plan.input)
          : plan.kind === "effects"
            ? await (plan.batch ? startBatch : startEffects)(app, plan.input)
            : await startAssistant(app, plan.prompt);
      tracked.push({ subject, plan, approvalSent: false, judged: false, dropped: false });
      report.fibers++;
    }
  };

  /** Answers approvals the agent asked for (as planned per fiber). */
  const answerApprovals = async () => {
    for (const t of current()) {
      if (t.approvalSent || t.plan.kind !== "assistant") continue;
      if (!t.subject.log.events.some((e) => e.type === "tool.approval")) continue;
      await rpc(app.page, "sendEvent", t.subject.id, approvalEvent(t.subject.log), {
        approved: t.plan.approve,
      });
      t.approvalSent = true;
    }
  };

  /** One reader's log so far: any gap, copy or disorder is a failure at once. */
  const checkPrefix = (t: Tracked) => {
    const r = checkStream(t.subject.log.events, { after: t.subject.log.after });
    if (r.lost.length + r.duplicated.length + r.reordered.length > 0)
      throw new TortureFailure(
        `reader of ${t.subject.kind} ${t.subject.id}: lost ${r.lost.join(",") || "-"}, duplicated ${r.duplicated.join(",") || "-"}, reordered ${r.reordered.join(",") || "-"}`,
        report,
      );
  };

  /** The readers' logs so far, and no fiber missing. */
  const checkPrefixes = () => {
    for (const t of current()) {
      // A fiber the worker no longer knows never progresses again: say so now, not after every
      // remaining fault has waited out its progress timeout.
      const missing = t.subject.log.readerErrors.find((error) => error.startsWith("fiber_not_found"));
      if (missing)
        throw new Error(`FiberNotFoundError: the reader of ${t.subject.kind} ${t.subject.id} got ${missing}`);
      checkPrefix(t);
    }
  };

  /**
   * Whether Chromium wiped the origin's IndexedDB since the fault began (at the relaunch of a
   * crash; docs/security.md). Only every fiber tracked since the last wipe gone AND a log showing
   * the database created afresh since then is one (`diagnoseWipe`): those fibers, their streams
   * checked once more, are dropped unjudged and the run goes on with new ones. Anything less is
   * left to the checks after it, which fail the run as a loss.
   */
  const excuseWipe = async (fault: PlannedFault, since: FaultStart) => {
    const database = leveldbDirName(app.origin);
    const clues = {
      since: since.at,
      database,
      logs: levelDbLogs(app, database),
      chromiumLog: chromiumLogSince(since.chromiumLogBytes),
    };
    // The worker is asked only when a log shows the database created afresh.
    if (!freshWipeLine(clues)) return;
    const fibers = current();
    const known = new Set((await rpc<Array<{ id: string }>>(app.page, "list", {})).map((r) => r.id));
    const diagnosis = diagnoseWipe({ ...clues, tracked: fibers.map((t) => t.subject.id), known });
    if (diagnosis.status === "not-wiped") {
      say(`fault ${fault.n}: the database was created afresh, yet no wipe: ${diagnosis.reason}`);
      return;
    }
    for (const t of fibers) checkPrefix(t);
    for (const t of fibers) {
      t.subject.log.stop();
      t.dropped = true;
    }
    const wipe: WipeRecord = {
      fault: fault.n,
      kind: fault.kind,
      dropped: fibers.filter((t) => !t.judged).map((t) => t.subject.id),
      judged: fibers.filter((t) => t.judged).length,
      evidence: diagnosis.evidence,
    };
    report.wipes.push(wipe);
    say(`fault ${fault.n}: ${wipeLine(wipe)}`);
    // The demo's settings lived in the wiped database too.
    await setMockDelay(app.page, 30);
  };

  const judgeFinished = async () => {
    for (const t of current()) {
      if (t.judged || !t.subject.log.ended) continue;
      t.judged = true;
      await judge(app, t, report);
    }
  };

  const inject = async (fault: PlannedFault) => {
    const record: FaultRecord = {
      n: fault.n,
      kind: fault.kind,
      gapMs: fault.gapMs,
      at: Math.round((Date.now() - started) / 100) / 10,
      fibers: running().map((t) => ({
        id: t.subject.id,
        kind: t.subject.kind,
        lastSeq: t.subject.log.lastSeq,
      })),
    };
    report.log.push(record);
    report.byKind[fault.kind]++;
    say(
      `fault ${fault.n}/${options.faults} ${fault.kind}${fault.kind === "offline" || fault.kind === "close-tab" ? ` ${fault.gapMs}ms` : ""} at ${record.at}s on ${record.fibers.map((f) => `${f.kind}@${f.lastSeq}`).join(" ")}`,
    );
    switch (fault.kind) {
      case "crash":
        await app.crashBrowser();
        await app.relaunch();
        await app.openTab("/");
        break;
      case "stop-worker":
        await app.stopServiceWorker();
        break;
      case "reload":
        await app.reload();
        break;
      case "close-tab":
        await app.closeTab();
        await sleep(fault.gapMs);
        await app.openTab("/");
        break;
      case "offline":
        await app.goOffline();
        await sleep(fault.gapMs);
        await app.goOnline();
        break;
    }
    report.faults++;
  };

  try {
    for (const fault of planFaults(options.seed, options.faults, options.pace)) {
      await topUp();
      await answerApprovals();
      // Progress, not time, decides when the next fault hits: the same seed lands faults at the
      // same points of the fibers' lives on a fast machine and a slow one.
      const target = chunksSoFar() + fault.afterChunks;
      await waitUntil(async () => {
        await topUp();
        await answerApprovals();
        return chunksSoFar() >= target || running().length === 0;
      }, 45_000);
      const since = faultStart();
      await inject(fault);
      await excuseWipe(fault, since);
      checkPrefixes();
      await judgeFinished();
    }
    const deadline = Date.now() + 180_000;
    while (running().length > 0) {
      if (Date.now() > deadline)
        throw new TortureFailure(`${running().length} fiber(s) never finished`, report);
      await answerApprovals();
      await sleep(200);
    }
    checkPrefixes();
    await judgeFinished();
  } catch (error) {
    if (error instanceof TortureFailure) throw error;
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    throw new TortureFailure(
      `${message}${await missingFiberDiagnosis(app, message, current(), report.wipes.length)}`,
      report,
    );
  }
  return report;
}

/**
 * When a fiber the torture started is missing, what else is: the fibers the worker still knows
 * (all gone means the origin's IndexedDB was discarded, as Chromium does with a backing store it
 * finds corrupted after a crash; some gone means Fiberline lost them) and the LevelDB logs.
 */
async function missingFiberDiagnosis(
  app: AppSession,
  message: string,
  tracked: Tracked[],
  wipes: number,
): Promise<string> {
  if (!message.includes("FiberNotFoundError")) return "";
  const lines: string[] = [];
  try {
    const known = new Set(
      (await rpc<Array<{ id: string }>>(app.page, "list", {})).map((record) => record.id),
    );
    const missing = tracked.filter((t) => !known.has(t.subject.id)).map((t) => t.subject.id);
    lines.push(
      `the worker knows ${known.size} fiber(s); ${missing.length} of the ${tracked.length} started${wipes > 0 ? " since the last wipe" : ""} are missing: ${missing.join(", ")}`,
    );
  } catch (error) {
    lines.push(`listing the worker's fibers failed: ${String(error)}`);
  }
  const root = join(app.userDataDir, "Default", "IndexedDB");
  try {
    for (const dir of readdirSync(root)) {
      for (const file of readdirSync(join(root, dir))) {
        if (file.startsWith("LOG"))
          lines.push(`${dir}/${file}:\n${readFileSync(join(root, dir, file), "utf8")}`);
      }
    }
  } catch (error) {
    lines.push(`reading ${root} failed: ${String(error)}`);
  }
  return `\n${lines.join("\n")}`;
}

/** Verifies one finished fiber and adds its verdict to the report. */
async function judge(app: AppSession, t: Tracked, report: TortureReport): Promise<void> {
  const verdict = await verify(app, t.subject);
  report.lost += verdict.lost;
  report.duplicated += verdict.duplicated + verdict.duplicatedEffects;
  report.reExecuted += verdict.reExecuted;
  report.problems.push(...verdict.problems);
  if (t.plan.kind === "assistant" && t.approvalSent) {
    const key = approvalKey(t.subject.log);
    const recorded = (await deletions(app.page)).filter((d) => d.key === key).length;
    if (recorded !== (t.plan.approve ? 1 : 0)) {
      report.duplicated += Math.max(0, recorded - 1);
      report.problems.push(`assistant ${t.subject.id}: ${recorded} deletion(s) recorded for ${key}`);
    }
  }
}

/** A failed torture run, carrying the report so far (seed and fault log included). */
export class TortureFailure extends Error {
  override name = "TortureFailure";
  constructor(
    message: string,
    readonly report: TortureReport,
  ) {
    super(message);
  }
}

/** The summary line: `faults: 200, fibers: 60, lost: 0, duplicated: 0, re-executed: 0, wipes: 0`. */
export function summaryLine(report: TortureReport): string {
  return `faults: ${report.faults}, fibers: ${report.fibers}, lost: ${report.lost}, duplicated: ${report.duplicated}, re-executed: ${report.reExecuted}, wipes: ${report.wipes.length}`;
}

/** The fault log as lines a person can read and a seed can replay. */
export function formatFaultLog(report: TortureReport): string {
  return [
    `seed ${report.seed}: replay with  npm run torture -- --faults ${report.log.length} --seed ${report.seed} --live ${report.live} --pace ${report.pace}`,
    ...report.log.map(
      (f) =>
        `  #${f.n} ${f.kind.padEnd(11)} +${f.at}s gap ${f.gapMs}ms  ${f.fibers.map((x) => `${x.kind}:${x.id.slice(0, 8)}@${x.lastSeq}`).join(" ")}`,
    ),
    ...report.wipes.map((w) => `  wipe after #${w.fault}: ${wipeLine(w)}`),
  ].join("\n");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(test: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) return;
    await sleep(100);
  }
}
