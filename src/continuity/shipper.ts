/**
 * `Shipper`: sends each replicated fiber's outbox to its arbiter, in order, one shipment in
 * flight per fiber, batched (256 positions or 256 KiB), and acts on the answers: an
 * acknowledgement lets positions go and renews the lease (Rule C's deadline is computed here, on
 * this side's clock, from when the shipment was sent); `out_of_order` resends from what the
 * arbiter holds; `fenced` marks the fiber away. A failed send is retried with exponential
 * backoff; a heartbeat keeps the lease of every fiber still running here. `send` and the clock
 * are injected, so the simulator and the tests drive it deterministically.
 */

import { OutOfOrderError } from "./errors";
import type { Outbox } from "./outbox";
import {
  leaseDeadline,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  type PushedEvent,
  type Shipment,
  type ShipmentAnswer,
} from "./protocol";

/** Options of `new Shipper`. */
export interface ShipperOptions {
  outbox: Outbox;
  /** This browser's home name. */
  home: string;
  /** Sends one shipment of `fiberId` and resolves with the answer; rejects when it did not get one. */
  send(fiberId: string, shipment: Shipment): Promise<ShipmentAnswer>;
  /** This side's clock, for Rule C (default the outbox's, `Outbox.now`). */
  clock?: () => number;
  /** How often a fiber still running here renews its lease with an empty shipment (default 10 s). */
  heartbeatMs?: number;
  /** Backoff of a failed send: the first wait, doubled per failure up to `maxMs` (250 ms, 10 s). */
  retry?: { initialMs?: number; maxMs?: number };
  /** Batch limits (default 256 positions, 256 KiB). */
  batch?: { entries?: number; bytes?: number };
  /**
   * Takes the events the arbiter pushed for `fiberId` (accepted at the edge while this browser
   * holds the fiber) and enqueues them here, each once, with its `eventId` (`enqueuePushedEvents`
   * in send-event.ts does it through the runtime). Calls for one fiber run one after another,
   * never two at once, and shipping does not wait for them: enqueueing may wait for room in a
   * full outbox, which only shipping makes. Without it, pushed events wait at the arbiter until
   * a takeover.
   */
  onEvents?(fiberId: string, events: PushedEvent[]): Promise<void> | void;
  /**
   * Cancels `fiberId` here (`runtime.cancel`): a cancel reached the arbiter while this browser
   * holds the fiber, and every answer carries it until a shipment ends the fiber. At most one
   * call per fiber is under way; a failed one (a fence, a store error) is counted
   * (`stats.cancelFailures`) and made again at the next answer. Without it, or if it keeps
   * failing, the arbiter stops renewing the lease a lease after the cancel arrived, and its
   * takeover carries the cancel out.
   */
  onCancel?(fiberId: string, reason: string): Promise<unknown>;
  /** Where the shipper reports what it cannot fix by retrying (default `console.error`). */
  onError?(error: unknown, fiberId: string): void;
}

/** What the shipper did, for tests and traces. */
export interface ShipperStats {
  shipments: number;
  failures: number;
  fenced: number;
  /** Answers whose pushed events `onEvents` failed to take (they are pushed again). */
  pushFailures: number;
  /** Forwarded cancels `onCancel` failed to carry out (the next answer brings them again). */
  cancelFailures: number;
}

/**
 * Ships one browser's outbox.
 *
 * Failure semantics: a shipment whose answer never came is sent again (the arbiter ignores
 * positions it holds); nothing leaves the outbox before the arbiter acknowledged it. A fiber
 * whose arbiter holds less than this side already let go (the replica was lost) stops shipping
 * and is reported with `out_of_order`.
 */
export class Shipper {
  readonly stats: ShipperStats = {
    shipments: 0,
    failures: 0,
    fenced: 0,
    pushFailures: 0,
    cancelFailures: 0,
  };
  readonly #outbox: Outbox;
  readonly #home: string;
  readonly #send: ShipperOptions["send"];
  readonly #clock: () => number;
  readonly #heartbeatMs: number;
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #limits: { entries: number; bytes: number };
  readonly #report: (error: unknown, fiberId: string) => void;
  readonly #onEvents: ShipperOptions["onEvents"];
  readonly #onCancel: ShipperOptions["onCancel"];
  /** Fibers whose forwarded cancel `onCancel` is carrying out right now. */
  readonly #cancelling = new Set<string>();
  /** Per fiber, the pushed events handed to `onEvents` already (they are pushed until shipped back). */
  readonly #handed = new Map<string, Set<string>>();
  /** Per fiber, the tail of its queued hand-overs to `onEvents`. */
  readonly #taking = new Map<string, Promise<void>>();
  readonly #inFlight = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #retryTimers = new Map<string, ReturnType<typeof setTimeout>>();
  readonly #deadlineTimers = new Map<string, ReturnType<typeof setTimeout>>();
  /** Fibers whose replica lost positions: shipping them cannot succeed. */
  readonly #broken = new Set<string>();
  readonly #unsubscribe: () => void;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #stopped = false;

  constructor(options: ShipperOptions) {
    this.#outbox = options.outbox;
    this.#home = options.home;
    this.#send = options.send;
    this.#clock = options.clock ?? (() => options.outbox.now());
    this.#heartbeatMs = options.heartbeatMs ?? 10_000;
    this.#initialMs = options.retry?.initialMs ?? 250;
    this.#maxMs = options.retry?.maxMs ?? 10_000;
    this.#limits = {
      entries: options.batch?.entries ?? MAX_BATCH_ENTRIES,
      bytes: options.batch?.bytes ?? MAX_BATCH_BYTES,
    };
    this.#report =
      options.onError ??
      ((error, id) => console.error(`[fiberline/continuity] shipping fiber ${id}:`, error));
    this.#onEvents = options.onEvents;
    this.#onCancel = options.onCancel;
    this.#unsubscribe = this.#outbox.onAppend((id) => this.kick(id));
  }

  /** Ships every replicated fiber now (a start, or the `online` event), and heartbeats from here. */
  start(): void {
    if (this.#stopped || this.#heartbeat !== undefined) return;
    this.#heartbeat = setInterval(() => this.#beat(), this.#heartbeatMs);
    this.#beat();
  }

  /** Stops shipping (the host goes away); what is in the outbox stays for the next shipper. */
  stop(): void {
    this.#stopped = true;
    this.#unsubscribe();
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    for (const timer of [...this.#retryTimers.values(), ...this.#deadlineTimers.values()])
      clearTimeout(timer);
    this.#retryTimers.clear();
    this.#deadlineTimers.clear();
  }

  /**
   * Whether shipping `fiberId` was given up: the edge holds less of it than it once acknowledged
   * (its replica lost positions, or was collected there), so no answer of it will come.
   */
  broken(fiberId: string): boolean {
    return this.#broken.has(fiberId);
  }

  /** Ships `fiberId`'s outbox unless a shipment or a retry of it is already under way. */
  kick(fiberId: string): void {
    if (this.#stopped || this.#inFlight.has(fiberId) || this.#retryTimers.has(fiberId)) return;
    if (this.#broken.has(fiberId) || this.#outbox.where(fiberId)?.status !== "home") return;
    void this.#ship(fiberId);
  }

  #beat(): void {
    for (const id of this.#outbox.fiberIds) if (!this.#outbox.settled(id)) this.kick(id);
  }

  async #ship(fiberId: string): Promise<void> {
    this.#inFlight.add(fiberId);
    let batch = this.#outbox.batch(fiberId, this.#limits);
    if (batch !== undefined && batch.entries.length === 0 && this.#outbox.persisted) {
      // With entries pending, the next position is missing here: another worker of the origin
      // wrote it (an old and a new version share the database). With none, this is a heartbeat,
      // and another worker may have written past what this one holds and stopped before shipping
      // it (a new version that died installing): nothing here would ever report it. Either way,
      // read the fiber's outbox again before shipping.
      await this.#outbox.resync(fiberId);
      batch = this.#outbox.batch(fiberId, this.#limits);
    }
    if (batch === undefined || this.#stopped) {
      this.#inFlight.delete(fiberId);
      return;
    }
    // What this shipment should move: the acknowledged position, if it carries pending entries.
    const acked = this.#outbox.acked(fiberId);
    const hadPending = this.#outbox.hasPending(fiberId);
    const sentAt = this.#clock();
    const shipment: Shipment = { home: this.#home, ...batch };
    this.stats.shipments++;
    let answer: ShipmentAnswer;
    try {
      answer = await this.#send(fiberId, shipment);
    } catch {
      this.#inFlight.delete(fiberId);
      this.stats.failures++;
      this.#retryLater(fiberId);
      return;
    }
    if (this.#stopped) {
      this.#inFlight.delete(fiberId);
      return;
    }
    if (!this.#answer(fiberId, answer, sentAt, batch.epoch)) {
      // Not an answer about what this outbox holds now: it is read again, then shipped.
      this.#inFlight.delete(fiberId);
      void this.#outbox.resync(fiberId).then(() => this.#retryLater(fiberId));
      return;
    }
    if (answer.status === "ok") {
      this.#takeLater(fiberId, answer.events ?? []);
      if (answer.cancel !== undefined) this.#cancelHere(fiberId, answer.cancel.reason);
    }
    this.#inFlight.delete(fiberId);
    const stuck = answer.status === "ok" && hadPending && this.#outbox.acked(fiberId) === acked;
    if (!stuck) this.#failures.delete(fiberId);
    if (!this.#outbox.hasPending(fiberId)) return;
    // Pending entries went and nothing more is acknowledged (they were another worker's, or the
    // next position is missing): the next try backs off, as after a failure, instead of asking
    // again at once.
    if (stuck) this.#retryLater(fiberId);
    else this.kick(fiberId);
  }

  /** Queues `#take` behind the fiber's earlier ones, so two answers never hand events at once. */
  #takeLater(fiberId: string, events: PushedEvent[]): void {
    if (this.#onEvents === undefined) return;
    const next = (this.#taking.get(fiberId) ?? Promise.resolve()).then(() => this.#take(fiberId, events));
    this.#taking.set(fiberId, next);
    void next.then(() => {
      if (this.#taking.get(fiberId) === next) this.#taking.delete(fiberId);
    });
  }

  /**
   * Hands the pushed events not handed yet to `onEvents`, in order. A failure is not reported:
   * the arbiter pushes them again in its next answer, and takes them into its own inbox when the
   * fiber ends or moves before they were taken here.
   */
  async #take(fiberId: string, events: PushedEvent[]): Promise<void> {
    if (this.#onEvents === undefined || this.#stopped) return;
    const handed = this.#handed.get(fiberId) ?? new Set<string>();
    this.#handed.set(fiberId, handed);
    // Forget what the arbiter no longer pushes: it came back shipped.
    const pushed = new Set(events.map((e) => e.eventId));
    for (const id of handed) if (!pushed.has(id)) handed.delete(id);
    const fresh = events.filter((e) => !handed.has(e.eventId));
    if (fresh.length === 0) return;
    try {
      await this.#onEvents(fiberId, fresh);
      for (const e of fresh) handed.add(e.eventId);
    } catch {
      this.stats.pushFailures++;
    }
  }

  /** Hands a forwarded cancel to `onCancel`, unless one for the fiber is under way. */
  #cancelHere(fiberId: string, reason: string): void {
    const onCancel = this.#onCancel;
    if (onCancel === undefined || this.#stopped || this.#cancelling.has(fiberId)) return;
    this.#cancelling.add(fiberId);
    void (async () => {
      try {
        await onCancel(fiberId, reason);
      } catch {
        // Not reported (`onError` is for what retrying cannot fix): the next answer brings the
        // cancel again, and past a lease after it the arbiter's takeover carries it out.
        this.stats.cancelFailures++;
      } finally {
        this.#cancelling.delete(fiberId);
      }
    })();
  }

  /**
   * Applies `answer` to a shipment sent under `epoch`; returns false, applying nothing, when it is
   * not about what the outbox holds now: the outbox moved to another epoch while it was in
   * flight (an `adopt`, or a `resync` that took another worker's newer epoch), or the fence
   * names this very home under a newer epoch (another worker of this browser had the fiber come
   * home to it). Fencing on such an answer would mark the fiber away from its own home.
   */
  #answer(fiberId: string, answer: ShipmentAnswer, sentAt: number, epoch: number): boolean {
    const outbox = this.#outbox;
    if (outbox.epoch(fiberId) !== epoch) return false;
    if (answer.status === "fenced" && answer.home === this.#home && answer.epoch > epoch) return false;
    if (answer.status === "fenced") {
      this.stats.fenced++;
      outbox.fence(fiberId, answer.epoch, answer.home, answer.appliedPos);
      this.#clearDeadline(fiberId);
      return true;
    }
    if (answer.appliedPos < outbox.acked(fiberId)) {
      // The arbiter holds less than it once acknowledged: what it lost is gone from here too.
      this.#broken.add(fiberId);
      this.#report(new OutOfOrderError(fiberId, answer.appliedPos), fiberId);
      return true;
    }
    if (answer.status === "out_of_order") {
      outbox.acknowledge(fiberId, answer.appliedPos);
      return true;
    }
    outbox.noteGranted(answer.leaseMs);
    const deadline = leaseDeadline(sentAt, answer.leaseMs);
    // An answer that comes after the lease it grants has ended starts nothing (Rule C): the
    // outbox refuses the step starts it would release.
    outbox.acknowledge(fiberId, answer.appliedPos, deadline);
    this.#armDeadline(fiberId, deadline);
    return true;
  }

  /** Rule C: at the deadline, unless a newer acknowledgement moved it, step starts stop waiting. */
  #armDeadline(fiberId: string, deadline: number): void {
    this.#clearDeadline(fiberId);
    const timer = setTimeout(
      () => {
        this.#deadlineTimers.delete(fiberId);
        const where = this.#outbox.where(fiberId);
        if (where?.status !== "home" || where.deadline === undefined) return;
        if (where.deadline <= this.#clock()) this.#outbox.lapse(fiberId);
        // A timer may fire a little before the clock reaches its deadline (Node's by a
        // millisecond, now and then): wait out the rest rather than never lapse.
        else if (where.deadline === deadline) this.#armDeadline(fiberId, deadline);
      },
      Math.max(0, deadline - this.#clock()),
    );
    this.#deadlineTimers.set(fiberId, timer);
  }

  #clearDeadline(fiberId: string): void {
    const timer = this.#deadlineTimers.get(fiberId);
    if (timer !== undefined) clearTimeout(timer);
    this.#deadlineTimers.delete(fiberId);
  }

  #retryLater(fiberId: string): void {
    if (this.#stopped) return;
    const failures = (this.#failures.get(fiberId) ?? 0) + 1;
    this.#failures.set(fiberId, failures);
    const wait = Math.min(this.#maxMs, this.#initialMs * 2 ** (failures - 1));
    this.#retryTimers.set(
      fiberId,
      setTimeout(() => {
        this.#retryTimers.delete(fiberId);
        this.kick(fiberId);
      }, wait),
    );
  }
}
