/**
 * The checks run once a schedule has reached quiescence (faults stopped, time advanced well
 * past every lease), on the ledger's last image of every fiber: nothing left `running` without
 * a runner, no timer or buffered event left unserved, each event consumed by at most one wait
 * and by the wait the journal says, no wait satisfied by an event that came after its deadline,
 * emits outside steps exactly once per epoch, what `cancel` answered matches the end, and the
 * result of a deterministic program equal to an uninterrupted run's (the oracle's); for an agent
 * fiber, its messages, tool effects and stream (`AgentLog.checkFinal`).
 */

import { isTerminal, type JournalEntry, type StreamChunk } from "../core/records";
import type { CancelOutcome } from "./actions";
import type { FiberImage } from "./ledger";
import { oracle, type Program } from "./program";
import type { World } from "./world";

/** What the final checks need besides the world. */
export interface FinalContext {
  world: World;
  /** Virtual ms since the start at which the checks run. */
  now: number;
  /** Virtual ms since the start at which faults (and fault-like actions) stopped. */
  faultsStoppedAt: number;
  cancels: readonly CancelOutcome[];
  cancelled: ReadonlySet<string>;
  fiberIds: readonly string[];
}

/** Runs every final check; violations go to the world's findings. */
export function checkFinal(ctx: FinalContext): void {
  const { world } = ctx;
  ctx.fiberIds.forEach((id, i) => {
    const image = world.ledger.get(id);
    const program = world.programs[i];
    if (!image?.record || !program) return;
    const fail = (invariant: string, detail: string) => world.findings.add(invariant, detail, id);
    checkLiveness(ctx, image, fail);
    checkEvents(image, fail);
    checkOutsideEmits(image, program, fail);
    checkReplayed(image, fail);
    checkAborted(image, program, fail);
    checkExhausted(image, program, world.settings.maxRecoveries, fail);
    checkRecoveryLimit(image, program, world.settings.maxRecoveries, fail);
    if (program.agent) world.agents.checkFinal(id, image, program.agent, !ctx.cancelled.has(id));
    else checkResult(ctx, id, image, program, fail);
  });
  for (const { fiberId, status, life } of ctx.cancels) {
    const final = world.ledger.get(fiberId)?.record?.status;
    // Only the fiber the cancel answered for: one started under its id after its collection is not.
    if (final !== undefined && final !== status && world.ledger.lifeOf(fiberId) === life) {
      world.findings.add(
        "cancel-answer-wrong",
        `cancel answered "${status}" but the fiber ended ${final}`,
        fiberId,
      );
    }
  }
}

type Fail = (invariant: string, detail: string) => void;

function checkLiveness(ctx: FinalContext, image: FiberImage, fail: Fail): void {
  const record = image.record;
  if (!record || image.collected || isTerminal(record.status)) return;
  const now = ctx.now + Date.UTC(2030, 0, 1);
  const since = `${ctx.now - ctx.faultsStoppedAt} ms after faults stopped`;
  if (record.status === "running") {
    fail(
      "stranded-running",
      `still running ${since} (owner ${record.owner ?? "none"}, lease until ${rel(record.leaseUntil)})`,
    );
    return;
  }
  if (record.wakeAt !== undefined && record.wakeAt < now - 2 * ctx.world.settings.leaseMs) {
    fail("missed-wake", `${record.status} with wakeAt ${rel(record.wakeAt)}, ${since}`);
  }
  if (record.status === "waiting") {
    const wanted = new Set(record.waitingFor ?? []);
    const buffered = image.inbox.find((e) => e.consumedBy === undefined && wanted.has(e.name));
    if (buffered)
      fail(
        "waiting-with-buffered-event",
        `waiting for ${[...wanted]} while event ${buffered.name}#${buffered.seq} sits unconsumed, ${since}`,
      );
  }
}

function checkEvents(image: FiberImage, fail: Fail): void {
  const restarted = (image.record?.epoch ?? 0) > 0;
  const bySend = new Map<number, JournalEntry>();
  for (const entry of image.journal) {
    if (entry.kind !== "event") continue;
    if (entry.status === "completed") {
      const send = (entry.result as { send?: number } | undefined)?.send;
      if (send === undefined) continue;
      const other = bySend.get(send);
      if (other)
        fail(
          "one-event-two-waits",
          `event {send:${send}} satisfied ${other.key} (pos ${other.pos}) and ${entry.key} (pos ${entry.pos})`,
        );
      bySend.set(send, entry);
      const event = image.inbox.find((e) => (e.payload as { send?: number } | null)?.send === send);
      if (!event)
        fail("event-consumption-mismatch", `${entry.key} got {send:${send}}, which is not in the inbox`);
      else if (event.consumedBy !== entry.pos) {
        fail(
          "event-consumption-mismatch",
          `${entry.key} (pos ${entry.pos}) got event #${event.seq}, marked consumed by ${event.consumedBy}`,
        );
      }
      if (event && entry.dueAt !== undefined && event.at > entry.dueAt) {
        fail(
          "event-after-deadline",
          `${entry.key} took event #${event.seq} sent ${event.at - entry.dueAt} ms after its deadline`,
        );
      }
    } else if (entry.status === "failed" && entry.error?.code === "timeout" && entry.dueAt !== undefined) {
      const name = entry.key.replace(/^event:/, "").replace(/#\d+$/, "");
      const deadline = rel0(entry.dueAt);
      const missed = image.inbox.find(
        (e) =>
          e.name === name &&
          e.consumedBy === undefined &&
          (image.inboxDurableAt.get(e.seq) ?? Infinity) < deadline,
      );
      if (missed)
        fail(
          "timed-out-with-event-buffered",
          `${entry.key} timed out though event #${missed.seq} was durable before its deadline`,
        );
    }
  }
  for (const event of image.inbox) {
    if (event.consumedBy === undefined) continue;
    const entry = image.journal.find((e) => e.pos === event.consumedBy);
    const send = (event.payload as { send?: number } | null)?.send;
    const matches =
      entry?.kind === "event" &&
      entry.status === "completed" &&
      (entry.result as { send?: number })?.send === send;
    if (!matches) {
      fail(
        restarted ? "event-consumed-by-discarded-run" : "event-consumption-mismatch",
        `event #${event.seq} {send:${send}} is marked consumed by pos ${event.consumedBy}, where the journal holds ${entry ? `${entry.key} ${entry.status}` : "nothing"}`,
      );
    }
  }
  for (const entry of image.journal) {
    if (
      entry.kind === "sleep" &&
      entry.status === "completed" &&
      entry.dueAt !== undefined &&
      (entry.endedAt ?? 0) < entry.dueAt
    ) {
      fail(
        "timer-fired-early",
        `${entry.key} completed ${entry.dueAt - (entry.endedAt ?? 0)} ms before it was due`,
      );
    }
  }
}

function checkOutsideEmits(image: FiberImage, program: Program, fail: Fail): void {
  if (image.record?.status !== "completed") return;
  const epoch = currentEpoch(image.stream);
  const counts = new Map<string, number>();
  for (const chunk of epoch) {
    if (chunk.type !== "note") continue;
    const label = (chunk.data as { label: string }).label;
    counts.set(label, (counts.get(label) ?? 0) + 1);
  }
  for (const label of program.outsideEmits) {
    const n = counts.get(label) ?? 0;
    if (n !== 1)
      fail(
        n === 0 ? "outside-emit-lost" : "outside-emit-duplicated",
        `emit ${label} appears ${n} times in the final epoch's stream`,
      );
  }
}

/**
 * Every program, timed waits included, replays exactly what its earlier runs did (the engine
 * decides from recorded facts): a fiber failed with `replay_diverged` is the engine's fault.
 */
function checkReplayed(image: FiberImage, fail: Fail): void {
  const error = image.record?.error;
  if (image.record?.status === "failed" && error?.code === "replay_diverged")
    fail("replay-diverged", (error.message ?? "").slice(0, 200));
}

/**
 * A fiber whose `onRecovered` answers "abort" is never resumed: its first recovery ends it with
 * `recovery_aborted`, before any `fiber.recovered` chunk (which only a resumed or restarted run
 * gets).
 */
function checkAborted(image: FiberImage, program: Program, fail: Fail): void {
  if (program.onRecovered !== "abort") return;
  const recovered = image.stream.find((c) => c.type === "fiber.recovered");
  if (recovered !== undefined)
    fail(
      "abort-not-honoured",
      `onRecovered answers "abort", yet the fiber was recovered and went on (${JSON.stringify(recovered.data).slice(0, 100)})`,
    );
}

/**
 * A fiber ended `recovery_exhausted` by its recoveries was recovered `limit` times in a row
 * without progress first: any chunk is progress, so its stream ends with that many
 * `fiber.recovered` chunks before `fiber.end`, and no journal entry settled between the first of
 * them and the end (unless the program stashes, which is progress of its own). (Not the agent's
 * model call, which ends a step with the same code after as many regenerations.)
 */
function checkExhausted(image: FiberImage, program: Program, limit: number, fail: Fail): void {
  const error = image.record?.error;
  if (error?.code !== "recovery_exhausted" || !error.message?.includes("in a row without progress")) return;
  const tail = image.stream.slice(-limit - 1);
  const recovered = tail.slice(0, -1).filter((c) => c.type === "fiber.recovered").length;
  if (tail.length < limit + 1 || recovered < limit) {
    fail(
      "exhausted-early",
      `ended recovery_exhausted with ${recovered} fiber.recovered among the last ${limit} chunks before fiber.end (limit ${limit})`,
    );
    return;
  }
  // Nor did any of those runs settle a step, sleep, wait or value (which resets the count).
  if (stashes(program)) return;
  const settled = settledBetween(
    image,
    (tail[0] as StreamChunk).at,
    (tail.at(-1) as StreamChunk).at,
    "excluded",
  );
  if (settled !== undefined)
    fail(
      "exhausted-early",
      `ended recovery_exhausted though ${settled.key} settled between its last ${limit} recoveries and its end`,
    );
}

/**
 * No fiber is recovered more than `limit` times in a row without progress: more `fiber.recovered`
 * chunks in a row than that (nothing emitted between them) need a journal entry that settled
 * between the first and the last (all on the one virtual clock). Not for programs that stash,
 * whose progress can be a stash alone, nor across a restart from scratch.
 */
function checkRecoveryLimit(image: FiberImage, program: Program, limit: number, fail: Fail): void {
  if (stashes(program)) return;
  let row: StreamChunk[] = [];
  const judge = () => {
    if (row.length <= limit) return;
    const [first, last] = [row[0] as StreamChunk, row.at(-1) as StreamChunk];
    if (settledBetween(image, first.at, last.at, "included") === undefined)
      fail(
        "recovered-past-limit",
        `recovered ${row.length} times in a row (seq ${first.seq}-${last.seq}) with no progress between (limit ${limit})`,
      );
  };
  for (const chunk of image.stream) {
    const resumed =
      chunk.type === "fiber.recovered" && (chunk.data as { decision?: string }).decision === "resume";
    if (resumed && row.length > 0 && (row.at(-1) as StreamChunk).seq === chunk.seq - 1) {
      row.push(chunk);
      continue;
    }
    judge();
    row = resumed ? [chunk] : [];
  }
  judge();
}

/** Whether `program` stashes (a stash alone is progress, which the journal does not show). */
function stashes(program: Program): boolean {
  return program.ops.some((op) => op.k === "stash");
}

/**
 * A journal entry that settled (a step completed or failed, a sleep, wait or value) between
 * `from` and `to` on the virtual clock, those instants included or not: each check takes the
 * side that cannot accuse the engine wrongly.
 */
function settledBetween(
  image: FiberImage,
  from: number,
  to: number,
  ends: "included" | "excluded",
): JournalEntry | undefined {
  return image.journal.find((e) => {
    if (e.status === "started" || e.endedAt === undefined) return false;
    return ends === "included" ? e.endedAt >= from && e.endedAt <= to : e.endedAt > from && e.endedAt < to;
  });
}

function checkResult(ctx: FinalContext, id: string, image: FiberImage, program: Program, fail: Fail): void {
  const record = image.record;
  if (!record || !program.deterministic || ctx.cancelled.has(id) || !isTerminal(record.status)) return;
  const code = record.error?.code;
  if (
    record.status === "failed" &&
    ["version_mismatch", "recovery_exhausted", "recovery_aborted"].includes(code ?? "")
  )
    return;
  const events = new Map<string, number[]>();
  for (const e of image.inbox) {
    const list = events.get(e.name) ?? [];
    list.push((e.payload as { send: number }).send);
    events.set(e.name, list);
  }
  const expected = oracle(program, events);
  if (record.status !== "completed") {
    if (expected !== undefined)
      fail(
        "result-differs",
        `ended ${record.status} (${code}: ${record.error?.message?.slice(0, 100)}); an uninterrupted run completes`,
      );
    return;
  }
  if (JSON.stringify(record.result) !== JSON.stringify(expected)) {
    fail(
      "result-differs",
      `result ${JSON.stringify(record.result)}, an uninterrupted run returns ${JSON.stringify(expected)}`,
    );
  }
}

/** The chunks after the last `fiber.recovered` that restarted the fiber from scratch. */
function currentEpoch(stream: readonly StreamChunk[]): StreamChunk[] {
  let from = 0;
  stream.forEach((c, i) => {
    if (c.type === "fiber.recovered" && (c.data as { decision?: string }).decision === "restart")
      from = i + 1;
  });
  return stream.slice(from);
}

function rel(t: number | undefined): string {
  return t === undefined ? "none" : `t=${t - Date.UTC(2030, 0, 1)}ms`;
}

function rel0(t: number): number {
  return t - Date.UTC(2030, 0, 1);
}
