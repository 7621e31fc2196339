/**
 * The runtime: registers fibers ahead of execution, runs them, recovers interrupted ones, fires
 * durable timers, delivers events and serves streams. Hosts (the Service Worker host, the edge
 * host, tests) create one with `createRuntime` and call `recover()` on every start.
 */

import type { FiberQuery, Store } from "../store/store";
import { CommitQueue } from "./commit-queue";
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
import { FiberRun, type RunHost, type RunOutcome } from "./fiber-run";
import { defaultLocks, type FiberLocks } from "./locks";
import {
  type FiberEvent,
  type FiberRecord,
  type FiberStatus,
  type InboxEvent,
  isTerminal,
  type JournalEntry,
  type StreamChunk,
} from "./records";
import { type PickupReason, planRun } from "./recovery-plan";
import { StreamHub } from "./stream-hub";
import { awaitResult, readStream, readStreamBatches, type StreamSource } from "./stream-reader";
import { assertArgument, assertStorable, assertValidId } from "./validate";

/** Options of `createRuntime`. */
export interface RuntimeOptions {
  /** Where everything is kept: `IdbStore` in browsers, `MemoryStore` in tests. */
  store: Store;
  /** The fiber definitions this runtime can start and recover. */
  fibers: readonly FiberDefinition[];
  /** This runner's identity in fiber records (default: a random id). */
  runnerId?: string;
  /** How long a claim on a fiber holds without renewal (default 15 s). */
  leaseMs?: number;
  /** Recoveries in a row without progress before a fiber fails with `recovery_exhausted` (default 10). */
  maxRecoveries?: number;
  /** How long terminal fibers keep their journal and stream (default 24 h). */
  retentionMs?: number;
  /** Largest input, step result, stash, chunk, event or result, estimated in bytes (default 1 MiB). */
  maxPayloadBytes?: number;
  /** Sleeps and waits due sooner than this keep the fiber in memory (default 1 s). */
  unloadAfterMs?: number;
  /** How often readers look for chunks written by another runtime (default 250 ms). */
  pollIntervalMs?: number;
  /** Per-fiber locks (default: Web Locks where `navigator.locks` exists). */
  locks?: FiberLocks;
  /** The time source (default `Date.now`). */
  clock?: () => number;
  /** The random source for `ctx.random()` (default `Math.random`). */
  random?: () => number;
}

/** What `start` returns; `Out` types `result()`. */
export interface StartResult<Out = unknown> {
  id: string;
  name: string;
  status: FiberStatus;
  /** False when the call joined an existing fiber with the same id or idempotency key. */
  created: boolean;
  /** Type-only marker. */
  readonly __output?: Out;
}

/** Options of `start`. */
export interface StartOptions {
  /** The fiber id (default: a random UUID). */
  id?: string;
  /** A second start with the same key joins the first fiber instead of starting another. */
  idempotencyKey?: string;
}

/** What `inspect` returns: the whole durable state of one fiber. */
export interface FiberInspection {
  record: FiberRecord;
  journal: JournalEntry[];
  snapshot: unknown;
  snapshotAt?: number;
  streamHead: number;
  inbox: InboxEvent[];
  /** Whether this runtime is executing the fiber right now. */
  active: boolean;
}

/** What `recover` did. */
export interface RecoverySummary {
  /** Interrupted fibers picked up and replayed. */
  resumed: string[];
  /** Sleeping and waiting fibers whose wake-up is scheduled. */
  scheduled: string[];
  /** Terminal fibers deleted after their retention. */
  collected: string[];
}

const ACTIVE_STATUSES: readonly FiberStatus[] = ["running", "sleeping", "waiting"];
const TERMINAL: readonly FiberStatus[] = ["completed", "failed", "cancelled"];

/**
 * Creates a runtime.
 *
 * @example
 * const runtime = createRuntime({ store: new IdbStore(), fibers: [research] });
 * await runtime.recover();
 * const fiber = await runtime.start(research, { topic: "durable execution" });
 * for await (const ev of runtime.events(fiber.id)) console.log(ev.seq, ev.type, ev.data);
 */
export function createRuntime(options: RuntimeOptions): Runtime {
  return new Runtime(options);
}

/** A durable fiber runtime. See `createRuntime`. */
export class Runtime {
  readonly store: Store;
  readonly runnerId: string;
  readonly #definitions = new Map<string, FiberDefinition>();
  readonly #writer: CommitQueue;
  readonly #hub = new StreamHub();
  readonly #locks: FiberLocks;
  readonly #active = new Map<string, { run: FiberRun; release: () => void }>();
  readonly #starting = new Map<string, InboxEvent[]>();
  readonly #wakeTimers = new Map<string, ReturnType<typeof setTimeout>>();
  readonly #lockWatches = new Set<string>();
  readonly #keepAliveListeners = new Set<(work: Promise<unknown>) => void>();
  readonly #clock: () => number;
  readonly #random: () => number;
  readonly #leaseMs: number;
  readonly #maxRecoveries: number;
  readonly #retentionMs: number;
  readonly #streamSource: StreamSource;
  readonly #host: RunHost;
  #leaseTimer: ReturnType<typeof setInterval> | null = null;
  #collectTimer: ReturnType<typeof setInterval> | null = null;
  #closed = false;

  constructor(options: RuntimeOptions) {
    assertArgument(
      options?.store,
      "createRuntime({ store }) needs a store, e.g. new IdbStore() or new MemoryStore().",
    );
    this.store = options.store;
    this.runnerId = options.runnerId ?? `runner-${randomUuid()}`;
    for (const def of options.fibers ?? []) {
      assertArgument(
        !this.#definitions.has(def.name),
        `Two fiber definitions are named "${def.name}"; names must be unique.`,
      );
      this.#definitions.set(def.name, def);
    }
    this.#clock = options.clock ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#leaseMs = options.leaseMs ?? 15_000;
    this.#maxRecoveries = options.maxRecoveries ?? 10;
    this.#retentionMs = options.retentionMs ?? 24 * 60 * 60 * 1000;
    this.#streamSource = { store: this.store, hub: this.#hub, pollIntervalMs: options.pollIntervalMs ?? 250 };
    this.#locks = options.locks ?? defaultLocks();
    this.#writer = new CommitQueue(this.store, (id, chunks) => this.#hub.publish(id, chunks));
    this.#host = {
      store: this.store,
      writer: this.#writer,
      maxPayloadBytes: options.maxPayloadBytes ?? 1024 * 1024,
      unloadAfterMs: options.unloadAfterMs ?? 1_000,
      now: () => this.#clock(),
      random: () => this.#random(),
      uuid: randomUuid,
      keepAlive: (work) => {
        for (const listener of this.#keepAliveListeners) listener(work);
      },
      onRunEnded: (run, outcome) => this.#runEnded(run, outcome),
    };
  }

  /** Counters of the group-commit writer (transactions, groups, chunks). */
  get commitStats(): Readonly<CommitQueue["stats"]> {
    return this.#writer.stats;
  }

  /** How many fibers this runtime is executing right now. */
  get activeCount(): number {
    return this.#active.size;
  }

  /** The registered definitions, by name. */
  get definitions(): ReadonlyMap<string, FiberDefinition> {
    return this.#definitions;
  }

  /**
   * Calls `listener` with a promise for every piece of work that should keep the host alive (each
   * run, `ctx.keepAlive()`); the Service Worker host passes them to `waitUntil`.
   */
  onKeepAlive(listener: (work: Promise<unknown>) => void): () => void {
    this.#keepAliveListeners.add(listener);
    return () => this.#keepAliveListeners.delete(listener);
  }

  /**
   * Starts a fiber, or joins the existing one with the same `id` or `idempotencyKey`.
   *
   * Failure semantics: the fiber record (`running`, name, version, input) and its `fiber.start`
   * chunk are written in one transaction before the handler runs; bad input is rejected before
   * anything is written.
   */
  async start<In, Out>(
    definition: FiberDefinition<In, Out>,
    input: In,
    options?: StartOptions,
  ): Promise<StartResult<Out>>;
  async start(name: string, input: unknown, options?: StartOptions): Promise<StartResult>;
  async start(
    definition: FiberDefinition | string,
    input: unknown,
    options: StartOptions = {},
  ): Promise<StartResult> {
    this.#assertOpen();
    const def = this.#definition(typeof definition === "string" ? definition : definition?.name);
    if (options.id !== undefined) assertValidId(options.id);
    if (options.idempotencyKey !== undefined) assertValidId(options.idempotencyKey, "idempotency key");
    assertStorable(input, "fiber input", this.#host.maxPayloadBytes);
    const id = options.id ?? randomUuid();
    const now = this.#clock();
    const record: FiberRecord = {
      id,
      name: def.name,
      version: def.version,
      input,
      status: "running",
      ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
      createdAt: now,
      updatedAt: now,
      generation: 1,
      owner: this.runnerId,
      leaseUntil: now + this.#leaseMs,
      streamHead: 1,
      emitOrdinal: 0,
      epoch: 0,
      stalledRecoveries: 0,
      progressMark: "",
    };
    const first: StreamChunk = {
      fiberId: id,
      seq: 1,
      type: "fiber.start",
      data: { name: def.name, version: def.version },
      at: now,
    };
    const created = await this.store.createFiber(record, [first]);
    if (created.status === "exists") {
      const existing = created.record;
      return { id: existing.id, name: existing.name, status: existing.status, created: false };
    }
    this.#hub.publish(id, [first]);
    const release = await this.#locks.acquire(id);
    if (release)
      this.#launch(def, { record, journal: [], snapshot: undefined, inbox: [], recovery: null }, release);
    return { id, name: def.name, status: "running", created: true };
  }

  /**
   * The fiber's stream: chunks with `seq > after` from storage, then live chunks as they become
   * durable; ends after `fiber.end`. Rejects with `fiber_not_found` for an unknown id.
   */
  async *events(
    id: string,
    options: { after?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<FiberEvent> {
    assertValidId(id);
    const cursor = options.after ?? 0;
    assertArgument(
      Number.isInteger(cursor) && cursor >= 0,
      `events(id, { after }) needs an integer >= 0, got ${cursor}.`,
    );
    yield* readStream(this.#streamSource, id, cursor, options.signal);
  }

  /**
   * The same stream as `events`, in batches of whatever is available at once, so a transport (the
   * Service Worker's event-stream route) can send each batch in one write.
   */
  async *eventBatches(
    id: string,
    options: { after?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<FiberEvent[]> {
    assertValidId(id);
    const cursor = options.after ?? 0;
    assertArgument(
      Number.isInteger(cursor) && cursor >= 0,
      `eventBatches(id, { after }) needs an integer >= 0, got ${cursor}.`,
    );
    yield* readStreamBatches(this.#streamSource, id, cursor, options.signal);
  }

  /** Sends an event to a fiber; a `waitForEvent` for `name` receives `payload` (buffered until then). */
  async sendEvent(id: string, name: string, payload?: unknown): Promise<void> {
    this.#assertOpen();
    assertValidId(id);
    assertArgument(
      typeof name === "string" && name.length > 0,
      "sendEvent(id, name, payload) needs a non-empty event name.",
    );
    assertStorable(payload, `payload of event "${name}"`, this.#host.maxPayloadBytes);
    const record = await this.store.getFiber(id);
    if (!record) throw new FiberNotFoundError(id);
    if (isTerminal(record.status)) {
      throw new FiberlineError(
        "fiber_ended",
        `Fiber ${id} already ended (${record.status}); it takes no more events.`,
      );
    }
    const event = await this.store.enqueueEvent({ fiberId: id, name, payload, at: this.#clock() });
    const active = this.#active.get(id);
    if (active) active.run.deliver(event);
    else if (this.#starting.has(id)) this.#starting.get(id)?.push(event);
    else if (record.status === "waiting") await this.#resume(id, "event");
  }

  /**
   * Cancels a fiber: aborts `ctx.signal` and ends it as `cancelled` with a `fiber.end` chunk. A
   * fiber already ended is left as it is.
   *
   * Failure semantics: a fiber running elsewhere is fenced first (its runner's next write fails
   * and it stops), so nothing it does afterwards is recorded.
   */
  async cancel(id: string, reason = "Cancelled by request."): Promise<FiberStatus> {
    this.#assertOpen();
    assertValidId(id);
    const active = this.#active.get(id);
    if (active) {
      await active.run.cancel(reason);
      return "cancelled";
    }
    const record = await this.store.getFiber(id);
    if (!record) throw new FiberNotFoundError(id);
    if (isTerminal(record.status)) return record.status;
    const claim = await this.store.claimFiber(id, {
      owner: this.runnerId,
      now: this.#clock(),
      leaseMs: this.#leaseMs,
      force: true,
    });
    if (claim.status === "missing") throw new FiberNotFoundError(id);
    if (claim.status === "held") return claim.record.status;
    this.#clearWake(id);
    await this.#endDirect(claim.record, "cancelled", new CancelledError(reason));
    return "cancelled";
  }

  /** Resolves with the fiber's result once it completes; rejects with its error (class and `code` kept). */
  async result<Out>(fiber: StartResult<Out> | string): Promise<Out> {
    const id = typeof fiber === "string" ? fiber : fiber.id;
    assertValidId(id);
    return (await awaitResult(this.#streamSource, id)) as Out;
  }

  /** The fiber's record, or `undefined`. */
  get(id: string): Promise<FiberRecord | undefined> {
    assertValidId(id);
    return this.store.getFiber(id);
  }

  /** Everything durable about one fiber: record, journal, snapshot, stream head, inbox. */
  async inspect(id: string): Promise<FiberInspection> {
    assertValidId(id);
    const record = await this.store.getFiber(id);
    if (!record) throw new FiberNotFoundError(id);
    const [journal, snapshot, inbox] = await Promise.all([
      this.store.readJournal(id),
      this.store.readSnapshot(id),
      this.store.readInbox(id),
    ]);
    return {
      record,
      journal,
      snapshot: snapshot?.value,
      ...(snapshot ? { snapshotAt: snapshot.at } : {}),
      streamHead: record.streamHead,
      inbox,
      active: this.#active.has(id),
    };
  }

  /** Fibers matching `query`, oldest first. */
  list(query?: FiberQuery): Promise<FiberRecord[]> {
    return this.store.listFibers(query);
  }

  /**
   * Picks up every non-terminal fiber not owned by a live runner: interrupted ones are replayed
   * (after a `fiber.recovered` chunk and `onRecovered`), due timers fire, sleeping and waiting
   * fibers get their wake-ups scheduled, and expired terminal fibers are collected. Hosts call
   * it on every start.
   */
  async recover(): Promise<RecoverySummary> {
    this.#assertOpen();
    const collected = await this.collect();
    const now = this.#clock();
    const live = await this.store.listFibers({ status: ACTIVE_STATUSES });
    const summary: RecoverySummary = { resumed: [], scheduled: [], collected };
    await Promise.all(
      live.map(async (record) => {
        if (this.#active.has(record.id) || this.#starting.has(record.id)) return;
        if (record.status === "running") {
          summary.resumed.push(record.id);
          await this.#resume(record.id, "recover");
          return;
        }
        if (record.wakeAt !== undefined && record.wakeAt <= now) {
          summary.resumed.push(record.id);
          await this.#resume(record.id, "wake");
          return;
        }
        if (record.status === "waiting") {
          const inbox = await this.store.readInbox(record.id);
          const wanted = new Set(record.waitingFor ?? []);
          if (inbox.some((e) => e.consumedBy === undefined && wanted.has(e.name))) {
            summary.resumed.push(record.id);
            await this.#resume(record.id, "event");
            return;
          }
        }
        summary.scheduled.push(record.id);
        if (record.wakeAt !== undefined) this.#scheduleWake(record.id, record.wakeAt);
      }),
    );
    this.#startCollector();
    return summary;
  }

  /** Deletes terminal fibers whose retention has passed; returns their ids. */
  async collect(): Promise<string[]> {
    const now = this.#clock();
    const ended = await this.store.listFibers({ status: TERMINAL });
    const expired = ended
      .filter((r) => {
        const retention = this.#definitions.get(r.name)?.options.retentionMs ?? this.#retentionMs;
        return (r.endedAt ?? r.updatedAt) + retention <= now;
      })
      .map((r) => r.id);
    if (expired.length > 0) await this.store.deleteFibers(expired);
    return expired;
  }

  /**
   * Stops this runtime without ending any fiber: runs are abandoned as a crash would leave them
   * (their leases expire, their Web Locks are released) and resume at the next `recover()`.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#wakeTimers.values()) clearTimeout(timer);
    this.#wakeTimers.clear();
    if (this.#leaseTimer) clearInterval(this.#leaseTimer);
    if (this.#collectTimer) clearInterval(this.#collectTimer);
    for (const { run } of [...this.#active.values()]) {
      run.stop(
        new FiberlineError("cancelled", "The runtime was closed; the fiber resumes at the next recover()."),
      );
    }
    await this.#writer.drain();
  }

  // ---- running fibers ------------------------------------------------------------------------

  #definition(name: string | undefined): FiberDefinition {
    assertArgument(
      typeof name === "string",
      "start(definition, input) needs a fiber definition or its name.",
    );
    const def = this.#definitions.get(name);
    if (!def) throw new UnknownFiberError(name);
    return def;
  }

  #launch(def: FiberDefinition, state: ConstructorParameters<typeof FiberRun>[2], release: () => void): void {
    const run = new FiberRun(this.#host, def, state);
    this.#active.set(run.id, { run, release });
    this.#ensureLeaseTimer();
    run.start();
  }

  async #resume(id: string, reason: PickupReason): Promise<void> {
    if (this.#closed || this.#active.has(id) || this.#starting.has(id)) return;
    this.#starting.set(id, []);
    this.#clearWake(id);
    let release: (() => void) | null = null;
    try {
      release = await this.#locks.acquire(id);
      if (!release) {
        // A live runner elsewhere holds it: pick the fiber up once that runner lets go.
        this.#watchLock(id);
        return;
      }
      const now = this.#clock();
      const claim = await this.store.claimFiber(id, {
        owner: this.runnerId,
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
      const [journal, snapshotRecord, inbox] = await Promise.all([
        this.store.readJournal(id),
        this.store.readSnapshot(id),
        this.store.readInbox(id),
      ]);
      const claimed = {
        record,
        journal,
        snapshot: snapshotRecord?.value,
        snapshotAt: snapshotRecord?.at,
        inbox,
      };
      const plan = await planRun(def, claimed, reason, this.#clock(), this.#maxRecoveries);
      if (plan.kind === "end") {
        await this.#endDirect(record, "failed", plan.error);
        return;
      }
      await this.#writer.write(plan.group);
      const state = plan.state;
      const pending = this.#starting.get(id) ?? [];
      this.#launch(def, state, release);
      release = null;
      const active = this.#active.get(id);
      for (const event of pending) active?.run.deliver(event);
    } catch (error) {
      if (!(error instanceof FencedError)) this.#report(error, `resuming fiber ${id}`);
    } finally {
      this.#starting.delete(id);
      release?.();
    }
  }

  /** Ends a fiber that has no run here (cancel, failed recovery), under the generation it was claimed with. */
  async #endDirect(record: FiberRecord, status: "failed" | "cancelled", error: unknown): Promise<void> {
    const fiber = { fiberId: record.id, generation: record.generation, seq: record.streamHead + 1 };
    await this.#writer.write(endGroup(fiber, status, { error: serializeError(error) }, this.#clock()));
  }

  #runEnded(run: FiberRun, outcome: RunOutcome): void {
    const entry = this.#active.get(run.id);
    if (entry?.run === run) {
      this.#active.delete(run.id);
      entry.release();
    }
    if (this.#closed) return;
    if (outcome.kind === "suspended") {
      if (outcome.wakeNow) void this.#resume(run.id, "event");
      else if (outcome.wakeAt !== undefined) this.#scheduleWake(run.id, outcome.wakeAt);
    } else if (outcome.kind === "stopped" && !(outcome.error instanceof FencedError)) {
      this.#report(outcome.error, `running fiber ${run.id}`);
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
        const record = await this.store.getFiber(id);
        if (!record || isTerminal(record.status)) return;
        if (record.status === "running") await this.#resume(id, "recover");
        else if (record.wakeAt !== undefined) this.#scheduleWake(id, record.wakeAt);
      })
      .catch((error) => {
        this.#lockWatches.delete(id);
        this.#report(error, `waiting for the lock of fiber ${id}`);
      });
  }

  #scheduleWake(id: string, at: number): void {
    this.#clearWake(id);
    const delay = Math.min(Math.max(0, at - this.#clock()), 2_147_483_647);
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
        const leaseUntil = this.#clock() + this.#leaseMs;
        for (const { run } of this.#active.values()) {
          const group = run.leaseGroup(leaseUntil);
          if (group) this.#writer.write(group).catch((error) => run.stop(error));
        }
      },
      Math.max(50, Math.floor(this.#leaseMs / 3)),
    );
    unref(this.#leaseTimer);
  }

  #startCollector(): void {
    if (this.#collectTimer || this.#closed) return;
    const every = Math.min(Math.max(this.#retentionMs / 4, 1_000), 60 * 60 * 1000);
    this.#collectTimer = setInterval(() => {
      this.collect().catch((error) => this.#report(error, "collecting expired fibers"));
    }, every);
    unref(this.#collectTimer);
  }

  #assertOpen(): void {
    if (this.#closed)
      throw new FiberlineError(
        "store_closed",
        "This runtime was closed; create a new one with createRuntime().",
      );
  }

  #report(error: unknown, doing: string): void {
    console.error(`[fiberline] ${doing} failed:`, error);
  }
}

function randomUuid(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  // Non-secure contexts lack randomUUID; ids need uniqueness, not secrecy.
  const hex = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16));
  hex[12] = "4";
  return `${hex.slice(0, 8).join("")}-${hex.slice(8, 12).join("")}-${hex.slice(12, 16).join("")}-${hex.slice(16, 20).join("")}-${hex.slice(20).join("")}`;
}

function unref(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}
