/**
 * The durable records Fiberline keeps: fiber registrations, journal entries, snapshots, stream
 * chunks and buffered events. Stores persist these shapes as they are; the engine, the Service
 * Worker host and the inspector read them.
 */

import type { SerializedError } from "./errors";

/** Where a fiber is in its life. `running`, `sleeping` and `waiting` are live; the rest are terminal. */
export type FiberStatus = "running" | "sleeping" | "waiting" | "completed" | "failed" | "cancelled";

/** Every status, live ones first. */
export const FIBER_STATUSES: readonly FiberStatus[] = [
  "running",
  "sleeping",
  "waiting",
  "completed",
  "failed",
  "cancelled",
];

/** The statuses after which a fiber never runs again. */
export const TERMINAL_STATUSES: readonly FiberStatus[] = ["completed", "failed", "cancelled"];

/** True when `status` is terminal (`completed`, `failed` or `cancelled`). */
export function isTerminal(status: FiberStatus): boolean {
  return status === "completed" || status === "failed" || status === "cancelled";
}

/**
 * Whether a reader at `cursor` has seen the whole stream of an ended fiber: nothing will follow
 * (the event route's 204, the stream ports' `ended`).
 */
export function pastTheEnd(record: FiberRecord, cursor: number): boolean {
  return isTerminal(record.status) && cursor >= record.streamHead;
}

/** Why and how often a fiber was recovered. */
export interface RecoveryInfo {
  /** Why the last recovery happened (e.g. "runner lost", "lease expired"). */
  reason: string;
  /** How many times this fiber has been recovered in all. */
  count: number;
  /** When the last recovery happened (ms since the epoch). */
  at: number;
}

/** A fiber's registration, written ahead of execution and updated by its runner. */
export interface FiberRecord {
  id: string;
  name: string;
  version: string;
  input: unknown;
  status: FiberStatus;
  idempotencyKey?: string;
  createdAt: number;
  updatedAt: number;
  /**
   * Fencing token: bumped by every claim; a write carrying another generation fails with
   * `fenced`. A new fiber starts above every generation a deleted fiber of its store reached, so
   * the number says nothing about how often the fiber itself was claimed.
   */
  generation: number;
  /** The runner that holds the fiber, if any. */
  owner?: string;
  /** Until when `owner`'s claim holds without renewal (ms since the epoch). */
  leaseUntil?: number;
  /** Highest `seq` appended to the fiber's stream. */
  streamHead: number;
  /** Emits outside steps already in the stream in this epoch (replay skips that many). */
  emitOrdinal: number;
  /**
   * The generation the fiber was created with. With `id` it names this fiber for good: an id
   * collected and started again gets a new fiber whose first generation is higher (readers use
   * it to tell the two apart). Absent on records written before it existed.
   */
  createdGeneration?: number;
  /** Bumped when `onRecovered` restarts the fiber from scratch. */
  epoch: number;
  recovery?: RecoveryInfo;
  /** Recoveries in a row that found no new progress (see `maxRecoveries`). */
  stalledRecoveries: number;
  /** Progress signature taken at the last recovery (settled journal entries, emits, last stash). */
  progressMark: string;
  /**
   * When a sleeping or waiting fiber should be woken (ms since the epoch): its timer, or the time
   * of a stored event it waits for (`dueForEvent`), so that an event whose runtime never
   * delivered it (it crashed first) wakes the fiber like an overdue timer.
   */
  wakeAt?: number;
  /** The event names a waiting fiber waits for. */
  waitingFor?: string[];
  result?: unknown;
  error?: SerializedError;
  endedAt?: number;
  /**
   * On the replica of a replicated fiber (continuity, `src/continuity`): which home may run it
   * and how far the replica has applied the shipped history. Written only by the fiber's
   * arbiter, in the same store write as what it applies; the engine carries it along untouched.
   */
  home?: HomeLease;
}

/** The arbiter's state of one replicated fiber, kept on its replica's record (`FiberRecord.home`). */
export interface HomeLease {
  /** The home that may run the fiber: `browser:<deviceId>` or `edge`. */
  home: string;
  /** Raised at every change of home; fences shipments from an earlier home. */
  epoch: number;
  /** Until when `home` may run the fiber (ms on the arbiter's clock). */
  until: number;
  /**
   * The last shipped position applied to the replica: of `home`'s epoch, or, once the edge took
   * over, of `formerHome`'s (the edge ships nothing).
   */
  appliedPos: number;
  /** The home that held the epoch before this one, once the fiber changed home. */
  formerHome?: string;
  /**
   * Per home and home epoch (`<home>@<epoch>`, an event id's part before its seq), the highest
   * local inbox seq of its events the replica holds (dedupes re-shipped events).
   */
  eventMarks: Record<string, number>;
  /**
   * Events the arbiter accepted while a browser held the fiber (a webhook), not yet shipped back
   * by that browser: pushed to it in every answer until they are, and moved into the replica's
   * inbox if the edge takes the fiber over first.
   */
  pushed?: Array<{ eventId: string; name: string; payload: unknown; at: number }>;
  /** The number of the last event the arbiter accepted for this fiber (`edge:<n>`). */
  pushSeq?: number;
  /**
   * A cancel the arbiter accepted while a browser held the fiber (`Arbiter.cancel`): sent to that
   * browser in every answer until its shipments end the fiber; if the edge takes the fiber over
   * first, the takeover ends it as `cancelled` in the same transaction. The first one wins.
   */
  cancel?: { reason: string; at: number };
}

/** The kinds of journaled operations. */
export type JournalKind = "step" | "sleep" | "event" | "now" | "random" | "uuid";

/** One journaled operation, keyed by its position in the run. */
export interface JournalEntry {
  fiberId: string;
  /** Position of the operation in the run (0, 1, 2, ...); replay must reach the same key here. */
  pos: number;
  kind: JournalKind;
  /** `name#n` for steps (the n-th call with that name), `sleep:name#n`, `event:name#n`, `now#n`... */
  key: string;
  status: "started" | "completed" | "failed";
  /** Attempt number of the last start (1-based); steps only. */
  attempt: number;
  startedAt: number;
  endedAt?: number;
  result?: unknown;
  error?: SerializedError;
  /** For sleeps: when the timer is due; for event waits: when the wait times out. */
  dueAt?: number;
  /** For steps: the stream head when the step first started (its chunks follow it). */
  streamFrom?: number;
  /**
   * Where the operation settled in the run, recorded only when it ran concurrently with another
   * (`Promise.all`): a replay hands recorded outcomes back in the same order, after the same
   * calls and emits, so the handler reaches the same positions and ordinals as the live run.
   */
  order?: SettleOrder;
}

/** When an operation settled, counted in the run's own history (see `JournalEntry.order`). */
export interface SettleOrder {
  /** It was the n-th operation of the run to settle (1-based). */
  settled: number;
  /** Operations the run had called (journal positions taken) when it settled. */
  calls: number;
  /** Emits outside steps the run had made when it settled. */
  emits: number;
}

/** A fiber's last stash. */
export interface SnapshotRecord {
  fiberId: string;
  value: unknown;
  at: number;
  /**
   * Which stash of the run made it (1, 2, ...): a replay makes the stashes up to this one
   * silently, since the stored snapshot is newer. Absent on snapshots written before it existed.
   */
  ordinal?: number;
  /**
   * Where the run stood when it stashed, for a fiber defined with `resumeFrom: "stash"` (a later
   * run continues from here); absent for every other fiber.
   */
  resume?: ResumePoint;
}

/**
 * A run's place in its fiber's history at a stash: a run of a `resumeFrom: "stash"` fiber starts
 * here, so what the stashing run did after it replays (steps return their results, emits are not
 * appended again) and what follows is new.
 */
export interface ResumePoint {
  /** The next journal position. */
  pos: number;
  /** Journaled calls made so far, by kind and label (the `n` of the next `name#n` key). */
  calls: Record<string, number>;
  /** Journaled operations settled so far (`SettleOrder.settled`). */
  settled: number;
  /** Emits outside steps so far (`FiberRecord.emitOrdinal`). */
  emits: number;
}

/** One chunk of a fiber's durable output stream. */
export interface StreamChunk {
  fiberId: string;
  /** 1, 2, 3, ... with no gap. */
  seq: number;
  type: string;
  data: unknown;
  at: number;
  /** Journal position of the step that emitted it (emits inside steps). */
  step?: number;
  /** Ordinal of an emit outside steps within its epoch (replay skips emits already present). */
  ordinal?: number;
}

/** An event sent to a fiber, buffered until a `waitForEvent` consumes it. */
export interface InboxEvent {
  fiberId: string;
  /** Order of arrival for this fiber (1-based). */
  seq: number;
  name: string;
  payload: unknown;
  at: number;
  /** Journal position of the wait that consumed it, once consumed. */
  consumedBy?: number;
  /**
   * Continuity (docs/design/continuity.md, "Events"): the id the event got in the home that first
   * accepted it, when that was not this one (an event the arbiter accepted and pushed to the
   * browser: `edge:<n>`). Shipped back with it, so the arbiter knows it for the event it pushed.
   */
  eventId?: string;
}

/** A chunk as readers see it (no `fiberId`). */
export interface FiberEvent<T = unknown> {
  seq: number;
  type: string;
  data: T;
  at: number;
}
