/**
 * One run of one fiber: the `ctx` its handler sees, its lifecycle (running, suspending, ended),
 * its emits and stash, and the fiber's end. Steps and journaled values run in `FiberSteps`,
 * sleeps and event waits in `FiberWaits`, both against the run's `RunJournal`. The runtime creates
 * a `FiberRun` for every start, wake and recovery, and drops it when the run finishes, suspends or
 * is fenced.
 */

import type { CommitQueue } from "./commit-queue";
import type { FiberContext, FiberDefinition } from "./define";
import {
  CancelledError,
  FencedError,
  type FiberlineError,
  ReplayDivergedError,
  serializeError,
} from "./errors";
import { type EndOutcome, type EndStatus, endGroup } from "./fiber-end";
import { FiberSteps } from "./fiber-steps";
import { FiberWaits, type RunWrite, type Suspension } from "./fiber-waits";
import type {
  FiberRecord,
  FiberStatus,
  InboxEvent,
  JournalEntry,
  RecoveryInfo,
  ResumePoint,
  SnapshotRecord,
  StreamChunk,
} from "./records";
import type { Replication } from "./replication";
import { RunJournal } from "./run-journal";
import type { Store, WriteGroup } from "./store";
import { assertArgument, assertStorable } from "./validate";

/** What a run needs from its runtime. */
export interface RunHost {
  readonly store: Store;
  readonly writer: CommitQueue;
  readonly maxPayloadBytes: number;
  /** The runtime's `maxRecoveries` (a definition's own overrides it). */
  readonly maxRecoveries: number;
  /** Sleeps and waits due sooner than this stay in memory instead of unloading the fiber. */
  readonly unloadAfterMs: number;
  now(): number;
  random(): number;
  uuid(): string;
  keepAlive(work: Promise<unknown>): void;
  /** The host's replication, when it replicates fibers to a second home (continuity). */
  readonly replication?: Replication;
  /** The run ended: finished, suspended durably, or stopped (fenced, store lost). */
  onRunEnded(run: FiberRun, outcome: RunOutcome): void;
}

/** How a run ended. */
export type RunOutcome =
  | { kind: "finished"; status: "completed" | "failed" | "cancelled" }
  | {
      kind: "suspended";
      status: "sleeping" | "waiting";
      wakeAt?: number;
      /** Event names the fiber waits for. */
      waitingFor: string[];
      /** An event reached the run while it was suspending: resume at once. */
      wakeNow: boolean;
    }
  | { kind: "stopped"; error: unknown };

/** Everything a run starts from, loaded by the runtime after a successful claim. */
export interface RunState {
  record: FiberRecord;
  journal: readonly JournalEntry[];
  snapshot: unknown;
  /** The stash ordinal of `snapshot` (see `SnapshotRecord.ordinal`). */
  snapshotOrdinal?: number;
  /** Where the run that stashed `snapshot` stood (`SnapshotRecord.resume`), if it said. */
  snapshotResume?: ResumePoint | undefined;
  inbox: readonly InboxEvent[];
  recovery: RecoveryInfo | null;
  /**
   * A picked-up run's pick-up write (`fiber.recovered`, the claim's facts), in flight while the
   * run replays: an attempt that runs beside its own `started` write (`awaitStart: false`) waits
   * for it, so nothing runs live before the pick-up is durable.
   */
  pickedUp?: Promise<void>;
}

/** A live execution of one fiber. */
export class FiberRun {
  readonly id: string;
  readonly generation: number;
  /** The fiber's `createdAt`: which fiber of its id this run executes. */
  readonly createdAt: number;
  readonly definition: FiberDefinition;
  readonly #host: RunHost;
  readonly #input: unknown;
  readonly #controller = new AbortController();
  readonly #journal: RunJournal;
  readonly #steps: FiberSteps;
  readonly #waits: FiberWaits;
  readonly #recovery: RecoveryInfo | null;
  /** `RunState.pickedUp` until it is durable. */
  #pickedUp: Promise<void> | undefined;
  #snapshot: unknown;
  #streamHead: number;
  #ordinal = 0;
  readonly #recordedOrdinal: number;
  #stashes = 0;
  readonly #recordedStashes: number;
  /** Whether the fiber is defined with `resumeFrom: "stash"`. */
  readonly #fromStash: boolean;
  /**
   * A `resumeFrom: "stash"` fiber whose snapshot does not say where its run stood (stashed
   * before the definition asked for it): this run cannot know where to pick up.
   */
  readonly #unplaced: boolean;
  #state: "running" | "suspending" | "ended" = "running";
  #wakeRequested = false;
  readonly #ended: Promise<void>;
  #markEnded!: () => void;

  constructor(host: RunHost, definition: FiberDefinition, state: RunState) {
    this.#host = host;
    this.definition = definition;
    this.id = state.record.id;
    this.generation = state.record.generation;
    this.createdAt = state.record.createdAt;
    this.#input = state.record.input;
    this.#streamHead = state.record.streamHead;
    this.#recordedOrdinal = state.record.emitOrdinal;
    this.#recordedStashes = state.snapshotOrdinal ?? 0;
    this.#snapshot = state.snapshot;
    this.#recovery = state.recovery;
    this.#pickedUp = state.pickedUp;
    state.pickedUp?.then(
      () => {
        this.#pickedUp = undefined; // durable: nothing left to wait for
      },
      () => {}, // the runner stops the run with the error
    );
    // The fiber + stash shape: the handler picks up from the snapshot, so the run counts on from
    // the stash instead of replaying from the top.
    this.#fromStash = definition.options.resumeFrom === "stash";
    const from = this.#fromStash ? state.snapshotResume : undefined;
    this.#unplaced =
      this.#fromStash &&
      from === undefined &&
      ((state.snapshotOrdinal ?? 0) > 0 || state.snapshot !== undefined);
    if (this.#fromStash) this.#stashes = this.#recordedStashes;
    if (from !== undefined) this.#ordinal = from.emits;
    this.#journal = new RunJournal(
      this.id,
      state.journal,
      (error) => this.#failNow(error),
      () => this.#ordinal,
      from,
    );
    const run = this;
    this.#waits = new FiberWaits(
      {
        fiberId: this.id,
        journal: this.#journal,
        unloadAfterMs: host.unloadAfterMs,
        now: () => host.now(),
        running: () => this.#state === "running",
        assertLive: () => this.#assertLive(),
        writeLater: (group) => this.#writeLater(group),
        suspend: (suspension) => void this.#suspend(suspension),
        readInbox: () => host.store.readInbox(this.id),
        fail: (error) => this.stop(error),
      },
      state.inbox,
    );
    this.#steps = new FiberSteps({
      fiberId: this.id,
      epoch: state.record.epoch,
      journal: this.#journal,
      signal: this.#controller.signal,
      maxPayloadBytes: host.maxPayloadBytes,
      get streamHead() {
        return run.#streamHead;
      },
      now: () => host.now(),
      assertLive: () => this.#assertLive(),
      // A read that fails (storage trouble) stops the run as a failed write does: the runner
      // resumes it from its journal after a backoff, and the handler never ends on the store's error.
      readStream: (after) =>
        host.store.readStream(this.id, after).catch((error: unknown) => {
          this.stop(error);
          throw error;
        }),
      append: (type, data, origin) => this.#append(type, data, origin),
      write: (group, options) => this.#write(group, options),
      writeLater: (group, options) => this.#writeLater(group, options),
      shipped: () => this.#shipped(),
      pickedUp: () => this.#pickedUp,
      replicated: () => this.#host.replication?.replicated(this.id) === true,
      beginWork: () => this.#waits.beginWork(),
      endWork: () => this.#waits.endWork(),
    });
    this.#ended = new Promise<void>((resolve) => {
      this.#markEnded = resolve;
    });
  }

  /** Resolves when the run has ended in any way. */
  get ended(): Promise<void> {
    return this.#ended;
  }

  /** Highest seq this run has appended (durable or queued). */
  get streamHead(): number {
    return this.#streamHead;
  }

  /** Whether the run is executing (not suspending or ended). */
  get live(): boolean {
    return this.#state === "running";
  }

  /** Starts the handler. */
  start(): void {
    const ctx = this.#context();
    this.#host.keepAlive(this.#ended);
    if (this.#unplaced) {
      this.#failNow(
        new ReplayDivergedError(
          "replay_diverged",
          `Fiber ${this.id} is defined with resumeFrom: "stash", but its last stash was made by a run that did not record where it stood (the definition gained the option while the fiber ran). Give the changed definition a new version, so fibers of the old one are not picked up by it.`,
        ),
      );
      return;
    }
    Promise.resolve()
      .then(() => this.definition.options.run(ctx, this.#input))
      .then(
        (result) => this.#complete(result),
        (error) => this.#handlerFailed(error),
      );
  }

  /** Delivers an event that `sendEvent` stored durably. */
  deliver(event: InboxEvent): void {
    if (this.#state !== "running") {
      this.#wakeRequested = true;
      return;
    }
    this.#waits.deliver(event);
  }

  /**
   * Cancels the run: aborts `ctx.signal` and ends the fiber as `cancelled`. Resolves with
   * `cancelled` once that is durable, or with `undefined` when this run did not end the fiber (it
   * was already suspending or ending, or the end write failed): the caller then decides on the
   * stored record, after this run is over.
   */
  async cancel(reason: string): Promise<FiberStatus | undefined> {
    if (this.#state !== "running") {
      await this.#ended;
      return undefined;
    }
    const error = new CancelledError(reason);
    this.#controller.abort(error);
    return (await this.#end("cancelled", { error: serializeError(error) })) ? "cancelled" : undefined;
  }

  /** Stops the run without writing anything (its writes were fenced or the store is gone). */
  stop(error: unknown): void {
    if (this.#state === "ended") return;
    this.#state = "ended";
    this.#waits.clear(error);
    this.#controller.abort(error);
    this.#host.onRunEnded(this, { kind: "stopped", error });
    this.#markEnded();
  }

  /**
   * Resolves once no step function of this run is still executing (see `FiberSteps.settled`);
   * `undefined` when none is.
   */
  stepsSettled(): Promise<void> | undefined {
    return this.#steps.settled();
  }

  /** The lease-renewal write for this run, or null when it should not be renewed. */
  leaseGroup(leaseUntil: number): WriteGroup | null {
    if (this.#state !== "running") return null;
    return { fiberId: this.id, generation: this.generation, fiber: { leaseUntil } };
  }

  // ---- ctx ---------------------------------------------------------------------------------

  #context(): FiberContext {
    const run = this;
    return {
      id: this.id,
      name: this.definition.name,
      input: this.#input,
      signal: this.#controller.signal,
      get snapshot() {
        return run.#snapshot;
      },
      recovery: this.#recovery,
      maxPayloadBytes: this.#host.maxPayloadBytes,
      maxRecoveries: this.definition.options.maxRecoveries ?? this.#host.maxRecoveries,
      step: (name, fn, options) => this.#steps.step(name, fn, options),
      emit: (type, data) => this.#emit(type, data),
      stash: (value) => this.#stash(value),
      sleep: (name, ms) => this.#waits.sleep(name, ms),
      waitForEvent: <T>(name: string, options?: { timeoutMs?: number }) =>
        this.#waits.waitForEvent(name, options) as Promise<T>,
      now: () => this.#steps.journaled("now", () => this.#host.now()),
      random: () => this.#steps.journaled("random", () => this.#host.random()),
      uuid: () => this.#steps.journaled("uuid", () => this.#host.uuid()),
      keepAlive: () => {
        let release!: () => void;
        this.#host.keepAlive(new Promise<void>((r) => (release = r)));
        return release;
      },
      keepAliveWhile: (fn) => {
        const work = fn();
        this.#host.keepAlive(work);
        return work;
      },
    };
  }

  #emit(type: string, data: unknown): void {
    this.#assertLive();
    // Checked before it counts, and on a silent replay too: an emit the live run refused (and
    // its handler caught) is refused again, so both runs count the same emits and go on alike.
    this.#checkChunk(type, data);
    const ordinal = ++this.#ordinal;
    // Silent replay: the stream already holds this emit from an earlier run.
    if (ordinal > this.#recordedOrdinal) this.#put(type, data, { ordinal });
    this.#journal.emitted();
  }

  #checkChunk(type: string, data: unknown): void {
    assertArgument(typeof type === "string" && type.length > 0, "emit(type, data) needs a non-empty type.");
    assertArgument(
      !type.startsWith("fiber."),
      `The chunk type "${type}" is reserved: types starting with "fiber." are written by the runtime.`,
    );
    assertStorable(data, `data of chunk "${type}"`, this.#host.maxPayloadBytes);
  }

  #append(type: string, data: unknown, origin: { step: number }): void {
    this.#checkChunk(type, data);
    this.#put(type, data, origin);
  }

  /** Appends a chunk {@link #checkChunk} accepted. */
  #put(type: string, data: unknown, origin: { step?: number; ordinal?: number }): void {
    const chunk: StreamChunk = {
      fiberId: this.id,
      seq: ++this.#streamHead,
      type,
      data,
      at: this.#host.now(),
      ...origin,
    };
    const fiber: Partial<FiberRecord> =
      origin.ordinal === undefined
        ? { streamHead: chunk.seq }
        : { streamHead: chunk.seq, emitOrdinal: origin.ordinal };
    this.#writeLater({ chunks: [chunk], fiber });
  }

  async #stash(value: unknown): Promise<void> {
    this.#assertLive();
    assertStorable(value, "stashed value", this.#host.maxPayloadBytes);
    if (this.#fromStash) {
      // A later run starts where this stash leaves the run: that place must be one it can reach.
      assertArgument(
        value !== undefined,
        `ctx.stash(undefined) in fiber ${this.id}: a resumeFrom: "stash" fiber picks up from its snapshot, and undefined reads as none. Stash a value.`,
      );
      assertArgument(
        this.#journal.idle,
        `ctx.stash in fiber ${this.id} while a step, sleep or wait of its run is pending (inside a step, in a Promise.all branch, or the loser of a Promise.race): a run picking up from this stash would not call it again. In a resumeFrom: "stash" fiber, stash once they have settled.`,
      );
    }
    const ordinal = ++this.#stashes;
    if (ordinal <= this.#recordedStashes) {
      // Replay: an earlier run made this stash and later ones; the stored snapshot is newer.
      this.#snapshot = value;
      return;
    }
    this.#waits.beginWork();
    try {
      // The ordinal (and where the run stands, for a run to resume from) rides in the snapshot
      // itself: a stash stays a stash-only write, one round trip.
      const snapshot: SnapshotRecord = { fiberId: this.id, value, at: this.#host.now(), ordinal };
      if (this.#fromStash) snapshot.resume = this.#journal.resumePoint(this.#ordinal);
      await this.#write({ snapshot });
      this.#snapshot = value;
    } finally {
      this.#waits.endWork();
    }
  }

  // ---- suspension and the end ----------------------------------------------------------------

  /** Unloads the fiber until a timer or an event wakes it; `FiberWaits` decided it is idle. */
  async #suspend(suspension: Suspension): Promise<void> {
    this.#state = "suspending";
    try {
      await this.#host.writer.write({
        fiberId: this.id,
        generation: this.generation,
        ...this.#waits.unload(suspension),
      });
    } catch (error) {
      this.#state = "running";
      this.stop(error);
      return;
    }
    this.#state = "ended";
    const { status, wakeAt, waitingFor } = suspension;
    this.#host.onRunEnded(this, {
      kind: "suspended",
      status,
      ...(wakeAt === undefined ? {} : { wakeAt }),
      waitingFor,
      wakeNow: this.#wakeRequested,
    });
    this.#markEnded();
  }

  async #complete(result: unknown): Promise<void> {
    if (this.#state !== "running") return;
    try {
      assertStorable(result, `result of fiber ${this.id}`, this.#host.maxPayloadBytes);
      this.#assertReplayedAll();
    } catch (error) {
      await this.#end("failed", { error: serializeError(error) });
      return;
    }
    await this.#end("completed", { result });
  }

  /**
   * A handler that returns must have reached every operation the run it replays recorded in the
   * journal. One it did not reach means it did not replay from the top (typically: it picked up
   * from `ctx.snapshot` without `resumeFrom: "stash"`, and the steps it made got the results of
   * earlier ones); its fiber fails with `replay_diverged` instead of completing with them.
   */
  #assertReplayedAll(): void {
    const unreached = this.#journal.unreached();
    if (unreached === undefined) return;
    const hint = this.#fromStash
      ? 'A handler defined with resumeFrom: "stash" must pick up from ctx.snapshot and make again what followed the stash.'
      : 'A handler that picks up from ctx.snapshot instead of replaying from the top needs resumeFrom: "stash" in its definition.';
    throw new ReplayDivergedError(
      "replay_diverged",
      `Fiber ${this.id} returned without reaching ${unreached.kind} "${unreached.key}" at position ${unreached.pos}, which the run it replays made. ${hint}`,
    );
  }

  async #handlerFailed(error: unknown): Promise<void> {
    if (this.#state !== "running") return;
    if (error instanceof FencedError) {
      this.stop(error);
      return;
    }
    await this.#end("failed", { error: serializeError(error) });
  }

  /** Fails the fiber from inside the run (divergence) and returns nothing; the caller throws. */
  #failNow(error: FiberlineError): void {
    this.#controller.abort(error);
    void this.#end("failed", { error: serializeError(error) });
  }

  /** Ends the fiber; resolves with whether this run's end write made it durable. */
  async #end(status: EndStatus, outcome: EndOutcome): Promise<boolean> {
    if (this.#state === "ended") return false;
    this.#state = "ended";
    this.#waits.clear(new CancelledError(`Fiber ${this.id} ended (${status}).`));
    const group = endGroup(
      { fiberId: this.id, generation: this.generation, seq: ++this.#streamHead },
      status,
      outcome,
      this.#host.now(),
    );
    try {
      await this.#host.writer.write(group);
    } catch (error) {
      this.#host.onRunEnded(this, { kind: "stopped", error });
      this.#markEnded();
      return false;
    }
    this.#host.onRunEnded(this, { kind: "finished", status });
    this.#markEnded();
    return true;
  }

  // ---- plumbing ------------------------------------------------------------------------------

  #assertLive(): void {
    if (this.#state === "running") return;
    const reason = this.#controller.signal.reason;
    if (reason instanceof Error) throw reason;
    throw new CancelledError(`Fiber ${this.id} is no longer running in this runner.`);
  }

  #write(group: RunWrite, options?: { defer?: boolean }): Promise<void> {
    return this.#host.writer
      .write({ fiberId: this.id, generation: this.generation, ...group }, options)
      .catch((error) => {
        this.stop(error);
        throw error;
      });
  }

  /** Rule A of continuity: `undefined` for a fiber that is not replicated. */
  #shipped(): Promise<void> | undefined {
    const replication = this.#host.replication;
    if (replication === undefined || !replication.replicated(this.id)) return undefined;
    return replication.shipped(this.id).catch((error: unknown) => {
      this.stop(error);
      throw error;
    });
  }

  /** A write nobody awaits: a failure stops the run (the handler sees it at its next ctx call). */
  #writeLater(group: RunWrite, options?: { defer?: boolean }): void {
    this.#host.writer.enqueue(
      { fiberId: this.id, generation: this.generation, ...group },
      (error) => this.stop(error),
      options,
    );
  }
}

/** Whether a status is one a run can be in. */
export function isRunnable(status: FiberStatus): boolean {
  return status === "running" || status === "sleeping" || status === "waiting";
}
