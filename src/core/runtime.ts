/**
 * The runtime: registers fibers ahead of execution, runs them, recovers interrupted ones, fires
 * durable timers, delivers events and serves streams. Hosts (the Service Worker host, the edge
 * host, tests) create one with `createRuntime` and call `recover()` on every start. This file is
 * the public API: it checks arguments, writes new fibers and reads durable state; executing
 * fibers (locks, claims, leases, wake timers) is the `Runner`'s job.
 */

import { CommitQueue } from "./commit-queue";
import type { FiberDefinition } from "./define";
import { FiberlineError, FiberNotFoundError, UnknownFiberError } from "./errors";
import { DEFAULT_CANCEL_REASON } from "./fiber-end";
import { defaultLocks } from "./locks";
import { type FiberEvent, type FiberRecord, type FiberStatus, isTerminal, type StreamChunk } from "./records";
import { ShippedChunks } from "./replication";
import { Runner, report, unref } from "./runner";
import type {
  FiberInspection,
  OpenedEventBatches,
  RecoverySummary,
  RuntimeOptions,
  StartOptions,
  StartResult,
} from "./runtime-types";
import type { CreateResult, FiberQuery, Store } from "./store";
import { StreamHub } from "./stream-hub";
import {
  awaitResult,
  createdAtOf,
  identityOf,
  openReader,
  readStream,
  readStreamBatches,
  type StreamSource,
} from "./stream-reader";
import {
  assertArgument,
  assertCancelReason,
  assertEventName,
  assertFiberQuery,
  assertStorable,
  assertValidId,
} from "./validate";

export type {
  FiberInspection,
  OpenedEventBatches,
  RecoverySummary,
  RuntimeOptions,
  StartOptions,
  StartResult,
} from "./runtime-types";

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
  readonly #runner: Runner;
  readonly #keepAliveListeners = new Set<(work: Promise<unknown>) => void>();
  readonly #clock: () => number;
  /**
   * The last `createdAt` this runtime gave a fiber: each one is later than it, so two fibers
   * started under one id (the first deleted in between) never share their name on the stream
   * (`CREATED_HEADER`), even within a millisecond.
   */
  #lastCreatedAt = Number.NEGATIVE_INFINITY;
  readonly #random: () => number;
  readonly #uuid: () => string;
  readonly #leaseMs: number;
  readonly #retentionMs: number;
  readonly #maxPayloadBytes: number;
  readonly #streamSource: StreamSource;
  /** Continuity's Rule B on the live path, when the runtime replicates fibers. */
  readonly #shippedChunks: ShippedChunks | undefined;
  readonly #unsubscribeLapsed: (() => void) | undefined;
  #collectTimer: ReturnType<typeof setInterval> | null = null;
  #sweepTimer: ReturnType<typeof setInterval> | null = null;
  #closed = false;

  constructor(options: RuntimeOptions) {
    assertArgument(
      options?.store,
      "createRuntime({ store }) needs a store, e.g. new IdbStore() or new MemoryStore().",
    );
    this.store = options.store;
    this.#uuid = options.uuid ?? randomUuid;
    this.runnerId = options.runnerId ?? `runner-${this.#uuid()}`;
    for (const def of options.fibers ?? []) {
      assertArgument(
        !this.#definitions.has(def.name),
        `Two fiber definitions are named "${def.name}"; names must be unique.`,
      );
      assertRetention(def.options.retentionMs, `defineFiber("${def.name}", { retentionMs })`);
      this.#definitions.set(def.name, def);
    }
    assertRetention(options.retentionMs, "createRuntime({ retentionMs })");
    this.#clock = options.clock ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#leaseMs = options.leaseMs ?? 15_000;
    this.#retentionMs = options.retentionMs ?? 24 * 60 * 60 * 1000;
    this.#maxPayloadBytes = options.maxPayloadBytes ?? 1024 * 1024;
    const replication = options.replication;
    this.#streamSource = {
      store: this.store,
      hub: this.#hub,
      pollIntervalMs: options.pollIntervalMs ?? 250,
      ...(replication ? { visibleHead: (id: string) => replication.visibleHead(id) } : {}),
    };
    this.#shippedChunks = replication
      ? new ShippedChunks(replication, (id, chunks) => this.#hub.publish(id, chunks))
      : undefined;
    const locks = options.locks ?? defaultLocks();
    this.#writer = new CommitQueue(this.store, (id, chunks) => this.#publish(id, chunks));
    this.#runner = new Runner({
      run: {
        store: this.store,
        writer: this.#writer,
        maxPayloadBytes: this.#maxPayloadBytes,
        maxRecoveries: options.maxRecoveries ?? 10,
        unloadAfterMs: options.unloadAfterMs ?? 1_000,
        now: () => this.#clock(),
        random: () => this.#random(),
        uuid: () => this.#uuid(),
        keepAlive: (work) => {
          for (const listener of this.#keepAliveListeners) listener(work);
        },
        ...(replication ? { replication } : {}),
      },
      locks,
      runnerId: this.runnerId,
      definitions: this.#definitions,
      leaseMs: this.#leaseMs,
      maxRecoveries: options.maxRecoveries ?? 10,
      onLeave: (id) => this.#hub.forget(id),
    });
    this.#unsubscribeLapsed = replication?.onLapsed?.((id, reason) => this.#runner.stopRun(id, reason));
  }

  /** Counters of the group-commit writer (transactions, groups, chunks). */
  get commitStats(): Readonly<CommitQueue["stats"]> {
    return this.#writer.stats;
  }

  /** How many fibers this runtime is executing right now. */
  get activeCount(): number {
    return this.#runner.activeCount;
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
    assertStorable(input, "fiber input", this.#maxPayloadBytes);
    const id = options.id ?? this.#uuid();
    const now = this.#clock();
    const createdAt = Math.max(now, this.#lastCreatedAt + 1);
    this.#lastCreatedAt = createdAt;
    const record: FiberRecord = {
      id,
      name: def.name,
      version: def.version,
      input,
      status: "running",
      ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
      createdAt,
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
    // A generated id is new to everyone, so its Web Lock is requested while the record is written
    // (a round trip to the browser less before the handler runs). A caller's id may be another
    // context's fiber, which must find its lock free once it has created it: that lock waits.
    const lock = options.id === undefined ? this.#runner.lockAhead(id) : undefined;
    let created: CreateResult;
    try {
      created = await this.store.createFiber(record, [first]);
    } catch (error) {
      releaseUnused(lock);
      throw error;
    }
    if (created.status === "exists") {
      releaseUnused(lock);
      const existing = created.record;
      return { id: existing.id, name: existing.name, status: existing.status, created: false };
    }
    // A page opens the stream right after `start`: while the fiber runs here, its reader starts
    // from the chunks kept in memory instead of queueing reads behind the fiber's first commits.
    this.#hub.track(id, identityOf(created.record));
    this.#publish(id, [first]);
    try {
      // The stored record: its generation may be above the one asked for (`Store.createFiber`).
      await this.#runner.runNew(def, created.record, lock);
    } finally {
      // Another context holds its lock, or the run has already left: readers read storage.
      if (!this.#runner.isActive(id)) this.#hub.forget(id);
    }
    return { id, name: def.name, status: "running", created: true };
  }

  /**
   * Whether a stream of fiber `id` opened now after `after` starts from chunks this runtime keeps
   * in memory (the first chunks of a fiber it started and runs), with no read of storage: the
   * fiber exists, and has a chunk after `after` to send. A host answering a stream request asks
   * this to skip its own read of the record.
   */
  streamsFromMemory(id: string, after: number): boolean {
    return this.#hub.covers(id, after);
  }

  /**
   * The `createdAt` of fiber `id` as this runtime keeps its stream in memory (see
   * `streamsFromMemory`), or `undefined` when it keeps none: what a host tells a reader served
   * from memory, so that its reconnects can check they still read the same fiber.
   */
  streamCreatedAt(id: string): number | undefined {
    const identity = this.#hub.identity(id);
    return identity === undefined ? undefined : createdAtOf(identity);
  }

  /**
   * The fiber's stream: chunks with `seq > after` from storage, then live chunks as they become
   * durable; ends after `fiber.end`. Rejects with `fiber_not_found` for an unknown id.
   */
  async *events(
    id: string,
    options: { after?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<FiberEvent> {
    const cursor = streamCursor(id, options.after, "events");
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
    const cursor = streamCursor(id, options.after, "eventBatches");
    yield* readStreamBatches(this.#streamSource, id, cursor, options.signal);
  }

  /**
   * `eventBatches` for a transport that must answer from the fiber's record before it streams (the
   * Service Worker's event route answers 404 or 204 on it): subscribes to the live chunks, then
   * reads the record and the first chunks after `after` in one read of storage. The batches start
   * from that read, so the first chunk waits for one read, not two. Read the batches, or call
   * `close()` when the answer has no body.
   */
  async openEventBatches(
    id: string,
    options: { after?: number; signal?: AbortSignal } = {},
  ): Promise<OpenedEventBatches> {
    const cursor = streamCursor(id, options.after, "openEventBatches");
    const opened = await openReader(this.#streamSource, id, cursor);
    return {
      record: opened.first.record,
      batches: readStreamBatches(this.#streamSource, id, cursor, options.signal, opened),
      close: opened.unsubscribe,
    };
  }

  /** Sends an event to a fiber; a `waitForEvent` for `name` receives `payload` (buffered until then). */
  async sendEvent(
    id: string,
    name: string,
    payload?: unknown,
    options?: {
      /** Continuity: the id another home gave the event (see `InboxEvent.eventId`). */ eventId?: string;
    },
  ): Promise<void> {
    this.#assertOpen();
    assertValidId(id);
    assertEventName(name);
    assertStorable(payload, `payload of event "${name}"`, this.#maxPayloadBytes);
    const record = await this.store.getFiber(id);
    if (!record) throw new FiberNotFoundError(id);
    if (isTerminal(record.status)) {
      throw new FiberlineError(
        "fiber_ended",
        `Fiber ${id} already ended (${record.status}); it takes no more events.`,
      );
    }
    const event = await this.store.enqueueEvent({
      fiberId: id,
      name,
      payload,
      at: this.#clock(),
      ...(options?.eventId === undefined ? {} : { eventId: options.eventId }),
    });
    await this.#runner.deliver(id, event);
  }

  /**
   * Cancels a fiber: aborts `ctx.signal` and ends it as `cancelled` with a `fiber.end` chunk. A
   * fiber already ended is left as it is.
   *
   * Failure semantics: a fiber running elsewhere is fenced first (its runner's next write fails
   * and it stops), so nothing it does afterwards is recorded.
   */
  async cancel(id: string, reason = DEFAULT_CANCEL_REASON): Promise<FiberStatus> {
    this.#assertOpen();
    assertValidId(id);
    assertCancelReason(reason);
    return this.#runner.cancel(id, reason);
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
      active: this.#runner.isActive(id),
    };
  }

  /** Fibers matching `query`, oldest first. */
  async list(query?: FiberQuery): Promise<FiberRecord[]> {
    assertFiberQuery(query);
    return this.store.listFibers(query);
  }

  /**
   * Picks up every non-terminal fiber not owned by a live runner: interrupted ones are replayed
   * (after a `fiber.recovered` chunk and `onRecovered`), due timers fire, sleeping and waiting
   * fibers get their wake-ups scheduled, and expired terminal fibers are collected. Hosts call
   * it on every start. From then on, every lease period, fibers whose runner's lease lapsed or
   * whose timer is overdue are picked up too (a runner in another context died).
   */
  async recover(): Promise<RecoverySummary> {
    this.#assertOpen();
    const now = this.#clock();
    try {
      const live = await this.store.listFibers({ status: ACTIVE_STATUSES, withInput: false });
      const { resumed, scheduled } = await this.#runner.pickUp(live, now);
      // Collection is housekeeping: after the pick-ups, so interrupted fibers do not wait for it
      // (it reads every ended fiber's record), and its failure must not keep them from resuming
      // (the collector retries it on its interval).
      const collected = await this.collect().catch((error: unknown) => {
        report(error, "collecting expired fibers");
        return [] as string[];
      });
      return { resumed, scheduled, collected };
    } finally {
      // Also when the listing failed: the sweeper then picks up, within a lease period, what
      // this recover() did not (a host with no next start, as the leader tab, relies on it).
      this.#startCollector();
      this.#startSweeper();
    }
  }

  /** Deletes terminal fibers whose retention has passed; returns their ids. */
  async collect(): Promise<string[]> {
    const now = this.#clock();
    const retentionOf = (name: string): number =>
      this.#definitions.get(name)?.options.retentionMs ?? this.#retentionMs;
    // Only fibers that ended at least the shortest retention ago can be expired: the store reads
    // those alone (IndexedDB's `endedAt` index), not every ended fiber's record.
    let shortest = this.#retentionMs;
    for (const name of this.#definitions.keys()) shortest = Math.min(shortest, retentionOf(name));
    const candidates = await this.store.listFibers({
      status: TERMINAL,
      endedBefore: now - shortest,
      withInput: false,
    });
    const expired = candidates.filter((r) => (r.endedAt ?? r.updatedAt) + retentionOf(r.name) <= now);
    if (expired.length === 0) return [];
    // Only the fibers listed: another context may have collected one and its id started again.
    const ifGeneration = new Map(expired.map((r) => [r.id, r.generation]));
    return this.store.deleteFibers(
      expired.map((r) => r.id),
      { ifGeneration },
    );
  }

  /**
   * Stops this runtime without ending any fiber: runs are abandoned as a crash would leave them
   * (their leases expire, their Web Locks are released) and resume at the next `recover()`.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#collectTimer) clearInterval(this.#collectTimer);
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    this.#runner.close();
    this.#shippedChunks?.close();
    this.#unsubscribeLapsed?.();
    await this.#writer.drain();
  }

  // ---- plumbing ------------------------------------------------------------------------------

  /** Hands durable chunks to live readers (a replicated fiber's once shipped: Rule B). */
  #publish(id: string, chunks: readonly StreamChunk[]): void {
    if (this.#shippedChunks) this.#shippedChunks.add(id, chunks);
    else this.#hub.publish(id, chunks);
  }

  #definition(name: string | undefined): FiberDefinition {
    assertArgument(
      typeof name === "string",
      "start(definition, input) needs a fiber definition or its name.",
    );
    const def = this.#definitions.get(name);
    if (!def) throw new UnknownFiberError(name);
    return def;
  }

  /**
   * Every lease period, picks up running fibers whose runner's lease has lapsed and sleeping or
   * waiting fibers whose timer is overdue: a runner in another context (an old Service Worker,
   * another tab's runtime) that died after this runtime's `recover()` leaves nothing else that
   * would resume its fibers or fire their timers before the next start.
   */
  #startSweeper(): void {
    if (this.#sweepTimer || this.#closed) return;
    this.#sweepTimer = setInterval(
      () => {
        void this.#sweep();
      },
      Math.max(this.#leaseMs, 50),
    );
    unref(this.#sweepTimer);
  }

  async #sweep(): Promise<void> {
    if (this.#closed) return;
    try {
      const now = this.#clock();
      const live = await this.store.listFibers({ status: ACTIVE_STATUSES, withInput: false });
      // A lapsed lease (a run, or a claim that never became one), or a timer overdue by a whole
      // lease period: its runtime is gone (a live one fires its own timers on time, so the sweep
      // does not race it).
      const orphaned = live.filter((r) =>
        r.status === "running" || r.owner !== undefined
          ? (r.leaseUntil ?? 0) <= now
          : r.wakeAt !== undefined && r.wakeAt + this.#leaseMs <= now,
      );
      if (orphaned.length > 0) await this.#runner.pickUp(orphaned, now);
    } catch (error) {
      report(error, "looking for fibers whose runner is gone");
    }
  }

  #startCollector(): void {
    if (this.#collectTimer || this.#closed) return;
    const every = Math.min(Math.max(this.#retentionMs / 4, 1_000), 60 * 60 * 1000);
    this.#collectTimer = setInterval(() => {
      this.collect().catch((error) => report(error, "collecting expired fibers"));
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
}

function randomUuid(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  // Non-secure contexts lack randomUUID; ids need uniqueness, not secrecy.
  const hex = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16));
  hex[12] = "4";
  return `${hex.slice(0, 8).join("")}-${hex.slice(8, 12).join("")}-${hex.slice(12, 16).join("")}-${hex.slice(16, 20).join("")}-${hex.slice(20).join("")}`;
}

/** The validated `after` of a stream call (0 when omitted), once `id` is validated too. */
function streamCursor(id: string, after: number | undefined, method: string): number {
  assertValidId(id);
  const cursor = after ?? 0;
  assertArgument(
    Number.isInteger(cursor) && cursor >= 0,
    `${method}(id, { after }) needs an integer >= 0, got ${cursor}.`,
  );
  return cursor;
}

/** A retention is a number of ms >= 0 (`Infinity` keeps ended fibers for ever). */
function assertRetention(ms: number | undefined, where: string): void {
  assertArgument(
    ms === undefined || (typeof ms === "number" && ms >= 0),
    `${where} needs a number of milliseconds >= 0 (Infinity keeps ended fibers for ever), got ${String(ms)}.`,
  );
}

/** Lets go of a lock `lockAhead` took for a fiber that was not created (or joined another). */
function releaseUnused(lock: Promise<(() => void) | null> | undefined): void {
  void lock?.then(
    (release) => release?.(),
    () => {},
  );
}
