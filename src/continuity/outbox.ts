/**
 * `Outbox`: the browser side of continuity for each replicated fiber: the commits not yet
 * acknowledged by the arbiter, at positions 1, 2, 3... per fiber and epoch, bounded in bytes; how
 * far the arbiter has acknowledged (which releases step starts, Rule A, and chunks to readers,
 * Rule B); the Rule C deadline of the browser's lease; and whether the fiber moved away (fenced).
 * `ReplicatingStore` appends, `Shipper` takes and acknowledges, the engine reads it through the
 * `Replication` port.
 *
 * It lives beside the store it describes, in one of two ways:
 * - `new Outbox()`: in memory, beside a `MemoryStore` (both are memory of one process);
 *   `ReplicatingStore` appends in the same task as the commit, before anything can observe it.
 * - `await Outbox.open(store)` on a store that keeps the outbox itself (`IdbStore`, the port is
 *   `outbox-log.ts`): the store writes each entry in the commit's own transaction and gives it its
 *   position there, so a durable commit is in the outbox and a failed one is not, across any
 *   crash; `ReplicatingStore` hands each committed entry to `appended`. `open` loads what the
 *   last run left (positions, acknowledged position, `away`); acknowledgements and fences are
 *   written back in transactions of their own, acknowledgements folded over `saveDelayMs` (`saved()`
 *   writes them at once and resolves once they are recorded). The Rule C
 *   deadline is not kept: a restarted browser has none until its first answer.
 */

import { FencedError, InvalidInputError } from "../core/errors";
import { isTerminal } from "../core/records";
import type { Replication } from "../core/replication";
import { estimateSize } from "../core/validate";
import { changedHomeError, LeaseLapsedError } from "./errors";
import type { AdoptedOutbox, OutboxLog, OutboxProgress, SavedOutbox } from "./outbox-log";
import {
  DEFAULT_LEASE_MS,
  DEFAULT_OUTBOX_BYTES,
  leaseClock,
  leaseDeadline,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  type ShippedEntry,
} from "./protocol";

/** How long acknowledgements wait to be recorded together (`OutboxOptions.saveDelayMs`). */
const DEFAULT_SAVE_DELAY_MS = 250;

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
  /** The fiber's `createdAt`, once known (its create entry, or its head in the store). */
  createdAt?: number;
  /**
   * Epochs this home left (for the edge, or another worker's newer one), with the position the
   * arbiter held of each when it left: an event's sender asking about one of them learns whether
   * its position made it (`acknowledged`).
   */
  left?: Map<number, number>;
  /**
   * For a fiber this outbox created, until the arbiter's first answer: the end (this worker's
   * clock) of the lease that answer would have granted, counted from the create.
   */
  provisionalUntil?: number;
  /**
   * Until the arbiter's first answer: lapses the fiber a lease after its create (see `leased`), or
   * at the deadline of the lease a come-home granted (`adopt`).
   */
  provisional?: ReturnType<typeof setTimeout>;
  waiters: Waiter[];
  room: Array<() => void>;
}

/** Options of `new Outbox`. */
export interface OutboxOptions {
  /** Bytes of unacknowledged entries per fiber past which its commits wait (default 4 MiB). */
  maxBytesPerFiber?: number;
  /**
   * The browser's clock, for Rule C (default a `leaseClock()` of its own: the wall clock, which
   * being set back cannot slow down). Deadlines are kept on it and never stored.
   */
  clock?: () => number;
  /**
   * The lease the arbiter grants (default 30 s): before its first answer, a fiber this outbox
   * created is taken for leased up to a lease after its create, as the arbiter's lease cannot
   * have started before that create existed.
   */
  leaseMs?: number;
  /**
   * Where a failure to record an acknowledgement or a fence goes (default `console.error`). Nothing
   * is lost by one: the positions are sent again (the arbiter ignores them), a fence learnt again.
   */
  onError?(error: unknown): void;
  /**
   * How long acknowledgements wait before the store records them, folded into one transaction
   * (default 250 ms; fences and `saved()` do not wait). A replicated fiber stepping fast would
   * otherwise get a transaction of acknowledgements between every two of its commits, on the
   * same object stores. What a crash loses of them only sends those positions again, which the
   * arbiter ignores.
   */
  saveDelayMs?: number;
}

/** The replication state of every replicated fiber of one browser store. */
export class Outbox implements Replication {
  readonly #fibers = new Map<string, FiberLog>();
  readonly #maxBytes: number;
  readonly #clock: () => number;
  readonly #listeners = new Set<(fiberId: string) => void>();
  readonly #appendListeners = new Set<(fiberId: string) => void>();
  readonly #discardListeners = new Set<(fiberId: string) => void>();
  readonly #lapseListeners = new Set<(fiberId: string, reason: Error) => void>();
  readonly #report: (error: unknown) => void;
  /** The store that keeps this outbox (`open`), or none: in memory only. */
  #log: OutboxLog | undefined;
  /** Acknowledgements and fences not yet handed to `#log`, by fiber. */
  readonly #unsaved = new Map<string, OutboxProgress>();
  #saving: Promise<void> | undefined;
  /** Something in `#unsaved` must not wait for the timer (a fence, `saved()`). */
  #urgent = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #saveDelayMs: number;
  readonly #leaseMs: number;
  /** The longest lease the arbiter was seen to grant (`noteGranted`), once one was. */
  #granted: number | undefined;
  /** Reads of a fiber's outbox from the store under way (`resync`). */
  readonly #resyncs = new Map<string, Promise<boolean>>();

  constructor(options: OutboxOptions = {}) {
    this.#maxBytes = options.maxBytesPerFiber ?? DEFAULT_OUTBOX_BYTES;
    this.#saveDelayMs = options.saveDelayMs ?? DEFAULT_SAVE_DELAY_MS;
    this.#clock = options.clock ?? leaseClock();
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.#report =
      options.onError ?? ((error) => console.error("[fiberline/continuity] recording the outbox:", error));
  }

  /**
   * The outbox `log` keeps (an `IdbStore`), as its last run left it: every replicated fiber with
   * its unacknowledged entries, acknowledged position and home (`away` stays away). Open it
   * before the runtime recovers, and give `ReplicatingStore` the same store.
   *
   * @example
   * const store = new IdbStore();
   * const outbox = await Outbox.open(store);
   * const replicating = new ReplicatingStore(store, { outbox, home, replicates });
   */
  static async open(log: OutboxLog, options: OutboxOptions = {}): Promise<Outbox> {
    const outbox = new Outbox(options);
    outbox.#log = log;
    for (const saved of await log.loadOutbox()) outbox.#fibers.set(saved.fiberId, outbox.#restore(saved));
    return outbox;
  }

  /**
   * Now, on the clock this outbox keeps its deadlines on (`OutboxOptions.clock`): what every
   * `mayWrite`, `leased` and deadline of it must be compared with.
   */
  now(): number {
    return this.#clock();
  }

  /** Whether a store keeps this outbox (it was made with `open`). */
  get persisted(): boolean {
    return this.#log !== undefined;
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
    // A report that did not fit this outbox's view is being checked against the store: decide
    // on what it finds.
    const resync = this.#resyncs.get(fiberId);
    if (resync !== undefined) return resync.then(() => this.shipped(fiberId));
    const log = this.#fibers.get(fiberId);
    if (log === undefined) return Promise.resolve();
    if (log.where.status === "away") return Promise.reject(this.#awayError(fiberId, log));
    if (!this.mayWrite(fiberId, this.#clock())) return Promise.reject(new LeaseLapsedError(fiberId));
    return this.#wait(log, true);
  }

  /**
   * Resolves once position `pos` of `fiberId` (default: everything appended so far) is
   * acknowledged, however long that takes; rejects with `fenced` if the fiber moves away before
   * the replica holds it (it was dropped), or when `pos` counts in home `epoch` and the fiber is
   * in another one now (it came home under a new epoch meanwhile, and the copy brought up to the
   * replica for it dropped what the replica did not hold; `pos` of the new epoch is another entry).
   */
  acknowledged(fiberId: string, pos?: number, epoch?: number): Promise<void> {
    const resync = this.#resyncs.get(fiberId);
    if (resync !== undefined) return resync.then(() => this.acknowledged(fiberId, pos, epoch));
    const log = this.#fibers.get(fiberId);
    if (log !== undefined && epoch !== undefined && log.epoch !== epoch) {
      // Held by the arbiter before this home left that epoch: it is the replica's.
      const held = log.left?.get(epoch);
      if (pos !== undefined && held !== undefined && pos <= held) return Promise.resolve();
      return Promise.reject(
        new FencedError(
          "fenced",
          `Fiber ${fiberId} changed home epoch (${epoch} to ${log.epoch}) before position ${pos} was acknowledged: the edge may not hold what was written there.`,
        ),
      );
    }
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

  /** Calls `listener` when a fiber's unshipped entries are dropped for good (`fence`). */
  onDiscarded(listener: (fiberId: string) => void): () => void {
    this.#discardListeners.add(listener);
    return () => this.#discardListeners.delete(listener);
  }

  /** Calls `listener` when a fiber's lease here lapses (`lapse`); returns the unsubscribe. */
  onLapsed(listener: (fiberId: string, reason: Error) => void): () => void {
    this.#lapseListeners.add(listener);
    return () => this.#lapseListeners.delete(listener);
  }

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

  /**
   * Whether a step of `fiberId` may skip Rule A's wait (`awaitStart: false`) at `now`: this home
   * holds a lease the arbiter acknowledged to this outbox and that has not ended; or the arbiter
   * acknowledged nothing of the fiber yet and this outbox created it less than a lease ago (an
   * answer applying the create may have been lost, and the lease it granted started no earlier
   * than the create). Unlike `mayWrite`, a fiber with no answer since this outbox opened (a
   * worker restarted offline: deadlines are not persisted) waits: the edge may have taken over.
   */
  leased(fiberId: string, now: number): boolean {
    const log = this.#fibers.get(fiberId);
    if (log === undefined) return true;
    const { where } = log;
    if (where.status !== "home") return false;
    if (where.deadline !== undefined) return now < where.deadline;
    return log.acked === 0 && log.provisionalUntil !== undefined && now < log.provisionalUntil;
  }

  /** Resolves once `fiberId`'s outbox has room for another commit (undefined: it has room now). */
  room(fiberId: string): Promise<void> | undefined {
    const log = this.#fibers.get(fiberId);
    if (log === undefined || log.bytes < this.#maxBytes || log.where.status === "away") return undefined;
    return new Promise((resolve) => log.room.push(resolve));
  }

  /**
   * Appends the next entry of `fiberId` (its first one, a `create`, makes it replicated), for an
   * outbox in memory. An outbox a store keeps learns its entries through `appended` instead.
   */
  append(fiberId: string, body: EntryBody): number {
    if (this.#log !== undefined)
      throw new InvalidInputError(
        "invalid_argument",
        "Outbox.append is for an outbox in memory; this one is kept by its store, which writes each entry in the commit's transaction (pass the store to ReplicatingStore).",
      );
    const log = this.#fibers.get(fiberId) ?? this.#newLog(fiberId, 1);
    const entry = { ...body, pos: log.next } as ShippedEntry;
    this.#add(fiberId, log, entry);
    return entry.pos;
  }

  /**
   * The store wrote `entry` of `fiberId` at its position under `epoch`, in a transaction that
   * committed (`OutboxWrite.appended`). Entries are kept in position order whatever order they
   * are reported in (`batch` ships only a run without gaps); one for a fiber that moved away or
   * already held is ignored, and one of another epoch or an acknowledged position makes this
   * outbox read the fiber again from its store (`resync`).
   */
  appended(fiberId: string, epoch: number, entry: ShippedEntry): void {
    let log = this.#fibers.get(fiberId);
    // A create begins a fiber's outbox (the store numbered it 1 under a new head): one this outbox
    // still holds under the id is of a fiber collected since, by another worker of the origin
    // (an old and a new version share the database), which this one's memory missed.
    if (entry.type === "create" && log !== undefined) {
      const held = log.entries.find((item) => item.entry.pos === entry.pos)?.entry;
      if (held?.type !== "create" || held.record.createdAt !== entry.record.createdAt) {
        this.forget(fiberId);
        log = undefined;
      }
    }
    log ??= this.#newLog(fiberId, epoch);
    if (log.where.status === "away") return;
    if (log.epoch !== epoch || entry.pos <= log.acked) {
      // Not this outbox's view of the fiber: another worker wrote it since (see `resync`).
      void this.resync(fiberId);
      return;
    }
    if (log.entries.some((item) => item.entry.pos === entry.pos)) return;
    this.#add(fiberId, log, entry);
  }

  /**
   * Reads `fiberId`'s outbox again from the store that keeps it and takes in what another worker
   * of the origin wrote or had acknowledged since this one loaded it (an old and a new version of
   * the Service Worker share the database; each loads the outbox once): the entries it holds,
   * how far the arbiter acknowledged them, a fence. Called when an answer or a report does not
   * fit what this outbox holds, and by the shipper when the next position is missing; for a fiber
   * this outbox does not hold, it takes in the store's view when the store has one (another
   * worker created the fiber after this one loaded the outbox). A no-op for an outbox in memory.
   * A call joins a read of the fiber already under way, unless `fresh` (then it reads after it).
   * Never rejects: resolves with whether the store was read (a failed read is reported).
   */
  resync(fiberId: string, fresh = false): Promise<boolean> {
    const store = this.#log;
    if (store === undefined) return Promise.resolve(true);
    let pending = this.#resyncs.get(fiberId);
    // A read begun before the caller's own state (a lock it took) may miss what came since.
    if (fresh && pending !== undefined) return pending.then(() => this.resync(fiberId));
    if (pending === undefined) {
      pending = store
        .loadOutbox(fiberId)
        .then((all) => {
          this.#merge(
            fiberId,
            all.find((saved) => saved.fiberId === fiberId),
          );
          return true;
        })
        .catch((error: unknown) => {
          this.#report(error);
          return false;
        })
        .finally(() => this.#resyncs.delete(fiberId));
      this.#resyncs.set(fiberId, pending);
    }
    return pending;
  }

  /**
   * Takes in every fiber the store's outbox holds and this one does not: those another worker of
   * the origin made replicated after this one loaded the outbox, with what that worker wrote and
   * did not ship. A new version of the Service Worker calls it at its activation, once the old
   * version stopped taking requests: a fiber the old one created since and left with a backlog
   * (waiting, so no runner here claims it) is shipped from here, not left until the lease lapses
   * and the edge takes it over without that backlog. A no-op for an outbox in memory. Never
   * rejects (a failed read is reported).
   */
  learnAll(): Promise<void> {
    const store = this.#log;
    if (store === undefined) return Promise.resolve();
    return store
      .loadOutbox()
      .then((all) => {
        for (const saved of all) if (!this.#fibers.has(saved.fiberId)) this.#merge(saved.fiberId, saved);
      })
      .catch((error: unknown) => this.#report(error));
  }

  /** Takes `saved` (the store's view of `fiberId`) into what this outbox holds of it. */
  #merge(fiberId: string, saved: SavedOutbox | undefined): void {
    const log = this.#fibers.get(fiberId);
    if (log === undefined) {
      // Made replicated by another worker of the origin after this one loaded the outbox (it
      // created the fiber there): the store's view is this outbox's from now on, so Rules A and
      // B hold here too and the shipper here knows what is left to send.
      if (saved === undefined) return;
      this.#fibers.set(fiberId, this.#restore(saved));
      for (const listener of this.#listeners) listener(fiberId);
      for (const listener of this.#appendListeners) listener(fiberId);
      return;
    }
    if (
      saved !== undefined &&
      saved.createdAt !== undefined &&
      log.createdAt !== undefined &&
      saved.createdAt > log.createdAt
    ) {
      // Another worker of the origin collected the fiber this outbox holds and started a new one
      // under its id: the store's view replaces this one, whose positions (and what they say
      // was acknowledged) were the old fiber's numbering.
      this.#replace(
        fiberId,
        log,
        saved,
        `Fiber ${fiberId} was started again under its id in another worker; this run of the old one stops.`,
      );
      return;
    }
    if (log.where.status === "away") {
      // Came home to another worker of the origin (`adopt`) after the fence this view holds: the
      // store's view replaces this one (nothing waits here: an away fiber takes no writes).
      if (saved !== undefined && saved.away === undefined && saved.epoch > log.where.epoch)
        this.#replace(fiberId, log, saved, `Fiber ${fiberId} came back to this browser in another worker.`);
      return;
    }
    if (saved === undefined) {
      // Collected by another worker (its end was acknowledged there).
      if (log.ended && log.waiters.length === 0) this.forget(fiberId);
      return;
    }
    if (saved.epoch < log.epoch) return;
    if (saved.away !== undefined) {
      this.fence(fiberId, saved.away.epoch, saved.away.home, saved.epoch === log.epoch ? saved.acked : 0);
      return;
    }
    if (saved.epoch > log.epoch) {
      // The fiber came home to the other worker under a new epoch (`adopt`): the store's view
      // replaces this one. Positions waited on here were of the old epoch's numbering.
      this.#replace(
        fiberId,
        log,
        saved,
        `Fiber ${fiberId} came back to this browser under a new epoch in another worker; its run here stops and picks up again.`,
      );
      return;
    }
    const held = new Set(log.entries.map((item) => item.entry.pos));
    const missing = saved.entries.filter((entry) => entry.pos > log.acked && !held.has(entry.pos));
    for (const entry of missing) {
      const bytes = estimateSize(entry);
      log.entries.push({ entry, bytes });
      log.bytes += bytes;
      if (endsFiber(entry)) log.ended = true;
    }
    log.entries.sort((a, b) => a.entry.pos - b.entry.pos);
    log.next = Math.max(log.next, saved.next, saved.acked + 1);
    log.ended ||= saved.ended;
    this.#release(log, fiberId, saved.acked);
    if (saved.shippedSeq > log.shippedSeq) {
      // Readers here may see what the other worker had acknowledged (Rule B): tell them.
      log.shippedSeq = saved.shippedSeq;
      for (const listener of this.#listeners) listener(fiberId);
    }
    for (const listener of this.#appendListeners) listener(fiberId);
  }

  /** Puts the store's view `saved` in place of `log`; whoever waited on `log` is refused (`why`). */
  #replace(fiberId: string, log: FiberLog, saved: SavedOutbox, why: string): void {
    const fresh = this.#restore(saved);
    fresh.room = log.room;
    // The epochs the same fiber left (a fiber started again under the id has its own).
    if (!otherFiber(saved.createdAt, log.createdAt)) fresh.left = leftWith(log);
    // Of the same fiber when the store's head does not say (a newer createdAt replaces it above).
    if (fresh.createdAt === undefined && log.createdAt !== undefined) fresh.createdAt = log.createdAt;
    clearTimeout(log.provisional);
    this.#fibers.set(fiberId, fresh);
    const error = new FencedError("fenced", why);
    for (const w of log.waiters) w.reject(error);
    this.#freeRoom(fresh);
    // What this view held unshipped is not the history the store's view continues (the fiber
    // came home to another worker, which rebuilt its copy from the replica): chunks held for
    // live readers go before the new visible head could release them (as at a fence).
    for (const listener of this.#discardListeners) listener(fiberId);
    for (const listener of this.#listeners) listener(fiberId);
    for (const listener of this.#appendListeners) listener(fiberId);
  }

  #newLog(fiberId: string, epoch: number): FiberLog {
    const log: FiberLog = {
      epoch,
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
    return log;
  }

  #restore(saved: SavedOutbox): FiberLog {
    const entries = saved.entries.map((entry) => ({ entry, bytes: estimateSize(entry) }));
    return {
      epoch: saved.epoch,
      next: Math.max(saved.next, saved.acked + 1),
      entries,
      bytes: entries.reduce((sum, item) => sum + item.bytes, 0),
      acked: saved.acked,
      shippedSeq: saved.shippedSeq,
      where: saved.away === undefined ? { status: "home" } : { status: "away", ...saved.away },
      ended: saved.ended,
      ...(saved.createdAt === undefined ? {} : { createdAt: saved.createdAt }),
      waiters: [],
      room: [],
    };
  }

  /** Puts `entry` in its place (entries stay ascending by position) and wakes the shipper. */
  #add(fiberId: string, log: FiberLog, entry: ShippedEntry): void {
    if (entry.type === "create") {
      this.#armProvisional(fiberId, log);
      log.createdAt = entry.record.createdAt;
    }
    const bytes = estimateSize(entry);
    const last = log.entries[log.entries.length - 1];
    if (last === undefined || last.entry.pos < entry.pos) log.entries.push({ entry, bytes });
    else {
      const at = log.entries.findIndex((item) => item.entry.pos > entry.pos);
      log.entries.splice(at, 0, { entry, bytes });
    }
    log.next = Math.max(log.next, entry.pos + 1);
    log.bytes += bytes;
    if (endsFiber(entry)) log.ended = true;
    for (const listener of this.#appendListeners) listener(fiberId);
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
      // Only a run without gaps ships (an entry whose commit reported later waits for it).
      if (item.entry.pos !== log.acked + 1 + entries.length) break;
      entries.push(item.entry);
      bytes += item.bytes;
    }
    return { epoch: log.epoch, from: log.acked + 1, entries };
  }

  /**
   * Every entry of `fiberId` the arbiter has not acknowledged, in position order, gaps included
   * (`batch` stops at the first gap): for inspection, the simulator's among others.
   */
  pendingEntries(fiberId: string): readonly ShippedEntry[] {
    return (this.#fibers.get(fiberId)?.entries ?? []).map((item) => item.entry);
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

  /** The home epoch this outbox holds `fiberId` under (`undefined`: not replicated). */
  epoch(fiberId: string): number | undefined {
    return this.#fibers.get(fiberId)?.epoch;
  }

  /**
   * The arbiter granted a lease of `leaseMs` (what an `ok` answer says remains of it: at most the
   * edge's `continuity.leaseMs`). A fiber created from now on holds, before its own first answer,
   * no more than the longest lease seen: a configured `leaseMs` (the host's `edge.leaseMs`)
   * longer than the edge's would let it write past the arbiter's lease. (Not reported: what an
   * answer says remains is less than the edge's lease by however long the arbiter took.)
   */
  noteGranted(leaseMs: number): void {
    if (leaseMs > 0) this.#granted = Math.max(this.#granted ?? 0, leaseMs);
  }

  /**
   * The arbiter holds every position up to `appliedPos`: lets them go, releases the step starts
   * and chunks that waited on them, and (with `deadline`) renews the lease (Rule C).
   */
  acknowledge(fiberId: string, appliedPos: number, deadline?: number, resynced = false): void {
    const log = this.#fibers.get(fiberId);
    if (log === undefined || log.where.status === "away") return;
    if (appliedPos >= log.next && !resynced && this.#log !== undefined) {
      // Another worker of the origin may have written and shipped positions this one never held.
      void this.resync(fiberId).then(() => this.acknowledge(fiberId, appliedPos, deadline, true));
      return;
    }
    if (appliedPos >= log.next) {
      // Positions this outbox never appended: the answer is not about this fiber (an arbiter
      // that took a new fiber under a collected one's id for the old one). Releasing on it would
      // let steps run and chunks out that the replica does not hold.
      this.#report(
        new Error(
          `The edge acknowledged position ${appliedPos} of fiber ${fiberId}, past the last one sent (${log.next - 1}); ignored.`,
        ),
      );
      return;
    }
    if (deadline !== undefined && (log.where.deadline === undefined || deadline > log.where.deadline))
      log.where = { status: "home", deadline };
    // Rule C: a step start acknowledged after the lease ended does not run.
    if (!this.mayWrite(fiberId, this.#clock())) this.lapse(fiberId);
    const before = log.acked;
    this.#release(log, fiberId, appliedPos);
    if (log.acked > before)
      this.#save({ fiberId, epoch: log.epoch, acked: log.acked, shippedSeq: log.shippedSeq });
  }

  /**
   * Resolves once every acknowledgement and fence so far is recorded by the store that keeps this
   * outbox (at once for an outbox in memory); acknowledgements waiting for `saveDelayMs` are
   * written now. A failed write is reported, not rejected.
   */
  saved(): Promise<void> {
    if (this.#unsaved.size === 0) return this.#saving ?? Promise.resolve();
    this.#urgent = true;
    return this.#drain();
  }

  /**
   * Hands `progress` to the store, folded with what is still waiting: at once when `urgent` (a
   * fence), else within `saveDelayMs`; one transaction at a time.
   */
  #save(progress: OutboxProgress, urgent = false): void {
    if (this.#log === undefined) return;
    const waiting = this.#unsaved.get(progress.fiberId);
    this.#unsaved.set(
      progress.fiberId,
      waiting === undefined || waiting.epoch !== progress.epoch
        ? progress
        : {
            ...progress,
            acked: Math.max(waiting.acked, progress.acked),
            shippedSeq: Math.max(waiting.shippedSeq, progress.shippedSeq),
            away: progress.away ?? waiting.away,
          },
    );
    if (urgent || this.#saveDelayMs <= 0) {
      this.#urgent = true;
      void this.#drain();
    } else if (this.#saving === undefined) this.#arm();
  }

  #arm(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      void this.#drain();
    }, this.#saveDelayMs);
  }

  /**
   * Writes what `#unsaved` holds, and goes on while something urgent arrived meanwhile; what
   * arrives otherwise waits for the next timer. Resolves once this drain is done.
   */
  #drain(): Promise<void> {
    const log = this.#log;
    if (log === undefined) return Promise.resolve();
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#saving !== undefined) return this.#saving;
    const drain = async (): Promise<void> => {
      while (this.#unsaved.size > 0) {
        this.#urgent = false;
        const batch = [...this.#unsaved.values()];
        this.#unsaved.clear();
        await log.saveOutbox(batch).catch((error: unknown) => this.#report(error));
        if (!this.#urgent) break;
      }
      // In the same turn as the last look at `#unsaved`: a later `#save` starts a new drain.
      this.#saving = undefined;
      if (this.#unsaved.size > 0) this.#arm();
    };
    this.#saving = drain();
    return this.#saving;
  }

  /**
   * A fiber created here holds, until the arbiter's first answer, the lease that answer would have
   * granted (`leased`): a lease after its create, at most. If no answer came by then (it may have
   * been lost, the link cut), the fiber lapses as at any deadline: a step in progress stops.
   */
  #armProvisional(fiberId: string, log: FiberLog): void {
    // No longer than the arbiter was seen to grant: a configured lease longer than the edge's
    // would let this home write past the arbiter's lease before its first answer.
    const until = leaseDeadline(this.#clock(), Math.min(this.#leaseMs, this.#granted ?? this.#leaseMs));
    log.provisionalUntil = until;
    clearTimeout(log.provisional);
    log.provisional = setTimeout(
      () => {
        log.provisional = undefined;
        if (log.acked === 0 && log.where.status === "home" && log.where.deadline === undefined)
          this.lapse(fiberId);
      },
      Math.max(0, until - this.#clock()),
    );
  }

  /** Lets positions up to `appliedPos` go and answers whoever waited on them. */
  #release(log: FiberLog, fiberId: string, appliedPos: number): void {
    if (appliedPos <= log.acked) return;
    clearTimeout(log.provisional); // answered: the lease is the arbiter's from now on
    log.provisional = undefined;
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
    // Recorded, a restarted browser keeps the fiber away instead of running it again.
    this.#save(
      { fiberId, epoch: log.epoch, acked: log.acked, shippedSeq: log.shippedSeq, away: { epoch, home } },
      true,
    );
    log.entries = [];
    log.bytes = 0;
    for (const w of log.waiters.splice(0)) w.reject(error);
    this.#freeRoom(log);
    for (const listener of this.#discardListeners) listener(fiberId);
  }

  /**
   * The arbiter handed `fiberId` back to this home (`comeHome`) under `epoch`, holding its
   * history up to position `acked` and chunk `shippedSeq`: it runs here again from now on, with
   * its next entry at `acked + 1` and its lease until `deadline` (Rule C). Whatever this outbox
   * held of the fiber before (an older epoch, away) is gone. Resolves once the store that keeps
   * this outbox recorded it: before that, a restart would still find the fiber away, so the
   * caller runs nothing of it until then.
   */
  async adopt(head: AdoptedOutbox & { deadline: number }): Promise<void> {
    const { fiberId, epoch, acked, shippedSeq, deadline } = head;
    // The same grant adopted again (an answer asked for twice): the first adoption stands, and
    // what this home wrote under it since must not be numbered again.
    const current = this.#fibers.get(fiberId);
    if (current !== undefined && current.epoch === epoch && current.where.status === "home") return;
    const createdAt = head.createdAt ?? current?.createdAt;
    await this.#log?.adoptOutbox({
      fiberId,
      epoch,
      acked,
      shippedSeq,
      ...(createdAt === undefined ? {} : { createdAt }),
    });
    this.#unsaved.delete(fiberId);
    const old = this.#fibers.get(fiberId);
    const log: FiberLog = {
      epoch,
      next: acked + 1,
      entries: [],
      bytes: 0,
      acked,
      shippedSeq,
      where: { status: "home", deadline },
      ended: false,
      waiters: [],
      room: old?.room ?? [],
      ...(createdAt === undefined ? {} : { createdAt }),
      // The epochs the same fiber left (not those of an earlier fiber under the id).
      ...(old === undefined || otherFiber(head.createdAt, old.createdAt) ? {} : { left: leftWith(old) }),
    };
    clearTimeout(old?.provisional);
    this.#fibers.set(fiberId, log);
    // Rule C from the grant on: until the shipper's first answer arms the next deadline, this
    // timer lapses the fiber at the granted one (a step in progress stops), as the provisional
    // lease of a create does.
    this.#lapseAtGrant(fiberId, log, deadline);
    for (const w of old?.waiters ?? []) w.reject(this.#awayError(fiberId, old as FiberLog));
    this.#freeRoom(log);
    // Chunks held for live readers under an older view are not this epoch's history.
    if (old !== undefined) for (const listener of this.#discardListeners) listener(fiberId);
    for (const listener of this.#listeners) listener(fiberId);
  }

  /**
   * Lapses `log`'s fiber at `deadline` unless an answer moved the deadline or the fiber moved
   * first. A timer may fire a little before the clock reaches its deadline (Node's by a
   * millisecond, now and then): it then waits out the rest instead of never lapsing.
   */
  #lapseAtGrant(fiberId: string, log: FiberLog, deadline: number): void {
    log.provisional = setTimeout(
      () => {
        log.provisional = undefined;
        const where = log.where;
        if (this.#fibers.get(fiberId) !== log || where.status !== "home" || where.deadline === undefined)
          return;
        if (where.deadline <= this.#clock()) this.lapse(fiberId);
        else if (where.deadline === deadline) this.#lapseAtGrant(fiberId, log, deadline);
      },
      Math.max(0, deadline - this.#clock()),
    );
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
    // A step in progress stops too: past the lease the edge may run it again.
    for (const listener of this.#lapseListeners) listener(fiberId, error);
  }

  /** Forgets a fiber the store deleted (its retention passed, everything acknowledged). */
  forget(fiberId: string): void {
    clearTimeout(this.#fibers.get(fiberId)?.provisional);
    this.#fibers.delete(fiberId);
    this.#unsaved.delete(fiberId);
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

/** Whether `entry` ends its fiber (a terminal commit, or a create of an ended fiber). */
function endsFiber(entry: ShippedEntry): boolean {
  return (
    (entry.type === "commit" &&
      entry.group.fiber?.status !== undefined &&
      isTerminal(entry.group.fiber.status)) ||
    (entry.type === "create" && isTerminal(entry.record.status))
  );
}

function chunkSeqs(entry: ShippedEntry): number[] {
  if (entry.type === "create") return entry.chunks.map((c) => c.seq);
  if (entry.type === "commit") return (entry.group.chunks ?? []).map((c) => c.seq);
  return [];
}

/**
 * Whether two `createdAt`s known for one fiber id are of two fibers (one collected, another
 * started under the id); unknown on either side is taken for the same fiber.
 */
function otherFiber(a: number | undefined, b: number | undefined): boolean {
  return a !== undefined && b !== undefined && a !== b;
}

/** The epochs `log` had left, and its own with what the arbiter held of it: it is being left now. */
function leftWith(log: FiberLog): Map<number, number> {
  const left = new Map(log.left);
  left.set(log.epoch, Math.max(left.get(log.epoch) ?? 0, log.acked));
  return left;
}
