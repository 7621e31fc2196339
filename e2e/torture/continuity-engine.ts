/**
 * The continuity torture run: the page of `e2e/continuity` (its Service Worker replicating tickers
 * and agents to the edge under `wrangler dev`, through a link this run can cut) under a seeded
 * schedule of the browser's faults (SIGKILL, worker stop, closed tab, short offline spells) and
 * the ones continuity adds (edge SIGKILL and restart on the same state, the link between the
 * homes cut for less or more than the lease, the browser offline past the lease). The open page
 * follows every running fiber live, and what it showed is checked before each fault; each fiber is
 * judged once the run's fibers ended (`continuity-judge.ts`), on the stream a page reads after a
 * final reload. Driven by `continuity.spec.ts` (`npm run torture -- --continuity`).
 */

import type { Page } from "@playwright/test";
import type { FiberEvent } from "../../src/core/records";
import { AppSession, checkStream } from "../../src/testing/index";
import { type LedgerServer, type Started, startLedger } from "../continuity/servers";
import { pageCx } from "../continuity/support";
import { RestartableEdge, servePage, startTappedLink, type TappedLink } from "./continuity-homes";
import { judgeFiber } from "./continuity-judge";
import {
  type ContinuityFaultRecord,
  type ContinuityReport,
  ContinuityTortureFailure,
  emptyReport,
} from "./continuity-report";
import {
  type ContinuityFault,
  type ContinuityFaultKind,
  type ContinuityFiber,
  planContinuityFaults,
  planContinuityFiber,
} from "./continuity-schedule";

/** Options of {@link runContinuityTorture}. */
export interface ContinuityTortureOptions {
  seed: number;
  faults: number;
  /** Fibers kept running at once (default 3). */
  live?: number;
  /** Most chunks of progress between two faults (default 8). */
  pace?: number;
  /** The arbiter's lease (default 5000 ms: generous, so a loaded machine does not fake a lapse). */
  leaseMs?: number;
  /** The first of five ports: page, edge, its inspector, ledger, link (default 5640). */
  port?: number;
  /** Only these kinds of fault (default: all), to reduce a failing schedule. */
  kinds?: readonly ContinuityFaultKind[];
  /** Told about each line of the fault log as it happens. */
  log?(line: string): void;
}

interface Tracked {
  id: string;
  plan: ContinuityFiber;
  /** Chunks the edge held at the last poll. */
  seq: number;
  home: string;
  ended: boolean;
  /** The page whose `cx.read` follows the fiber live (undefined once it closed or failed). */
  reader: Page | undefined;
}

/** Runs the schedule of `options.seed` against homes it starts and ends itself, and reports. */
export async function runContinuityTorture(options: ContinuityTortureOptions): Promise<ContinuityReport> {
  const live = options.live ?? 3;
  const leaseMs = options.leaseMs ?? 5_000;
  const port = options.port ?? 5640;
  const say = options.log ?? (() => {});
  const report = emptyReport({
    seed: options.seed,
    live,
    pace: options.pace ?? 8,
    leaseMs,
    ...(options.kinds ? { kinds: options.kinds } : {}),
  });
  let ledger: LedgerServer | undefined;
  let edge: RestartableEdge | undefined;
  let link: TappedLink | undefined;
  let site: Started | undefined;
  let app: AppSession | undefined;
  const started = Date.now();
  try {
    ledger = await startLedger(port + 3);
    edge = new RestartableEdge(port + 1, leaseMs, ledger.url);
    [, site] = await Promise.all([edge.start(), servePage(port)]);
    link = await startTappedLink(port + 4, edge.url);
    const path = `/index.html?${new URLSearchParams({ edge: `${link.url}/__fiberline`, ledger: ledger.url, lease: String(leaseMs) })}`;
    app = await AppSession.launch({
      origin: site.url,
      async ready(page) {
        await page.waitForFunction(() => "cx" in window, undefined, { timeout: 30_000 });
        await pageCx.ready(page);
      },
    });
    await app.openTab(path);
    const session = app;
    const theEdge = edge;
    const theLink = link;
    const tracked: Tracked[] = [];
    const faultTimes: number[] = [];
    const running = () => tracked.filter((t) => !t.ended);

    /** Reads the edge's replicas of the running fibers (directly, not through the link). */
    const poll = async () => {
      if (!theEdge.running) return;
      for (const t of running()) {
        const replica = await theEdge.replica(t.id).catch(() => undefined);
        if (!replica) continue;
        t.seq = replica.chunks.length;
        // `browser:<deviceId>` has one device here: "browser" says it.
        t.home = replica.home?.split(":")[0] ?? "?";
        t.ended = replica.chunks.at(-1)?.type === "fiber.end";
      }
    };
    const progress = () => tracked.reduce((n, t) => n + t.seq, 0);

    /**
     * Every running fiber is followed live by the open page, as a user's page would follow it
     * (which also wakes a stopped worker): a reader whose page closed, or that failed, starts
     * again from seq 1 in the current page.
     */
    const follow = async () => {
      const page = session.page;
      for (const t of running()) {
        const state = t.reader && !t.reader.isClosed() ? await pageCx.state(t.reader, t.id) : "gone";
        if (t.reader === page && state === "reading") continue;
        if (state.startsWith("error")) say(`  reader of ${t.id} ended with ${state}; reading again`);
        await pageCx.read(page, t.id);
        t.reader = page;
      }
    };

    /**
     * What the live readers have shown so far: contiguous from seq 1 (invariant 4) and, read
     * before the replica, every chunk already held by the edge, equal to its chunk there (Rule B:
     * a page sees shipped chunks only).
     */
    const checkShown = async (fibers = running()) => {
      if (!theEdge.running) return;
      for (const t of fibers) {
        if (!t.reader || t.reader.isClosed()) continue;
        const shown = await pageCx.chunks(t.reader, t.id);
        const replica = await theEdge.replica(t.id).catch(() => undefined);
        const stream = checkStream(shown as FiberEvent[]);
        const problems: string[] = [];
        if (stream.lost.length + stream.duplicated.length + stream.reordered.length > 0) {
          report.lost += stream.lost.length;
          report.duplicated += stream.duplicated.length + stream.reordered.length;
          problems.push(
            `live reader: lost ${stream.lost.join(",") || "-"}, duplicated ${stream.duplicated.join(",") || "-"}, reordered ${stream.reordered.join(",") || "-"}`,
          );
        }
        if (replica) {
          const held = new Map(replica.chunks.map((c) => [c.seq, c]));
          for (const c of shown) {
            const h = held.get(c.seq);
            if (h && h.type === c.type && JSON.stringify(h.data) === JSON.stringify(c.data)) continue;
            report.duplicated++;
            problems.push(
              `the live reader showed seq ${c.seq} ${c.type} ${JSON.stringify(c.data)}; the edge holds ${h ? `${h.type} ${JSON.stringify(h.data)}` : "nothing"} there`,
            );
          }
        }
        for (const p of problems) {
          report.problems.push(`${t.plan.kind} ${t.id}: ${p}`);
          say(`  VIOLATION ${t.id}: ${p}`);
        }
        if (problems.length > 0) {
          const since = started;
          say(
            `  what the link carried for ${t.id}:\n${theLink
              .traffic(t.id)
              .map((r) => `    +${((r.at - since) / 1000).toFixed(1)}s ${r.what}`)
              .join("\n")}`,
          );
          say(`  the edge holds: ${replica?.chunks.map((c) => `${c.seq}:${c.type}`).join(" ")}`);
        }
      }
    };

    const topUp = async () => {
      while (running().length < live) {
        const index = tracked.length;
        const plan = planContinuityFiber(options.seed, index);
        const name = plan.kind === "ticker" ? plan.name : "agent";
        const id = `${name}-${index + 1}`;
        const input =
          plan.kind === "ticker"
            ? plan.input
            : { messages: [{ role: "user", content: `turns=${plan.turns} turnMs=${plan.turnMs}` }] };
        // A worker stopped by the last fault may restart under the call: its answer is lost, and
        // the client says to call again with the same id, which joins instead of starting twice.
        for (let attempt = 1; ; attempt++) {
          try {
            await withDeadline(pageCx.start(session.page, name, input, id), 30_000, `starting ${id}`);
            break;
          } catch (error) {
            if (attempt >= 3 || !String(error).includes("ConnectionError")) throw error;
            await sleep(500);
          }
        }
        tracked.push({ id, plan, seq: 0, home: "?", ended: false, reader: undefined });
        report.fibers++;
      }
    };

    const inject = async (fault: ContinuityFault) => {
      await poll();
      const at = Date.now();
      const record: ContinuityFaultRecord = {
        n: fault.n,
        kind: fault.kind,
        gapMs: fault.gapMs,
        at: Math.round((at - started) / 100) / 10,
        tookMs: 0,
        fibers: running().map((t) => ({ id: t.id, seq: t.seq, home: t.home })),
      };
      report.log.push(record);
      report.byKind[fault.kind]++;
      faultTimes.push(at);
      say(
        `fault ${fault.n}/${options.faults} ${fault.kind} ${fault.gapMs}ms at ${record.at}s on ${record.fibers.map((f) => `${f.id}@${f.seq}(${f.home})`).join(" ")}`,
      );
      switch (fault.kind) {
        case "crash":
          await session.crashBrowser();
          await sleep(fault.gapMs);
          await session.relaunch();
          await session.openTab(path);
          break;
        case "stop-worker":
          await session.stopServiceWorker();
          break;
        case "close-tab":
          await session.closeTab();
          await sleep(fault.gapMs);
          await session.openTab(path);
          break;
        case "offline":
        case "offline-past-lease":
          await session.goOffline();
          await sleep(fault.gapMs);
          await session.goOnline();
          break;
        case "edge-kill":
          await theEdge.kill();
          await sleep(fault.gapMs);
          await theEdge.start();
          break;
        case "cut":
        case "cut-past-lease":
          theLink.cut();
          await sleep(fault.gapMs);
          theLink.heal();
          break;
      }
      record.tookMs = Date.now() - at;
      report.faults++;
    };

    for (const fault of planContinuityFaults(options.seed, options.faults, {
      leaseMs,
      pace: options.pace,
      ...(options.kinds ? { kinds: options.kinds } : {}),
    })) {
      await topUp();
      await follow();
      // Progress at the edge, not time, decides when the next fault hits.
      const target = progress() + fault.afterChunks;
      const deadline = Date.now() + 45_000;
      while (Date.now() < deadline) {
        await poll();
        await topUp();
        await follow();
        if (progress() >= target) break;
        await sleep(250);
      }
      await checkShown();
      await inject(fault);
      await follow();
    }
    const deadline = Date.now() + 240_000;
    for (;;) {
      await poll();
      if (running().length === 0) break;
      if (Date.now() > deadline)
        throw new ContinuityTortureFailure(
          `${running().length} fiber(s) never ended: ${running()
            .map((t) => `${t.id}@${t.seq}(${t.home})`)
            .join(" ")}`,
          report,
        );
      await sleep(500);
    }

    await checkShown(tracked);
    // The final reload: the page reads every fiber from seq 1, wherever it ran.
    await session.reload(session.page);
    const page = session.page;
    for (const t of tracked) await pageCx.read(page, t.id);
    const readDeadline = Date.now() + 90_000;
    while (Date.now() < readDeadline) {
      const states = await Promise.all(tracked.map((t) => pageCx.state(page, t.id)));
      if (states.every((s) => s !== "reading")) break;
      await sleep(250);
    }
    for (const t of tracked) {
      const state = await pageCx.state(page, t.id);
      if (state !== "done") report.problems.push(`${t.plan.kind} ${t.id}: the page's reader says ${state}`);
      const replica = await theEdge.replica(t.id);
      if (replica?.home === "edge") report.endedAtEdge++;
      else if ((replica?.epoch ?? 1) > 1) report.cameHome++;
      const verdict = judgeFiber({
        id: t.id,
        plan: t.plan,
        shown: await pageCx.chunks(page, t.id),
        replica,
        effects: ledger.effects.filter((e) => e.key.startsWith(`${t.id}:`) || e.key.startsWith(`${t.id}~`)),
        faultTimes,
        leaseMs,
      });
      report.lost += verdict.lost;
      report.duplicated += verdict.duplicated;
      report.reExecuted += verdict.reExecuted;
      report.problems.push(...verdict.problems);
    }
    return report;
  } catch (error) {
    if (error instanceof ContinuityTortureFailure) throw error;
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    const tail = edge?.output().slice(-1_500);
    throw new ContinuityTortureFailure(`${message}${tail ? `\nwrangler said:\n${tail}` : ""}`, report);
  } finally {
    await app?.close().catch(() => {});
    await Promise.all([link?.close(), edge?.kill(), site?.kill(), ledger?.close()]);
  }
}

async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
