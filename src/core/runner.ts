/**
 * The runtime's runner: the fibers it executes and how it picks fibers up. A fiber is taken under
 * its lock and a claim on its record, planned by `planRun`, and run as a `FiberRun` whose lease is
 * renewed while it runs. A suspended fiber gets a wake timer; one held by another context is
 * picked up once that context releases its lock or its lease expires. Used by `Runtime`, whose
 * public methods check their arguments and hand over here.
 */

import type { FiberDefinition } from "./define";
import {
  CancelledError,
  FencedError,
  FiberlineError,
  FiberNotFoundError,
  serializeError,
  UnknownFiberError,
} from "./errors";
import { endGroup } from "./fiber-end";
import { FiberRun, type RunHost, type RunOutcome, type RunState } from "./fiber-run";
import type { FiberLocks } from "./locks";
import { type FiberRecord, type FiberStatus, type InboxEvent, isTerminal } from "./records";
import { type PickupReason, planRun } from "./recovery-plan";
import type { RecoverySummary } from "./runtime-types";

/** What a runner is made of. */
export interface RunnerOptions {
  /** What each run gets from the runtime; the runner adds `onRunEnded`. */
  run: Omit<RunHost, "onRunEnded">;
  locks: FiberLocks;
  /** This runner's identity in fiber records. */
  runnerId: string;
  definitions: ReadonlyMap<string, FiberDefinition>;
  /** How long a claim holds without renewal. */
  leaseMs: number;
  /** Recoveries in a row without progress before a fiber fails with `recovery_exhausted`. */
  maxRecoveries: number;
  /** Called when a fiber's run leaves this runner (ended, suspended, fenced, stopped). */
  onLeave?(id: string): void;
}

/** The fibers one runtime executes, and their wake timers, lock watches and lease renewal. */
export class Runner {
  readonly #host: RunHost;
  readonly #locks: FiberLocks;
  readonly #runnerId: string;
  readonly #definitions: ReadonlyMap<string, FiberDefinition>;
  readonly #leaseMs: number;
  readonly #maxRecoveries: number;
  readonly #onLeave: (id: string) => void;
  readonly #active = new Map<string, { run: FiberRun; release: () => void }>();
  readonly #starting = new Map<string, InboxEvent[]>();
  readonly #wakeTimers = new Map<string, ReturnType<typeof setTimeout>>();
  readonly #lockWatches = new Set<string>();
  /** Per fiber, the tail of its serialised pick-ups and cancels (see `#exclusive`). */
  readonly #turns = new Map<string, Promise<unknown>>();
  /**
   * Per fiber, a run that ended while one of its step functions still executes: settles when
   * that function returns (or after a lease period), once the run's lock is released. Pick-ups
   * and starts wait for it before they take their turn, so no run executes a step beside the old
   * one; a cancel runs no step, so neither it nor anything queued behind it waits.
   */
  readonly #settling = new Map<string, { done: Promise<void>; createdAt: number }>();
  /** Per fiber, how many pick-ups in a row failed on a store error (the backoff exponent). */
  readonly #failures = new Map<string, number>();
  #leaseTimer: ReturnType<typeof setInterval> | null = null;
  #closed = false;

  constructor(options: RunnerOptions) {
    this.#host = { ...options.run, onRunEnded: (run, outcome) => this.#runEnded(run, outcome) };
    this.#locks = options.locks;
    this.#runnerId = options.runnerId;
    this.#definitions = options.definitions;
    this.#leaseMs = options.leaseMs;
    this.#maxRecoveries = options.maxRecoveries;
    this.#onLeave = options.onLeave ?? (() => {});
  }

  /** How many fibers are executing here right now. */
  get activeCount(): number {
    return this.#active.size;
  }

  /** Whether fiber `id` is executing here right now. */
  isActive(id: string): boolean {
    return this.#active.has(id);
  }

  /**
   * Takes fiber `id`'s lock ahead of its creation, for an id nobody else can know yet (one `start`
   * has just generated): the lock is granted while the record is being written instead of after.
   * Hand the result to `runNew`, or release it if the fiber is not created.
   */
  lockAhead(id: string): Promise<(() => void) | null> {
    return this.#locks.acquire(id);
  }

  /**
   * Runs a fiber `start` has just created, unless another context holds its lock; `lock` is the
   * lock `lockAhead` requested for it, if any.
   */
  runNew(def: FiberDefinition, record: FiberRecord, lock?: Promise<(() => void) | null>): Promise<void> {
    return this.#afterSettling(record.id, () =>
      this.#exclusive(record.id, async () => {
        const release = await (lock ?? this.#locks.acquire(record.id));
        if (!release) return;
        if (this.#closed) {
          // The runtime was closed while the fiber was being created: it is left as a crash would
          // leave it, for the next recover() (of this context or another) to run.
          release();
          return;
        }
        this.#launch(def, { record, journal: [], snapshot: undefined, inbox: [], recovery: null }, release);
      }),
    );
  }

  /** Hands a stored event to the fiber's run (or the run being started), or wakes a waiting fiber. */
  async deliver(id: string, event: InboxEvent): Promise<void> {
    const active = this.#active.get(id);
    if (active) active.run.deliver(event);
    else if (this.#starting.has(id)) this.#starting.get(id)?.push(event);
    else {
      // Read the record now, not before the event was stored: a run that suspended in between
      // left this runtime already (it leaves only once its suspension is durable), and only the
      // fresh record says it is waiting. A stale "running" here lost the wake-up.
      const current = await this.#host.store.getFiber(id);
      if (current?.status !== "waiting") return;
      const resumed = this.#resume(id, "event");
      // The event is stored: its sender need not wait a lease period for a step function that
      // ignores its signal; the pick-up follows once that function returns.
      if (!this.#settling.has(id)) await resumed;
    }
  }

  /**
   * Cancels fiber `id` (see `Runtime.cancel`) and returns its status afterwards: `cancelled`, or
   * the status it had already ended with. Serialised with the fiber's pick-ups, so a cancel never
   * races a wake-up: it either cancels the run that wake-up launched or ends the fiber before it.
   */
  cancel(id: string, reason: string): Promise<FiberStatus> {
    return this.#exclusive(id, async () => {
      const active = this.#active.get(id);
      if (active) {
        const status = await active.run.cancel(reason);
        if (status !== undefined) return status;
        // The run was suspending or ending, or its end write failed: decide on the record.
      }
      for (let attempt = 1; ; attempt++) {
        const record = await this.#host.store.getFiber(id);
        if (!record) throw new FiberNotFoundError(id);
        if (isTerminal(record.status)) return record.status;
        const claim = await this.#host.store.claimFiber(id, {
          owner: this.#runnerId,
          now: this.#host.now(),
          leaseMs: this.#leaseMs,
          force: true,
        });
        if (claim.status === "missing") throw new FiberNotFoundError(id);
        if (claim.status === "held") {
          // It ended meanwhile (another cancel, its run's end): that is the answer.
          if (isTerminal(claim.record.status)) return claim.record.status;
          // Even a forced claim is refused when another home runs the fiber (continuity): the
          // cancel did not happen, and answering the fiber's status would say it had nothing to do.
          const home = claim.record.home?.home;
          const error = new FencedError(
            "fenced",
            `Fiber ${id} runs ${home === undefined ? "under another runner" : `at ${home}`} right now and was not cancelled: cancel it where it runs, or again once it has moved.`,
          );
          if (claim.record.home !== undefined) {
            (error as { data?: unknown }).data = {
              epoch: claim.record.home.epoch,
              home: claim.record.home.home,
            };
          }
          throw error;
        }
        this.#clearWake(id);
        try {
          await this.#endDirect(claim.record, "cancelled", new CancelledError(reason));
          return "cancelled";
        } catch (error) {
          // Another runtime claimed the fiber between this claim and its end (it was resuming
          // it): claim again, up to a few times, rather than leave it running uncancelled.
          if (error instanceof FencedError && attempt < CANCEL_ATTEMPTS) continue;
          // The claim moved the fiber here and cleared its wake-up: hand it back to the runner.
          if (!(error instanceof FencedError)) this.#retryLater(id, error);
          throw error;
        }
      }
    });
  }

  /**
   * Picks up the non-terminal fibers `recover()` found: interrupted ones and due ones (a timer,
   * or an event they wait for: see `dueForInbox`) resume now, the others get their wake-up
   * scheduled.
   * Fibers executing or being picked up here are left alone.
   */
  async pickUp(records: readonly FiberRecord[], now: number): Promise<Omit<RecoverySummary, "collected">> {
    const resumed: string[] = [];
    const scheduled: string[] = [];
    await Promise.all(
      records.map(async (record) => {
        if (this.#active.has(record.id) || this.#starting.has(record.id)) return;
        // Claimed by this very runner and still leased: `start` has just created it and is about
        // to run it (or a store error's retry will), so it is not interrupted.
        if (record.owner === this.#runnerId && (record.leaseUntil ?? 0) > now) return;
        if (record.status === "running") {
          resumed.push(record.id);
          await this.#resume(record.id, "recover");
          return;
        }
        // A waiting fiber with an event it waits for is due too: stores make it so when the
        // event is stored (`dueForEvent`) and when the fiber suspends after it (`dueForInbox`),
        // so no inbox is read here.
        if (record.wakeAt !== undefined && record.wakeAt <= now) {
          resumed.push(record.id);
          await this.#resume(record.id, "wake");
          return;
        }
        scheduled.push(record.id);
        if (record.wakeAt !== undefined) this.#scheduleWake(record.id, record.wakeAt);
      }),
    );
    return { resumed, scheduled };
  }

  /** Abandons every run as a crash would (see `Runtime.close`) and clears every timer. */
  /** Stops fiber `id`'s run here, if one runs, with `reason` (as a fenced write stops it). */
  stopRun(id: string, reason: Error): void {
    this.#active.get(id)?.run.stop(reason);
  }

  close(): void {
    this.#closed = true;
    for (const timer of this.#wakeTimers.values()) clearTimeout(timer);
    this.#wakeTimers.clear();
    if (this.#leaseTimer) clearInterval(this.#leaseTimer);
    for (const { run } of [...this.#active.values()]) {
      run.stop(
        new FiberlineError("cancelled", "The runtime was closed; the fiber resumes at the next recover()."),
      );
    }
  }

  #launch(def: FiberDefinition, state: RunState, release: () => void): void {
    const run = new FiberRun(this.#host, def, state);
    this.#active.set(run.id, { run, release });
    this.#ensureLeaseTimer();
    run.start();
  }

  /** Picks fiber `id` up now (or joins the pick-up already under way). */
  #resume(id: string, reason: PickupReason): Promise<void> {
    if (this.#closed || this.#active.has(id) || this.#starting.has(id)) return Promise.resolve();
    this.#starting.set(id, []);
    this.#clearWake(id);
    const gate = this.#settling.get(id);
    const pickUp = () => this.#exclusive(id, () => this.#pickUpNow(id, reason));
    if (gate === undefined) return pickUp();
    return gate.done.then(async () => {
      // While this wake-up waited, the fiber it was for may have been cancelled (a cancel does not
      // wait), collected and started again under its id: the new one runs from its start, and
      // this wake-up must not pick it up as interrupted. Which fiber: its `createdAt`.
      const record = await this.#host.store.getFiber(id).then(
        (r) => r ?? null,
        () => undefined, // unreadable: go on, the pick-up reads it again
      );
      if (record === null || (record !== undefined && record.createdAt !== gate.createdAt)) {
        const pending = this.#starting.get(id) ?? [];
        this.#starting.delete(id);
        for (const event of pending) this.#active.get(id)?.run.deliver(event);
        return;
      }
      await pickUp();
    });
  }

  /** Runs `work` once fiber `id` has no step function of an ended run still executing. */
  #afterSettling<T>(id: string, work: () => Promise<T>): Promise<T> {
    const gate = this.#settling.get(id);
    return gate === undefined ? work() : gate.done.then(work);
  }

  async #pickUpNow(id: string, reason: PickupReason): Promise<void> {
    let release: (() => void) | null = null;
    try {
      if (this.#closed || this.#active.has(id)) return;
      release = await this.#locks.acquire(id);
      if (!release) {
        // A live runner elsewhere holds it: pick the fiber up once that runner lets go.
        this.#watchLock(id);
        return;
      }
      const now = this.#host.now();
      const claim = await this.#host.store.claimFiber(id, {
        owner: this.#runnerId,
        now,
        leaseMs: this.#leaseMs,
        force: this.#locks.exclusive,
      });
      if (claim.status === "missing") return;
      if (claim.status === "held") {
        // Another runner's lease is still valid: try again once it would have expired.
        if (!isTerminal(claim.record.status)) this.#scheduleWake(id, (claim.record.leaseUntil ?? now) + 1);
        return;
      }
      const record = claim.record;
      const def = this.#definitions.get(record.name);
      if (!def) {
        await this.#endDirect(record, "failed", new UnknownFiberError(record.name));
        return;
      }
      const store = this.#host.store;
      const [journal, snapshotRecord, inbox] = await Promise.all([
        store.readJournal(id),
        store.readSnapshot(id),
        store.readInbox(id),
      ]);
      const claimed = {
        record,
        journal,
        snapshot: snapshotRecord?.value,
        snapshotAt: snapshotRecord?.at,
        snapshotOrdinal: snapshotRecord?.ordinal,
        snapshotResume: snapshotRecord?.resume,
        inbox,
      };
      const plan = await planRun(def, claimed, reason, this.#host.now(), this.#maxRecoveries);
      if (plan.kind === "end") {
        await this.#endDirect(record, "failed", plan.error);
        return;
      }
      // The run replays while the pick-up's write (`fiber.recovered`, the claim's facts) is in
      // flight: a replay has no effect, every write of the run queues behind that one (FIFO) and
      // is refused if it failed, a step runs only once its own `started` write is durable, and
      // one that runs beside that write (`awaitStart: false`) waits for the pick-up's. So nothing
      // happens live before the pick-up is durable, and a failure stops the run as a failed
      // write of its own would (reported and retried, or fenced). A restart from scratch waits
      // for its write: until the old journal is cleared, the values the new run draws (`now`,
      // `uuid`...) would sit beside other durable values at the same positions.
      const written = this.#host.writer.write(plan.group);
      if (plan.group.clearJournal) await written;
      const pending = this.#starting.get(id) ?? [];
      this.#launch(def, { ...plan.state, pickedUp: written }, release);
      release = null;
      const active = this.#active.get(id);
      written.catch((error: unknown) => active?.run.stop(error));
      // Events stored while the fiber was being picked up; the run ignores those its inbox read had.
      for (const event of pending) active?.run.deliver(event);
    } catch (error) {
      if (!(error instanceof FencedError)) {
        report(error, `resuming fiber ${id}`);
        this.#retryLater(id, error);
      }
    } finally {
      this.#starting.delete(id);
      release?.();
    }
  }

  /**
   * Runs `work` for fiber `id` after every earlier pick-up, start or cancel of that fiber here
   * has settled: one at a time per fiber, so they never interleave their claims and writes.
   */
  #exclusive<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#turns.get(id) ?? Promise.resolve();
    const turn = previous.then(work, work);
    const tail = turn.then(
      () => undefined,
      () => undefined,
    );
    this.#turns.set(id, tail);
    void tail.then(() => {
      if (this.#turns.get(id) === tail) this.#turns.delete(id);
    });
    return turn;
  }

  /**
   * A run or pick-up of fiber `id` failed on a store error (not a fence): nothing after the
   * failed write was committed, so the fiber is resumed from its journal, after a backoff that
   * doubles with each failure in a row (up to the lease period).
   */
  #retryLater(id: string, error: unknown): void {
    if (this.#closed) return;
    if (error instanceof FiberlineError && error.code === "store_closed") return;
    const failures = (this.#failures.get(id) ?? 0) + 1;
    this.#failures.set(id, failures);
    const delay = Math.min(RETRY_BASE_MS * 2 ** (failures - 1), Math.max(RETRY_BASE_MS, this.#leaseMs));
    this.#scheduleWake(id, this.#host.now() + delay);
  }

  /** Ends a fiber that has no run here (cancel, failed recovery), under the generation it was claimed with. */
  async #endDirect(record: FiberRecord, status: "failed" | "cancelled", error: unknown): Promise<void> {
    const fiber = { fiberId: record.id, generation: record.generation, seq: record.streamHead + 1 };
    await this.#host.writer.write(
      endGroup(fiber, status, { error: serializeError(error) }, this.#host.now()),
    );
  }

  #runEnded(run: FiberRun, outcome: RunOutcome): void {
    const entry = this.#active.get(run.id);
    if (entry?.run === run) {
      this.#active.delete(run.id);
      this.#onLeave(run.id);
      const settled = run.stepsSettled();
      if (settled === undefined) entry.release();
      else {
        // A step function of the run is still executing (an attempt that timed out, or a run
        // stopped by a fence or a store error): keep the fiber's lock, and this runtime's next
        // pick-up of it, until it returns, or for a lease period at most, so no other runner
        // executes the same step beside it.
        const cap = new Promise<void>((resolve) => unref(setTimeout(resolve, this.#leaseMs)));
        const done = Promise.race([settled, cap]).then(() => entry.release());
        const gate = { done, createdAt: run.createdAt };
        this.#settling.set(run.id, gate);
        void done.then(() => {
          if (this.#settling.get(run.id) === gate) this.#settling.delete(run.id);
        });
      }
    }
    if (this.#closed) return;
    if (outcome.kind === "suspended") {
      this.#failures.delete(run.id);
      if (outcome.wakeNow) void this.#resume(run.id, "event");
      else {
        if (outcome.wakeAt !== undefined) this.#scheduleWake(run.id, outcome.wakeAt);
        if (outcome.waitingFor.length > 0) void this.#wakeIfSent(run.id, outcome.wakeAt);
      }
    } else if (outcome.kind === "finished") {
      this.#failures.delete(run.id);
    } else if (!(outcome.error instanceof FencedError)) {
      report(outcome.error, `running fiber ${run.id}`);
      this.#retryLater(run.id, outcome.error);
    } else if (outcome.error.code === "lease_lapsed") {
      // Continuity's Rule C: not a move. Once the edge answers again the fiber runs here again,
      // so look again soon (the pick-up waits while the lease is still lapsed), not at the sweep.
      this.#retryLater(run.id, outcome.error);
    }
  }

  /**
   * Resumes a fiber that has just suspended waiting for events if one of them is already
   * buffered. Another runtime on the same store (an old and a new Service Worker) may have stored
   * it while this run was executing: that runtime saw the fiber running and left the event to
   * the run, which never heard of it. The store made the record due when it wrote the suspension
   * (`dueForInbox`), earlier than the run's own `wakeAt` (if any): read after the suspension is
   * durable, the record says so, without this runtime reading the inbox. An event stored later
   * is found by its sender, which then sees the fiber waiting.
   */
  async #wakeIfSent(id: string, ownWakeAt: number | undefined): Promise<void> {
    try {
      const record = await this.#host.store.getFiber(id);
      const due = record?.status === "waiting" ? record.wakeAt : undefined;
      if (due !== undefined && (ownWakeAt === undefined || due < ownWakeAt)) await this.#resume(id, "event");
    } catch (error) {
      report(error, `looking for events sent to fiber ${id}`);
      this.#retryLater(id, error);
    }
  }

  /** Once another context releases the fiber's lock, resumes the fiber if it was left unfinished. */
  #watchLock(id: string): void {
    const locks = this.#locks;
    if (!locks.released || this.#lockWatches.has(id) || this.#closed) return;
    this.#lockWatches.add(id);
    locks
      .released(id)
      .then(async () => {
        this.#lockWatches.delete(id);
        if (this.#closed || this.#active.has(id)) return;
        const record = await this.#host.store.getFiber(id);
        if (!record || isTerminal(record.status)) return;
        // As at recover(): an interrupted run resumes, a due timer fires, a waiting fiber whose
        // event is already buffered (stored while the other runner held the lock) wakes, and any
        // other wake-up is scheduled.
        await this.pickUp([record], this.#host.now());
      })
      .catch((error) => {
        this.#lockWatches.delete(id);
        report(error, `waiting for the lock of fiber ${id}`);
      });
  }

  #scheduleWake(id: string, at: number): void {
    this.#clearWake(id);
    const delay = Math.min(Math.max(0, at - this.#host.now()), 2_147_483_647);
    const timer = setTimeout(() => {
      this.#wakeTimers.delete(id);
      void this.#resume(id, "wake");
    }, delay);
    unref(timer);
    this.#wakeTimers.set(id, timer);
  }

  #clearWake(id: string): void {
    const timer = this.#wakeTimers.get(id);
    if (timer) {
      clearTimeout(timer);
      this.#wakeTimers.delete(id);
    }
  }

  #ensureLeaseTimer(): void {
    if (this.#leaseTimer) return;
    this.#leaseTimer = setInterval(
      () => {
        if (this.#active.size === 0) {
          if (this.#leaseTimer) clearInterval(this.#leaseTimer);
          this.#leaseTimer = null;
          return;
        }
        const leaseUntil = this.#host.now() + this.#leaseMs;
        for (const { run } of this.#active.values()) {
          const group = run.leaseGroup(leaseUntil);
          if (group) this.#host.writer.write(group).catch((error) => run.stop(error));
        }
      },
      // Three renewals per lease; a floor keeps a tiny test lease from spinning.
      Math.max(10, Math.floor(this.#leaseMs / 3)),
    );
    unref(this.#leaseTimer);
  }
}

/** How many times a cancel claims a fiber that another runtime keeps claiming back. */
const CANCEL_ATTEMPTS = 5;

/** The first backoff before a fiber whose run hit a store error is resumed. */
const RETRY_BASE_MS = 100;

/** Logs a failure of background work that no caller awaits (a resume, a run, a collection). */
export function report(error: unknown, doing: string): void {
  console.error(`[fiberline] ${doing} failed:`, error);
}

/** Lets Node exit while the timer is pending; browsers have no such notion. */
export function unref(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}
