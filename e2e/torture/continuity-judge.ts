/**
 * The verdict on one fiber of the continuity torture run, once it ended: the stream a page read
 * from seq 1 after the run's last reload, the edge's replica of it, and the side effects the
 * ledger recorded for it. Pure; `continuity-engine.ts` adds the verdicts up into the summary line.
 */

import type { FiberEvent } from "../../src/core/records";
import { checkStream } from "../../src/testing/index";
import type { LedgerEntry } from "../continuity/servers";
import type { Replica } from "../continuity/support";
import type { ContinuityFiber } from "./continuity-schedule";

/** A chunk as a page or the replica shows it. */
export interface Chunk {
  seq: number;
  type: string;
  data: unknown;
}

/** What one fiber contributes to the summary line, and why. */
export interface Verdict {
  lost: number;
  duplicated: number;
  reExecuted: number;
  problems: string[];
}

/** What the judge is told about a fiber. */
export interface JudgedFiber {
  id: string;
  plan: ContinuityFiber;
  /** The page's stream of it, read from seq 1 to `fiber.end` after the last reload. */
  shown: readonly Chunk[];
  /** The edge's replica, when the edge has one. */
  replica: Pick<Replica, "status" | "home" | "chunks"> | undefined;
  /** The ledger's entries whose key is this fiber's (`<id>:` or `<id>~<epoch>:`). */
  effects: readonly LedgerEntry[];
  /** When each fault of the run began (ms since the epoch), for effects that cannot say `interrupted`. */
  faultTimes: readonly number[];
  leaseMs: number;
}

/**
 * Judges one ended fiber.
 *
 * - lost: a seq missing from the page's stream, a stream that never reached `fiber.end` or ended
 *   other than `completed`, a chunk of the replica the page does not show, a tick or tool result
 *   missing, an effect never recorded.
 * - duplicated: a seq shown twice, a chunk the page shows that differs from the replica's at that
 *   seq, a tick index or tool result shown twice.
 * - re-executed: a step's effect recorded again other than as an interrupted re-run with the same
 *   key. Ticks report `interrupted` themselves; the agent's tool (`record` in fibers.ts) reports
 *   `interrupted: false` always, so a second run of a tool key counts as the re-run of a cut step
 *   only when a fault began between a lease before its first run and its last one.
 */
export function judgeFiber(fiber: JudgedFiber): Verdict {
  const verdict: Verdict = { lost: 0, duplicated: 0, reExecuted: 0, problems: [] };
  const say = (what: string) => verdict.problems.push(`${fiber.plan.kind} ${fiber.id}: ${what}`);

  const stream = checkStream(fiber.shown as FiberEvent[]);
  if (stream.lost.length + stream.duplicated.length + stream.reordered.length > 0)
    say(
      `page stream: lost ${stream.lost.join(",") || "-"}, duplicated ${stream.duplicated.join(",") || "-"}, reordered ${stream.reordered.join(",") || "-"}`,
    );
  verdict.lost += stream.lost.length;
  verdict.duplicated += stream.duplicated.length + stream.reordered.length;
  if (!stream.ended) {
    verdict.lost++;
    say(`page stream ends at seq ${stream.lastSeq} without fiber.end`);
  } else if (stream.status !== "completed") {
    verdict.lost++;
    say(`fiber.end says ${stream.status}`);
  }

  if (fiber.replica) {
    const shownAt = new Map(fiber.shown.map((c) => [c.seq, c]));
    for (const held of fiber.replica.chunks) {
      const shown = shownAt.get(held.seq);
      if (!shown) {
        verdict.lost++;
        say(`the replica's seq ${held.seq} (${held.type}) is not in the page's stream`);
      } else if (shown.type !== held.type || JSON.stringify(shown.data) !== JSON.stringify(held.data)) {
        verdict.duplicated++;
        say(
          `seq ${held.seq}: the page shows ${shown.type} ${JSON.stringify(shown.data)}, the replica ${held.type} ${JSON.stringify(held.data)}`,
        );
      }
    }
    const extra = fiber.shown.filter((c) => !fiber.replica?.chunks.some((h) => h.seq === c.seq));
    if (extra.length > 0) {
      verdict.duplicated += extra.length;
      say(`the page shows seqs the replica does not hold: ${extra.map((c) => c.seq).join(",")}`);
    }
  }

  if (fiber.plan.kind === "ticker") judgeTicker(fiber, fiber.plan.input.ticks, verdict, say);
  else judgeAgent(fiber, fiber.plan.turns, verdict, say);
  return verdict;
}

function judgeTicker(fiber: JudgedFiber, ticks: number, verdict: Verdict, say: (what: string) => void): void {
  const shown = fiber.shown.filter((c) => c.type === "tick").map((c) => (c.data as { i: number }).i);
  for (let i = 1; i <= ticks; i++) {
    const copies = shown.filter((x) => x === i).length;
    if (copies === 0) {
      verdict.lost++;
      say(`tick ${i} is not in the stream`);
    } else if (copies > 1) {
      verdict.duplicated += copies - 1;
      say(`tick ${i} is in the stream ${copies} times`);
    }
  }
  const effects = fiber.effects.filter((e) => e.kind === "tick");
  const keys = [...new Set(effects.map((e) => e.key))];
  if (keys.length < ticks) {
    verdict.lost += ticks - keys.length;
    say(`${keys.length} tick effects recorded for ${ticks} ticks`);
  } else if (keys.length > ticks) {
    verdict.reExecuted += keys.length - ticks;
    say(`${keys.length} distinct tick keys recorded for ${ticks} ticks: ${keys.join(" ")}`);
  }
  for (const key of keys) {
    const runs = effects.filter((e) => e.key === key).sort((a, b) => a.at - b.at);
    const first = runs[0];
    for (const run of runs.slice(1)) {
      // A step runs again only after a crash or a handoff cut its attempt short: then the engine
      // says `interrupted`, and a fault of the run's plan falls between the first run (less a
      // lease) and this one. The flag alone is the engine's word; the fault times are not.
      const cut =
        first !== undefined &&
        fiber.faultTimes.some((t) => t >= first.at - fiber.leaseMs - 1_000 && t <= run.at);
      if (run.interrupted && cut) continue;
      verdict.reExecuted++;
      say(
        `${key} ran again ${run.interrupted ? "with no fault between" : "not interrupted"} (${runs.map((r) => `${r.where}${r.interrupted ? "*" : ""}`).join(", ")})`,
      );
    }
  }
}

function judgeAgent(fiber: JudgedFiber, turns: number, verdict: Verdict, say: (what: string) => void): void {
  const results = fiber.shown.filter((c) => c.type === "tool.result");
  const calls = results.map((c) => {
    const data = c.data as { messageId?: string; toolCallId?: string };
    return `${data.messageId}/${data.toolCallId}`;
  });
  const distinct = new Set(calls);
  for (const c of results) {
    const status = (c.data as { status?: string }).status;
    if (status !== "ok") say(`tool result at seq ${c.seq} is ${status}: ${JSON.stringify(c.data)}`);
  }
  if (distinct.size < turns) {
    verdict.lost += turns - distinct.size;
    say(`${distinct.size} tool results in the stream for ${turns} turns`);
  }
  if (calls.length > distinct.size) {
    verdict.duplicated += calls.length - distinct.size;
    say(`tool results shown twice: ${calls.join(" ")}`);
  }
  const effects = fiber.effects.filter((e) => e.kind === "tool");
  const keys = [...new Set(effects.map((e) => e.key))];
  if (keys.length < turns) {
    verdict.lost += turns - keys.length;
    say(`${keys.length} tool effects recorded for ${turns} turns`);
  } else if (keys.length > turns) {
    verdict.reExecuted += keys.length - turns;
    say(`${keys.length} distinct tool keys recorded for ${turns} turns: ${keys.join(" ")}`);
  }
  for (const key of keys) {
    const runs = effects.filter((e) => e.key === key).sort((a, b) => a.at - b.at);
    const first = runs[0];
    const last = runs.at(-1);
    if (!first || !last || runs.length === 1) continue;
    const cut = fiber.faultTimes.some((t) => t >= first.at - fiber.leaseMs - 1_000 && t <= last.at);
    if (cut) continue;
    verdict.reExecuted += runs.length - 1;
    say(`${key} ran ${runs.length} times with no fault between (${runs.map((r) => r.where).join(", ")})`);
  }
}
