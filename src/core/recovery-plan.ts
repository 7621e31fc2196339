/**
 * What to do with a fiber a runner has just claimed: a sleeping or waiting fiber woken on schedule
 * simply runs again; an interrupted one is checked against its definition's version and its
 * recovery budget, handed to `onRecovered`, and resumed, restarted or ended. Pure apart from the
 * user's `onRecovered` hook; the runtime applies the plan.
 */

import type { FiberDefinition, RecoveryDecision } from "./define";
import { FiberlineError, RecoveryExhaustedError, VersionMismatchError } from "./errors";
import type { RunState } from "./fiber-run";
import type {
  FiberRecord,
  InboxEvent,
  JournalEntry,
  RecoveryInfo,
  ResumePoint,
  StreamChunk,
} from "./records";
import type { WriteGroup } from "./store";

/** A claimed fiber with everything it owns, as loaded from the store. */
export interface ClaimedFiber {
  record: FiberRecord;
  journal: JournalEntry[];
  snapshot: unknown;
  snapshotAt: number | undefined;
  /** The stash ordinal of the snapshot (`SnapshotRecord.ordinal`), if any. */
  snapshotOrdinal?: number | undefined;
  /** Where the run that made the snapshot stood (`SnapshotRecord.resume`), if it said. */
  snapshotResume?: ResumePoint | undefined;
  inbox: InboxEvent[];
}

/** Run the fiber after writing `group`, or end it with `error`. */
export type RunPlan = { kind: "run"; group: WriteGroup; state: RunState } | { kind: "end"; error: unknown };

/** Why a runner is picking the fiber up. */
export type PickupReason = "recover" | "wake" | "event";

/**
 * Plans the run of a freshly claimed fiber.
 *
 * Failure semantics: nothing is written here. For an interrupted fiber the plan's group appends
 * `fiber.recovered`, records the recovery and, for "restart", clears journal and snapshot and
 * releases the events the discarded run consumed, in the same transaction; a fiber recovered more than `maxRecoveries` times in a row with no new
 * progress (settled journal entries, emits, stashes, step chunks) is ended with
 * `recovery_exhausted`.
 */
export async function planRun(
  def: FiberDefinition,
  claimed: ClaimedFiber,
  reason: PickupReason,
  now: number,
  maxRecoveries: number,
): Promise<RunPlan> {
  const { record, journal, snapshot, inbox } = claimed;
  const snapshotOrdinal = claimed.snapshotOrdinal ?? 0;
  const { snapshotResume } = claimed;
  const base = { fiberId: record.id, generation: record.generation };
  // Every pick-up, a scheduled wake-up included: a fiber suspended under one version must not
  // continue under code that replays its journal differently.
  if (record.version !== def.version && !def.compatibleVersions.includes(record.version)) {
    return {
      kind: "end",
      error: new VersionMismatchError(
        "version_mismatch",
        `Fiber ${record.id} was started by version "${record.version}" of "${record.name}" but this runtime has version "${def.version}". List "${record.version}" in compatibleVersions if the new code replays old journals identically.`,
      ),
    };
  }
  if (record.status !== "running") {
    // A sleeping or waiting fiber woken on schedule: not a recovery.
    return {
      kind: "run",
      group: {
        ...base,
        fiber: { status: "running", wakeAt: undefined, waitingFor: undefined, updatedAt: now },
      },
      state: {
        record: { ...record, status: "running" },
        journal,
        snapshot,
        snapshotOrdinal,
        snapshotResume,
        inbox,
        recovery: null,
      },
    };
  }
  // A run of a fiber + stash fiber stashes anew where a replay from the top would not: what it
  // stashed counts, not how many times.
  const stashes = def.options.resumeFrom === "stash" ? fingerprint(snapshot) : snapshotOrdinal;
  const mark = progressMark(record, journal, stashes, record.streamHead);
  const stalled = mark === record.progressMark ? record.stalledRecoveries + 1 : 1;
  const limit = def.options.maxRecoveries ?? maxRecoveries;
  if (stalled > limit) {
    return {
      kind: "end",
      error: new RecoveryExhaustedError(
        "recovery_exhausted",
        `Fiber ${record.id} was recovered ${stalled} times in a row without progress (limit ${limit}); it was failed so it cannot crash-loop. Inspect its journal to find the step that never finishes.`,
      ),
    };
  }
  const recovery: RecoveryInfo = {
    reason: reason === "recover" ? "runner lost" : `runner lost (found on ${reason})`,
    count: (record.recovery?.count ?? 0) + 1,
    at: now,
  };
  let decision: RecoveryDecision = "resume";
  if (def.options.onRecovered) {
    try {
      decision = await def.options.onRecovered({
        id: record.id,
        name: record.name,
        input: record.input,
        snapshot,
        recovery,
        journal,
      });
    } catch (error) {
      return { kind: "end", error };
    }
  }
  if (decision === "abort") {
    return {
      kind: "end",
      error: new FiberlineError(
        "recovery_aborted",
        `Fiber ${record.id} was interrupted and its onRecovered hook chose "abort".`,
      ),
    };
  }
  const seq = record.streamHead + 1;
  const chunk: StreamChunk = {
    fiberId: record.id,
    seq,
    type: "fiber.recovered",
    data: { ...recovery, decision },
    at: now,
  };
  const restart = decision === "restart";
  const restarted: FiberRecord = { ...record, epoch: record.epoch + 1, emitOrdinal: 0 };
  const fiber: Partial<FiberRecord> = {
    recovery,
    stalledRecoveries: stalled,
    // Taken after this recovery's own chunk: only what runs after it counts as progress.
    progressMark: restart ? progressMark(restarted, [], 0, seq) : progressMark(record, journal, stashes, seq),
    streamHead: seq,
    updatedAt: now,
    ...(restart ? { epoch: restarted.epoch, emitOrdinal: 0 } : {}),
  };
  const next: FiberRecord = { ...record, ...fiber };
  if (!restart) {
    return {
      kind: "run",
      group: { ...base, fiber, chunks: [chunk] },
      state: { record: next, journal, snapshot, snapshotOrdinal, snapshotResume, inbox, recovery },
    };
  }
  // From scratch: the events the discarded run consumed (an approval already sent) are the new
  // run's to consume again.
  const released = inbox.filter((e) => e.consumedBy !== undefined);
  return {
    kind: "run",
    group: {
      ...base,
      fiber,
      chunks: [chunk],
      clearJournal: true,
      snapshot: null,
      ...(released.length > 0
        ? { consumeEvents: released.map((e) => ({ seq: e.seq, consumedBy: null })) }
        : {}),
    },
    state: {
      record: next,
      journal: [],
      snapshot: undefined,
      inbox: inbox.map(({ consumedBy: _released, ...event }) => event),
      recovery,
    },
  };
}

/**
 * What a fiber has durably done, as a comparable string: settled journal entries, emits outside
 * steps, stashes (by ordinal, so a replayed stash is no progress; for a fiber + stash fiber, by
 * what it holds) and the stream head, which counts chunks a step emits (a streaming step that
 * continues from its chunks makes progress each life even when it never completes).
 */
function progressMark(
  record: FiberRecord,
  journal: readonly JournalEntry[],
  stashes: number | string,
  streamHead: number,
): string {
  const settled = journal.filter((e) => e.status !== "started").length;
  return `${record.epoch}:${settled}:${record.emitOrdinal}:${stashes}:${streamHead}`;
}

/**
 * A short hash of a stashed value (structured-clone types spelled out, cycles cut), for telling
 * whether a fiber + stash fiber stashed anything new since its last recovery.
 */
export function fingerprint(value: unknown): string {
  let hash = 0x811c9dc5; // FNV-1a, 32 bits
  const text = canonical(value, new WeakSet());
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return `#${(hash >>> 0).toString(16)}`;
}

function canonical(value: unknown, seen: WeakSet<object>): string {
  if (value === null || typeof value !== "object") {
    return typeof value === "string" ? JSON.stringify(value) : `${typeof value}:${String(value)}`;
  }
  if (seen.has(value)) return "[cycle]";
  seen.add(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonical(v, seen)).join(",")}]`;
  if (value instanceof Date) return `Date(${value.getTime()})`;
  if (value instanceof Map)
    return `Map{${[...value].map(([k, v]) => `${canonical(k, seen)}=>${canonical(v, seen)}`).join(",")}}`;
  if (value instanceof Set) return `Set{${[...value].map((v) => canonical(v, seen)).join(",")}}`;
  if (ArrayBuffer.isView(value)) {
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    return `${value.constructor.name}(${bytes.join(",")})`;
  }
  if (value instanceof ArrayBuffer) return `ArrayBuffer(${new Uint8Array(value).join(",")})`;
  if (typeof Blob !== "undefined" && value instanceof Blob) return `Blob(${value.size},${value.type})`;
  const entries = Object.keys(value)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k], seen)}`);
  return `${value.constructor?.name ?? "Object"}{${entries.join(",")}}`;
}
