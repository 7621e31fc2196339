/**
 * `Outbox`: the browser side of continuity for each replicated fiber: the commits not yet
 * acknowledged by the arbiter, at positions 1, 2, 3... per fiber and epoch, bounded in bytes; how
 * far the arbiter has acknowledged (which releases step starts, Rule A, and chunks to readers,
 * Rule B); the Rule C deadline of the browser's lease; and whether the fiber moved away (fenced).
 * `ReplicatingStore` appends, `Shipper` takes and acknowledges, the engine reads it through the
 * `Replication` port.
 *
 * It lives beside the store it describes: for `MemoryStore` both are memory of one process, and
 * `ReplicatingStore` appends in the same task as the commit, before anything can observe the
 * commit. An `IdbStore` outbox (an object store written in the commit's own transaction) is the
 * next step (docs/design/continuity.md).
 */

import { FencedError } from "../core/errors";
import { isTerminal } from "../core/records";
import type { Replication } from "../core/replication";
import { estimateSize } from "../core/validate";
import { changedHomeError, LeaseLapsedError } from "./errors";
import { DEFAULT_OUTBOX_BYTES, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, type ShippedEntry } from "./protocol";

/** What an entry is before it gets a position. */
export type EntryBody = ShippedEntry extends infer E
  ? E extends ShippedEntry
    ? Omit<E, "pos">
    : never
  : never;

/** Where a fiber stands, as the browser knows it. */
export type HomeStatus =
  /** Runs here; `deadline` is when its lease ends (browser clock), once an acknowledgement said. */
  | { status: "home"; deadline?: number }
  /** Another home runs it (this one was fenced): it writes nothing more here. */
  | { status: "away"; epoch: number; home: string };

interface Waiter {
  pos: number;
  /** A step start (Rule A), which the lease running out refuses; else an event's sender. */
  step: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

interface FiberLog {
  epoch: number;
  /** The position the next entry gets. */
  next: number;
  /** Entries not yet acknowledged, ascending by position. */
  entries: Array<{ entry: ShippedEntry; bytes: number }>;
  bytes: number;
  acked: number;
  /** The highest chunk seq the arbiter acknowledged. */
  shippedSeq: number;
  where: HomeStatus;
  /** A terminal commit was appended: once acknowledged, nothing more will come. */
  ended: boolean;
  waiters: Waiter[];
  room: Array<() => void>;
}

/** Options of `new Outbox`. */
export interface OutboxOptions {
  /** Bytes of unacknowledged entries per fiber past which its commits wait (default 4 MiB). */
  maxBytesPerFiber?: number;
  /** The browser's clock, for Rule C (default `Date.now`). */
  clock?: () => number;
}

/** The replication state of every replicated fiber of one browser store. */
export class Outbox implements Replication {
  readonly #fibers = new Map<string, FiberLog>();
  readonly #maxBytes: number;
  readonly #clock: () => number;
  readonly #listeners = new Set<(fiberId: string) => void>();
  readonly #appendListeners = new Set<(fiberId: string) => void>();

  constructor(options: OutboxOptions = {}) {
    this.#maxBytes = options.maxBytesPerFiber ?? DEFAULT_OUTBOX_BYTES;
    this.#clock = options.clock ?? Date.now;
  }

  // ---- the Replication port (the engine's view) -----------------------------------------------

  replicated(fiberId: string): boolean {
    return this.#fibers.has(fiberId);
  }

  /**
   * Rule A: resolves once everything appended for `fiberId` so far is acknowledged; rejects with
   * `fenced` when the fiber moved to another home and with `lease_lapsed` when the lease ran out
   * (Rule C: no step starts past the deadline, even one whose start was shipped in time).
   */
  shipped(fiberId: string): Promise<void> {
    const log = this.#fibers.get(fiberId);
    if (log === undefined) return Promise.resolve();
    if (log.where.status === "away") return Promise.reject(this.#awayError(fiberId, log));
    if (!this.mayWrite(fiberId, this.#clock())) return Promise.reject(new LeaseLapsedError(fiberId));
    return this.#wait(log, true);
  }

  /**
   * Resolves once position `pos` of `fiberId` (default: everything appended so far) is
   * acknowledged, however long that takes; rejects with `fenced` if the fiber moves away before
   * the replica holds it (it was dropped).
   */
  acknowledged(fiberId: string, pos?: number): Promise<void> {
    const log = this.#fibers.get(fiberId);
    if (log === undefined || (pos !== undefined && log.acked >= pos)) return Promise.resolve();
    if (log.where.status === "away") return Promise.reject(this.#awayError(fiberId, log));
    return this.#wait(log, false, pos);
  }

  /** Rule B: the highest seq readers may see (every later chunk is not shipped yet). */
  visibleHead(fiberId: string): number {
    return this.#fibers.get(fiberId)?.shippedSeq ?? Number.POSITIVE_INFINITY;
  }

  onShipped(listener: (fiberId: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- the store's side -----------------------------------------------------------------------

  /** Calls `listener` after every append (the shipper wakes up). */
  onAppend(listener: (fiberId: string) => void): () => void {
    this.#appendListeners.add(listener);
    return () => this.#appendListeners.delete(listener);
  }

  /** Ids of every replicated fiber. */
  get fiberIds(): string[] {
    return [...this.#fibers.keys()];
  }

  /** Where `fiberId` stands, or `undefined` when it is not replicated. */
  where(fiberId: string): HomeStatus | undefined {
    return this.#fibers.get(fiberId)?.where;
  }

  /**
   * Whether this home may write `fiberId` at `now` (browser clock): not once it is away, nor past
   * the deadline of its last acknowledged lease (Rule C). Unreplicated fibers always may.
   */
  mayWrite(fiberId: string, now: number): boolean {
    const where = this.#fibers.get(fiberId)?.where;
    if (where === undefined) return true;
    return where.status === "home" && (where.deadline === undefined || now < where.deadline);
  }

  /** Resolves once `fiberId`'s outbox has room for another commit (undefined: it has room now). */
  room(fiberId: string): Promise<void> | undefined {
    const log = this.#fibers.get(fiberId);
    if (log === undefined || log.bytes < this.#maxBytes || log.where.status === "away") return undefined;
    return new Promise((resolve) => log.room.push(resolve));
  }

  /** Appends the next entry of `fiberId` (its first one, a `create`, makes it replicated). */
  append(fiberId: string, body: EntryBody): number {
    let log = this.#fibers.get(fiberId);
    if (log === undefined) {
      log = {
        epoch: 1,
        next: 1,
        entries: [],
        bytes: 0,
        acked: 0,
        shippedSeq: 0,
        where: { status: "home" },
        ended: false,
        waiters: [],
        room: [],
      };
      this.#fibers.set(fiberId, log);
    }
    const entry = { ...body, pos: log.next++ } as ShippedEntry;
    const bytes = estimateSize(entry);
    log.entries.push({ entry, bytes });
    log.bytes += bytes;
    if (
      entry.type === "commit" &&
      entry.group.fiber?.status !== undefined &&
      isTerminal(entry.group.fiber.status)
    )
      log.ended = true;
    for (const listener of this.#appendListeners) listener(fiberId);
    return entry.pos;
  }

  // ---- the shipper's side ---------------------------------------------------------------------

  /** The epoch and the next positions to ship of `fiberId`, up to the batch limits. */
  batch(
    fiberId: string,
    limits: { entries?: number; bytes?: number } = {},
  ): { epoch: number; from: number; entries: ShippedEntry[] } | undefined {
    const log = this.#fibers.get(fiberId);
    if (log === undefined) return undefined;
    const maxEntries = limits.entries ?? MAX_BATCH_ENTRIES;
    const maxBytes = limits.bytes ?? MAX_BATCH_BYTES;
    const entries: ShippedEntry[] = [];
    let bytes = 0;
    for (const item of log.entries) {
      if (entries.length >= maxEntries || (entries.length > 0 && bytes + item.bytes > maxBytes)) break;
      entries.push(item.entry);
      bytes += item.bytes;
    }
    return { epoch: log.epoch, from: log.acked + 1, entries };
  }

  /** Whether `fiberId` has entries the arbiter has not acknowledged. */
  hasPending(fiberId: string): boolean {
    return (this.#fibers.get(fiberId)?.entries.length ?? 0) > 0;
  }

  /** Whether `fiberId` ended and everything of it is acknowledged: nothing more to ship. */
  settled(fiberId: string): boolean {
    const log = this.#fibers.get(fiberId);
    return log === undefined || log.where.status === "away" || (log.ended && log.entries.length === 0);
  }

  /** The last position the arbiter acknowledged. */
  acked(fiberId: string): number {
    return this.#fibers.get(fiberId)?.acked ?? 0;
  }

  /**
   * The arbiter holds every position up to `appliedPos`: lets them go, releases the step starts
   * and chunks that waited on them, and (with `deadline`) renews the lease (Rule C).
   */
  acknowledge(fiberId: string, appliedPos: number, deadline?: number): void {
    const log = this.#fibers.get(fiberId);
    if (log === undefined || log.where.status === "away") return;
    if (deadline !== undefined && (log.where.deadline === undefined || deadline > log.where.deadline))
      log.where = { status: "home", deadline };
    // Rule C: a step start acknowledged after the lease ended does not run.
    if (!this.mayWrite(fiberId, this.#clock())) this.lapse(fiberId);
    this.#release(log, fiberId, appliedPos);
  }

  /** Lets positions up to `appliedPos` go and answers whoever waited on them. */
  #release(log: FiberLog, fiberId: string, appliedPos: number): void {
    if (appliedPos <= log.acked) return;
    let shipped = log.shippedSeq;
    while (log.entries[0] !== undefined && log.entries[0].entry.pos <= appliedPos) {
      const { entry, bytes } = log.entries.shift() as { entry: ShippedEntry; bytes: number };
      log.bytes -= bytes;
      shipped = Math.max(shipped, ...chunkSeqs(entry));
    }
    log.acked = appliedPos;
    const released = shipped > log.shippedSeq;
    log.shippedSeq = shipped;
    const ready = log.waiters.filter((w) => w.pos <= appliedPos);
    log.waiters = log.waiters.filter((w) => w.pos > appliedPos);
    for (const w of ready) w.resolve();
    this.#freeRoom(log);
    if (released) for (const listener of this.#listeners) listener(fiberId);
  }

  /**
   * The fiber moved to `home` under `epoch`, and the replica holds this home's positions up to
   * `appliedPos`: this home writes it no more. Entries past that are dropped (by Rules A and B nobody saw them and no effect ran on
   * their account) and every waiting step start is refused.
   */
  fence(fiberId: string, epoch: number, home: string, appliedPos = 0): void {
    const log = this.#fibers.get(fiberId);
    if (log === undefined || log.where.status === "away") return;
    log.where = { status: "away", epoch, home };
    // No step starts here any more, shipped or not; what the replica holds of this home's epoch
    // is history, so an event's sender waiting on it is answered.
    const error = this.#awayError(fiberId, log);
    for (const w of log.waiters.filter((w) => w.step)) w.reject(error);
    log.waiters = log.waiters.filter((w) => !w.step);
    this.#release(log, fiberId, appliedPos);
    log.entries = [];
    log.bytes = 0;
    for (const w of log.waiters.splice(0)) w.reject(error);
    this.#freeRoom(log);
  }

  /**
   * The lease ran out (Rule C) with no newer acknowledgement: step starts waiting on the arbiter
   * are refused with `lease_lapsed` (an event's sender keeps waiting: the event ships later, or
   * is dropped with a fence); the fiber stays replicated and resumes once answered.
   */
  lapse(fiberId: string): void {
    const log = this.#fibers.get(fiberId);
    if (log === undefined) return;
    const error = new LeaseLapsedError(fiberId);
    for (const w of log.waiters.filter((w) => w.step)) w.reject(error);
    log.waiters = log.waiters.filter((w) => !w.step);
  }

  /** Forgets a fiber the store deleted (its retention passed, everything acknowledged). */
  forget(fiberId: string): void {
    this.#fibers.delete(fiberId);
  }

  #wait(log: FiberLog, step: boolean, pos = log.next - 1): Promise<void> {
    if (log.acked >= pos) return Promise.resolve();
    return new Promise((resolve, reject) => log.waiters.push({ pos, step, resolve, reject }));
  }

  #awayError(fiberId: string, log: FiberLog): FencedError {
    const where = log.where;
    return where.status === "away"
      ? changedHomeError(fiberId, where.epoch, where.home)
      : new FencedError("fenced", `Fiber ${fiberId} is fenced.`);
  }

  #freeRoom(log: FiberLog): void {
    if (log.bytes >= this.#maxBytes && log.where.status === "home") return;
    for (const resolve of log.room.splice(0)) resolve();
  }
}

function chunkSeqs(entry: ShippedEntry): number[] {
  if (entry.type === "create") return entry.chunks.map((c) => c.seq);
  if (entry.type === "commit") return (entry.group.chunks ?? []).map((c) => c.seq);
  return [];
}
