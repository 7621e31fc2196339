/**
 * One run of one fiber: the `ctx` its handler sees, replay against the loaded journal, retries,
 * durable timers and event waits, and the fiber's end. The runtime creates a `FiberRun` for
 * every start, wake and recovery, and drops it when the run finishes, suspends or is fenced.
 */

import type { Store, WriteGroup } from "../store/store";
import type { CommitQueue } from "./commit-queue";
import type { FiberContext, FiberDefinition, StepContext, StepOptions } from "./define";
import {
  CancelledError,
  deserializeError,
  FencedError,
  type FiberlineError,
  InvalidInputError,
  NonRetryableError,
  ReplayDivergedError,
  StepFailedError,
  serializeError,
  TimeoutError,
} from "./errors";
import { type EndOutcome, type EndStatus, endGroup } from "./fiber-end";
import type {
  FiberEvent,
  FiberRecord,
  FiberStatus,
  InboxEvent,
  JournalEntry,
  JournalKind,
  RecoveryInfo,
  StreamChunk,
} from "./records";
import { sleep } from "./sleep";
import { backoffMs, DEFAULT_RETRY, runAttempt } from "./step-attempt";
import { assertArgument, assertStorable } from "./validate";

/** What a run needs from its runtime. */
export interface RunHost {
  readonly store: Store;
  readonly writer: CommitQueue;
  readonly maxPayloadBytes: number;
  /** Sleeps and waits due sooner than this stay in memory instead of unloading the fiber. */
  readonly unloadAfterMs: number;
  now(): number;
  random(): number;
  uuid(): string;
  keepAlive(work: Promise<unknown>): void;
  /** The run ended: finished, suspended durably, or stopped (fenced, store lost). */
  onRunEnded(run: FiberRun, outcome: RunOutcome): void;
}

/** How a run ended. */
export type RunOutcome =
  | { kind: "finished"; status: "completed" | "failed" | "cancelled" }
  | { kind: "suspended"; status: "sleeping" | "waiting"; wakeAt?: number; wakeNow: boolean }
  | { kind: "stopped"; error: unknown };

interface Waiter {
  kind: "sleep" | "event";
  pos: number;
  key: string;
  name: string;
  dueAt?: number;
  timer?: ReturnType<typeof setTimeout>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** Everything a run starts from, loaded by the runtime after a successful claim. */
export interface RunState {
  record: FiberRecord;
  journal: readonly JournalEntry[];
  snapshot: unknown;
  inbox: readonly InboxEvent[];
  recovery: RecoveryInfo | null;
}

/** A live execution of one fiber. */
export class FiberRun {
  readonly id: string;
  readonly generation: number;
  readonly definition: FiberDefinition;
  readonly #host: RunHost;
  readonly #input: unknown;
  readonly #journal = new Map<number, JournalEntry>();
  readonly #names = new Map<string, number>();
  readonly #controller = new AbortController();
  readonly #waiters = new Set<Waiter>();
  readonly #recovery: RecoveryInfo | null;
  #inbox: InboxEvent[];
  #snapshot: unknown;
  #opCounter = 0;
  #streamHead: number;
  #ordinal = 0;
  readonly #recordedOrdinal: number;
  #busy = 0;
  #state: "running" | "suspending" | "ended" = "running";
  #wakeRequested = false;
  #suspendCheck: ReturnType<typeof setTimeout> | null = null;
  readonly #ended: Promise<void>;
  #markEnded!: () => void;

  constructor(host: RunHost, definition: FiberDefinition, state: RunState) {
    this.#host = host;
    this.definition = definition;
    this.id = state.record.id;
    this.generation = state.record.generation;
    this.#input = state.record.input;
    this.#streamHead = state.record.streamHead;
    this.#recordedOrdinal = state.record.emitOrdinal;
    this.#snapshot = state.snapshot;
    this.#recovery = state.recovery;
    for (const entry of state.journal) this.#journal.set(entry.pos, entry);
    this.#inbox = state.inbox.filter((e) => e.consumedBy === undefined);
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
    this.#inbox.push(event);
    this.#settleEventWaiters();
  }

  /** Cancels the run: aborts `ctx.signal` and ends the fiber as `cancelled`. */
  async cancel(reason: string): Promise<void> {
    if (this.#state === "ended") return;
    const error = new CancelledError(reason);
    this.#controller.abort(error);
    await this.#end("cancelled", { error: serializeError(error) });
  }

  /** Stops the run without writing anything (its writes were fenced or the store is gone). */
  stop(error: unknown): void {
    if (this.#state === "ended") return;
    this.#state = "ended";
    this.#clearWaiters(error);
    this.#controller.abort(error);
    this.#host.onRunEnded(this, { kind: "stopped", error });
    this.#markEnded();
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
      step: (name, fn, options) => this.#step(name, fn, options),
      emit: (type, data) => this.#emit(type, data),
      stash: (value) => this.#stash(value),
      sleep: (name, ms) => this.#sleep(name, ms),
      waitForEvent: <T>(name: string, options?: { timeoutMs?: number }) =>
        this.#waitForEvent(name, options) as Promise<T>,
      now: () => this.#journaled("now", () => this.#host.now()),
      random: () => this.#journaled("random", () => this.#host.random()),
      uuid: () => this.#journaled("uuid", () => this.#host.uuid()),
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

  async #step<T>(
    name: string,
    fn: (step: StepContext) => Promise<T> | T,
    options: StepOptions = {},
  ): Promise<T> {
    this.#assertLive();
    assertArgument(typeof name === "string" && name.length > 0, "ctx.step(name, fn) needs a non-empty name.");
    assertArgument(typeof fn === "function", `ctx.step("${name}", fn) needs a function.`);
    const pos = this.#opCounter++;
    const key = `${name}#${this.#nextIndex(`step:${name}`)}`;
    const recorded = this.#replayed(pos, "step", key);
    if (recorded?.status === "completed") return recorded.result as T;
    if (recorded?.status === "failed") throw this.#recordedError(recorded);
    this.#busy++;
    try {
      return await this.#runStep(pos, key, fn, options, recorded);
    } finally {
      this.#busy--;
      this.#scheduleSuspendCheck();
    }
  }

  async #runStep<T>(
    pos: number,
    key: string,
    fn: (step: StepContext) => Promise<T> | T,
    options: StepOptions,
    recorded: JournalEntry | undefined,
  ): Promise<T> {
    const policy = { ...DEFAULT_RETRY, ...options.retry };
    const streamFrom = recorded?.streamFrom ?? this.#streamHead;
    let interrupted = recorded?.status === "started";
    let attempt = recorded?.attempt ?? 0;
    // A crash is not the step's fault: an interrupted step always gets at least one more attempt.
    const lastAttempt = Math.max(attempt + 1, policy.maxAttempts);
    const emitted = interrupted ? await this.#stepChunks(pos, streamFrom) : [];
    const idempotencyKey = `${this.id}:${key}`;
    for (let tries = 0; ; tries++) {
      attempt++;
      const started: JournalEntry = {
        fiberId: this.id,
        pos,
        kind: "step",
        key,
        status: "started",
        attempt,
        startedAt: this.#host.now(),
        streamFrom,
      };
      this.#journal.set(pos, started);
      await this.#write({ journal: [started] });
      this.#assertLive();
      try {
        const result = await runAttempt(
          fn,
          {
            attempt,
            idempotencyKey,
            interrupted,
            emitted: tries === 0 ? emitted : [],
            emit: (type, data) => {
              this.#assertLive();
              this.#append(type, data, { step: pos });
            },
          },
          this.#controller.signal,
          options.timeoutMs,
        );
        assertStorable(result, `result of step "${key}"`, this.#host.maxPayloadBytes);
        const done: JournalEntry = { ...started, status: "completed", result, endedAt: this.#host.now() };
        this.#journal.set(pos, done);
        // Deferred: the next write (the next step's start, a chunk, the fiber's end) carries it,
        // FIFO. A crash before then leaves the step `started`: it re-runs, interrupted.
        this.#writeLater({ journal: [done] }, { defer: true });
        return result;
      } catch (error) {
        this.#assertLive();
        const permanent = error instanceof NonRetryableError || error instanceof InvalidInputError;
        if (permanent || attempt >= lastAttempt) {
          const failure = permanent
            ? error
            : new StepFailedError(
                "step_failed",
                `Step "${key}" of fiber ${this.id} failed after ${attempt} attempt(s): ${describeError(error)}`,
                { cause: error },
              );
          const failed: JournalEntry = {
            ...started,
            status: "failed",
            error: serializeError(failure),
            endedAt: this.#host.now(),
          };
          this.#journal.set(pos, failed);
          this.#writeLater({ journal: [failed] });
          throw failure;
        }
        await sleep(backoffMs(policy, tries), this.#controller.signal);
        this.#assertLive();
        interrupted = false;
      }
    }
  }

  #emit(type: string, data: unknown): void {
    this.#assertLive();
    const ordinal = ++this.#ordinal;
    // Silent replay: the stream already holds this emit from an earlier run.
    if (ordinal <= this.#recordedOrdinal) return;
    this.#append(type, data, { ordinal });
  }

  #append(type: string, data: unknown, origin: { step?: number; ordinal?: number }): void {
    assertArgument(typeof type === "string" && type.length > 0, "emit(type, data) needs a non-empty type.");
    assertArgument(
      !type.startsWith("fiber."),
      `The chunk type "${type}" is reserved: types starting with "fiber." are written by the runtime.`,
    );
    assertStorable(data, `data of chunk "${type}"`, this.#host.maxPayloadBytes);
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
    this.#busy++;
    try {
      await this.#write({ snapshot: { fiberId: this.id, value, at: this.#host.now() } });
      this.#snapshot = value;
    } finally {
      this.#busy--;
      this.#scheduleSuspendCheck();
    }
  }

  #sleep(name: string, ms: number): Promise<void> {
    this.#assertLive();
    assertArgument(
      typeof name === "string" && name.length > 0,
      "ctx.sleep(name, ms) needs a non-empty name.",
    );
    assertArgument(
      Number.isFinite(ms) && ms >= 0,
      `ctx.sleep("${name}", ms) needs a duration >= 0 in milliseconds.`,
    );
    const pos = this.#opCounter++;
    const key = `sleep:${name}#${this.#nextIndex(`sleep:${name}`)}`;
    const recorded = this.#replayed(pos, "sleep", key);
    if (recorded?.status === "completed") return Promise.resolve();
    const dueAt = recorded?.dueAt ?? this.#host.now() + ms;
    const started: JournalEntry = recorded ?? {
      fiberId: this.id,
      pos,
      kind: "sleep",
      key,
      status: "started",
      attempt: 1,
      startedAt: this.#host.now(),
      dueAt,
    };
    if (!recorded) {
      this.#journal.set(pos, started);
      this.#writeLater({ journal: [started] });
    }
    return new Promise<void>((resolve, reject) => {
      this.#addWaiter({ kind: "sleep", pos, key, name, dueAt, resolve: () => resolve(), reject });
    });
  }

  #waitForEvent(name: string, options: { timeoutMs?: number } = {}): Promise<unknown> {
    this.#assertLive();
    assertArgument(
      typeof name === "string" && name.length > 0,
      "ctx.waitForEvent(name) needs a non-empty name.",
    );
    const { timeoutMs } = options;
    assertArgument(
      timeoutMs === undefined || (Number.isFinite(timeoutMs) && timeoutMs >= 0),
      `ctx.waitForEvent("${name}", { timeoutMs }) needs a timeout >= 0 in milliseconds.`,
    );
    const pos = this.#opCounter++;
    const key = `event:${name}#${this.#nextIndex(`event:${name}`)}`;
    const recorded = this.#replayed(pos, "event", key);
    if (recorded?.status === "completed") return Promise.resolve(recorded.result);
    if (recorded?.status === "failed") return Promise.reject(this.#recordedError(recorded));
    const dueAt = recorded
      ? recorded.dueAt
      : timeoutMs === undefined
        ? undefined
        : this.#host.now() + timeoutMs;
    if (!recorded) {
      const started: JournalEntry = {
        fiberId: this.id,
        pos,
        kind: "event",
        key,
        status: "started",
        attempt: 1,
        startedAt: this.#host.now(),
        ...(dueAt === undefined ? {} : { dueAt }),
      };
      this.#journal.set(pos, started);
      this.#writeLater({ journal: [started] });
    }
    return new Promise<unknown>((resolve, reject) => {
      this.#addWaiter({
        kind: "event",
        pos,
        key,
        name,
        ...(dueAt === undefined ? {} : { dueAt }),
        resolve,
        reject,
      });
      this.#settleEventWaiters();
    });
  }

  async #journaled<T>(kind: JournalKind, produce: () => T): Promise<T> {
    this.#assertLive();
    const pos = this.#opCounter++;
    const key = `${kind}#${this.#nextIndex(kind)}`;
    const recorded = this.#replayed(pos, kind, key);
    if (recorded?.status === "completed") return recorded.result as T;
    const now = this.#host.now();
    const value = produce();
    const entry: JournalEntry = {
      fiberId: this.id,
      pos,
      kind,
      key,
      status: "completed",
      attempt: 1,
      startedAt: now,
      endedAt: now,
      result: value,
    };
    this.#journal.set(pos, entry);
    this.#writeLater({ journal: [entry] });
    return value;
  }

  // ---- waiting and suspension ----------------------------------------------------------------

  #addWaiter(waiter: Waiter): void {
    this.#waiters.add(waiter);
    if (waiter.dueAt !== undefined) {
      const delay = Math.max(0, waiter.dueAt - this.#host.now());
      waiter.timer = setTimeout(() => this.#waiterDue(waiter), Math.min(delay, 2_147_483_647));
    }
    this.#scheduleSuspendCheck();
  }

  #waiterDue(waiter: Waiter): void {
    if (this.#state !== "running" || !this.#waiters.has(waiter)) return;
    if (waiter.dueAt !== undefined && waiter.dueAt > this.#host.now()) {
      // Long timers are chunked by the setTimeout limit; re-arm.
      waiter.timer = setTimeout(
        () => this.#waiterDue(waiter),
        Math.min(waiter.dueAt - this.#host.now(), 2_147_483_647),
      );
      return;
    }
    this.#waiters.delete(waiter);
    const entry = this.#journal.get(waiter.pos);
    if (!entry) return;
    if (waiter.kind === "sleep") {
      const done: JournalEntry = { ...entry, status: "completed", endedAt: this.#host.now() };
      this.#journal.set(waiter.pos, done);
      this.#writeLater({ journal: [done] });
      waiter.resolve(undefined);
    } else {
      const error = new TimeoutError(
        `No "${waiter.name}" event arrived for fiber ${this.id} before the wait timed out.`,
      );
      const failed: JournalEntry = {
        ...entry,
        status: "failed",
        error: serializeError(error),
        endedAt: this.#host.now(),
      };
      this.#journal.set(waiter.pos, failed);
      this.#writeLater({ journal: [failed] });
      waiter.reject(error);
    }
  }

  #settleEventWaiters(): void {
    const waiting = [...this.#waiters].filter((w) => w.kind === "event").sort((a, b) => a.pos - b.pos);
    for (const waiter of waiting) {
      const index = this.#inbox.findIndex((e) => e.name === waiter.name);
      if (index < 0) continue;
      const [event] = this.#inbox.splice(index, 1);
      if (!event) continue;
      this.#waiters.delete(waiter);
      clearTimeout(waiter.timer);
      const entry = this.#journal.get(waiter.pos);
      if (!entry) continue;
      const done: JournalEntry = {
        ...entry,
        status: "completed",
        result: event.payload,
        endedAt: this.#host.now(),
      };
      this.#journal.set(waiter.pos, done);
      this.#writeLater({ journal: [done], consumeEvents: [{ seq: event.seq, consumedBy: waiter.pos }] });
      waiter.resolve(event.payload);
    }
  }

  #scheduleSuspendCheck(): void {
    if (this.#suspendCheck || this.#state !== "running" || this.#waiters.size === 0 || this.#busy > 0) return;
    // A macrotask later, so that work the handler started in the same turn is counted.
    this.#suspendCheck = setTimeout(() => {
      this.#suspendCheck = null;
      this.#maybeSuspend();
    }, 0);
  }

  #maybeSuspend(): void {
    if (this.#state !== "running" || this.#waiters.size === 0 || this.#busy > 0) return;
    const now = this.#host.now();
    let wakeAt: number | undefined;
    let openEnded = false;
    const waitingFor: string[] = [];
    for (const w of this.#waiters) {
      if (w.kind === "event") waitingFor.push(w.name);
      if (w.dueAt === undefined) openEnded = true;
      else wakeAt = wakeAt === undefined ? w.dueAt : Math.min(wakeAt, w.dueAt);
    }
    if (!openEnded && wakeAt !== undefined && wakeAt - now < this.#host.unloadAfterMs) return;
    void this.#suspend(waitingFor.length > 0 ? "waiting" : "sleeping", wakeAt, waitingFor);
  }

  async #suspend(
    status: "sleeping" | "waiting",
    wakeAt: number | undefined,
    waitingFor: string[],
  ): Promise<void> {
    this.#state = "suspending";
    for (const w of this.#waiters) clearTimeout(w.timer);
    this.#waiters.clear();
    try {
      await this.#host.writer.write({
        fiberId: this.id,
        generation: this.generation,
        fiber: {
          status,
          wakeAt,
          waitingFor: waitingFor.length > 0 ? waitingFor : undefined,
          owner: undefined,
          leaseUntil: undefined,
          updatedAt: this.#host.now(),
        },
      });
    } catch (error) {
      this.#state = "running";
      this.stop(error);
      return;
    }
    this.#state = "ended";
    this.#host.onRunEnded(this, {
      kind: "suspended",
      status,
      ...(wakeAt === undefined ? {} : { wakeAt }),
      wakeNow: this.#wakeRequested,
    });
    this.#markEnded();
  }

  #clearWaiters(reason: unknown): void {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(reason);
    }
    this.#waiters.clear();
    if (this.#suspendCheck) clearTimeout(this.#suspendCheck);
  }

  // ---- the end -------------------------------------------------------------------------------

  async #complete(result: unknown): Promise<void> {
    if (this.#state !== "running") return;
    try {
      assertStorable(result, `result of fiber ${this.id}`, this.#host.maxPayloadBytes);
    } catch (error) {
      await this.#end("failed", { error: serializeError(error) });
      return;
    }
    await this.#end("completed", { result });
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

  async #end(status: EndStatus, outcome: EndOutcome): Promise<void> {
    if (this.#state === "ended") return;
    this.#state = "ended";
    this.#clearWaiters(new CancelledError(`Fiber ${this.id} ended (${status}).`));
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
      return;
    }
    this.#host.onRunEnded(this, { kind: "finished", status });
    this.#markEnded();
  }

  // ---- plumbing ------------------------------------------------------------------------------

  #assertLive(): void {
    if (this.#state === "running") return;
    const reason = this.#controller.signal.reason;
    if (reason instanceof Error) throw reason;
    throw new CancelledError(`Fiber ${this.id} is no longer running in this runner.`);
  }

  #nextIndex(name: string): number {
    const n = (this.#names.get(name) ?? 0) + 1;
    this.#names.set(name, n);
    return n;
  }

  #replayed(pos: number, kind: JournalKind, key: string): JournalEntry | undefined {
    const entry = this.#journal.get(pos);
    if (entry && (entry.kind !== kind || entry.key !== key)) {
      const error = new ReplayDivergedError(
        "replay_diverged",
        `Replay of fiber ${this.id} diverged at position ${pos}: the journal recorded ${entry.kind} "${entry.key}" but the handler now calls ${kind} "${key}". A handler must make the same calls in the same order on every run; to change a fiber's code, bump its version.`,
      );
      this.#failNow(error);
      throw error;
    }
    return entry;
  }

  #recordedError(entry: JournalEntry): Error {
    return entry.error
      ? deserializeError(entry.error)
      : new StepFailedError("step_failed", `Step "${entry.key}" failed.`);
  }

  async #stepChunks(pos: number, streamFrom: number): Promise<FiberEvent[]> {
    const chunks = await this.#host.store.readStream(this.id, streamFrom);
    return chunks.filter((c) => c.step === pos).map(({ seq, type, data, at }) => ({ seq, type, data, at }));
  }

  #write(group: Omit<WriteGroup, "fiberId" | "generation">, options?: { defer?: boolean }): Promise<void> {
    return this.#host.writer
      .write({ fiberId: this.id, generation: this.generation, ...group }, options)
      .catch((error) => {
        this.stop(error);
        throw error;
      });
  }

  #writeLater(group: Omit<WriteGroup, "fiberId" | "generation">, options?: { defer?: boolean }): void {
    this.#write(group, options).catch(() => {
      // stop() already ran; the handler sees the error at its next ctx call.
    });
  }
}

/** Whether a status is one a run can be in. */
export function isRunnable(status: FiberStatus): boolean {
  return status === "running" || status === "sleeping" || status === "waiting";
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
