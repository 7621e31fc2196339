/**
 * `Mirror`: the handoff back (docs/design/continuity.md). A replicated fiber that another home
 * runs (the browser was fenced, or it never had the fiber: restore) is kept in the browser's own
 * store as a copy of the replica, so pages read the local stream as always and the page client
 * never knows where the fiber runs. The mirror reads `GET .../replica?after=<local head>` and
 * writes what it got with the store's ordinary calls: one `commit` per read, under the local
 * record's generation, with the chunks past the local head (the store's `stream_gap` rule keeps
 * the copy contiguous), the journal and snapshot replaced whole and the record's fields taken
 * from the replica, `home` included, which marks the local record as a mirror for good.
 *
 * The first read of a fiber in a worker's life compares the whole local stream with the
 * replica's. A browser killed before shipping its last commits holds chunks the replica never
 * got (no page saw them: Rule B) where the edge wrote its own; such a copy is rebuilt: deleted
 * and created again from the replica (a reader open on it meanwhile gets `fiber_not_found`;
 * the host makes stream requests wait for the first read, so a page that opens one after the
 * worker started never sees the old copy).
 *
 * Live: `follow` reads again every `pollMs` (default 500 ms) until the copy holds the fiber's
 * end; readers poll the store on their own (`pollIntervalMs`), so new chunks reach an open
 * stream within about two poll intervals. Reading the replica again and again costs one request
 * per interval per followed fiber, with the whole journal in each answer: fine for the handful of
 * fibers a page watches, not for thousands. The inbox is not mirrored: events for a fiber that
 * is away go to the edge.
 */

import { type FiberRecord, type InboxEvent, isTerminal, type StreamChunk } from "../core/records";
import type { Store, WriteGroup } from "../core/store";
import type { ReplicaSnapshot } from "../edge/replica-routes";
import { encodeValue } from "../edge/value-codec";

/** Where the mirror reads the replica (an `EdgeLink`). */
export interface ReplicaSource {
  /** The replica with its chunks past `after`, or `undefined` when the edge has no such fiber. */
  readReplica(fiberId: string, after: number): Promise<ReplicaSnapshot | undefined>;
}

/** Options of `new Mirror`. */
export interface MirrorOptions {
  /** The browser's own store (not the replicating wrapper, which refuses writes of away fibers). */
  store: Store;
  source: ReplicaSource;
  /** How often a followed fiber is read again (default 500 ms). */
  pollMs?: number;
  /** Where failures of a followed fiber are reported (default `console.error`); it is read again later. */
  onError?(error: unknown, fiberId: string): void;
  /** Told of the local copy after each read of a followed fiber (continuity's `comeHome` looks). */
  onSynced?(fiberId: string, record: FiberRecord): void;
}

/** What one `sync` did. */
export type MirrorSync =
  /** The local copy holds the replica as read (`rebuilt`: the old copy diverged, or there was none). */
  | { status: "mirrored"; record: FiberRecord; rebuilt: boolean; appended: number }
  /** The edge has no replica of the fiber. */
  | { status: "missing" }
  /** The fiber was handed back to this home (`handBack`): the mirror writes it no more. */
  | { status: "home" };

/** Record fields a mirror copies from the replica (the rest are the local store's own). */
const MIRRORED_FIELDS = [
  "version",
  "input",
  "status",
  "updatedAt",
  "emitOrdinal",
  "epoch",
  "recovery",
  "stalledRecoveries",
  "progressMark",
  "wakeAt",
  "waitingFor",
  "result",
  "error",
  "endedAt",
  "home",
] as const satisfies ReadonlyArray<keyof FiberRecord>;

/**
 * Keeps local copies of replicas.
 *
 * Failure semantics: each `sync` is one read and at most two store calls; a failed read writes
 * nothing, and a write the store refuses (fenced by a concurrent writer, `stream_gap`) leaves the
 * copy as it was, to be read again. Syncs of one fiber run one at a time.
 */
export class Mirror {
  readonly #store: Store;
  readonly #source: ReplicaSource;
  readonly #pollMs: number;
  readonly #report: (error: unknown, fiberId: string) => void;
  /** Fibers whose local copy was compared whole with the replica in this worker's life. */
  readonly #checked = new Set<string>();
  readonly #queues = new Map<string, Promise<unknown>>();
  readonly #followed = new Map<string, ReturnType<typeof setTimeout> | undefined>();
  /** Fibers handed back to this home: their copy is the fiber itself now, not the mirror's. */
  readonly #released = new Set<string>();
  readonly #onSynced: MirrorOptions["onSynced"];
  #stopped = false;

  constructor(options: MirrorOptions) {
    this.#store = options.store;
    this.#source = options.source;
    this.#pollMs = options.pollMs ?? 500;
    this.#onSynced = options.onSynced;
    this.#report =
      options.onError ??
      ((error, id) => console.error(`[fiberline/continuity] mirroring fiber ${id}:`, error));
  }

  /** Fibers being followed now. */
  get following(): string[] {
    return [...this.#followed.keys()];
  }

  /** Whether the local copy of `fiberId` was brought up to the replica in this worker's life. */
  synced(fiberId: string): boolean {
    return this.#checked.has(fiberId);
  }

  /** Brings the local copy of `fiberId` up to the replica, once. */
  sync(fiberId: string): Promise<MirrorSync> {
    return this.#queued(fiberId, () => this.#sync(fiberId));
  }

  /**
   * The handoff back (`comeHome`), once the arbiter granted this home the fiber: in the fiber's
   * turn (no read of the mirror runs beside it), brings the local copy up to the replica, its
   * inbox included (so the events this home enqueues next get the seqs the replica expects),
   * then calls `adopt` with the copy's record, and stops mirroring the fiber for good if `adopt`
   * resolves (`track` starts again, should the fiber move away later). A copy whose inbox
   * diverged from the replica's (events this home buffered and never shipped) is rebuilt.
   *
   * Failure semantics: a failed read or write rejects before `adopt` runs, and the fiber stays
   * mirrored; the caller asks again (the arbiter grants the same home the same epoch again).
   */
  handBack(fiberId: string, adopt: (record: FiberRecord) => Promise<void>): Promise<FiberRecord> {
    return this.#queued(fiberId, async () => {
      const synced = await this.#sync(fiberId);
      if (synced.status !== "mirrored")
        throw new Error(`Fiber ${fiberId} has no replica at the edge to take back from.`);
      const record = await this.#alignInbox(fiberId, synced.record, synced.inbox ?? []);
      await adopt(record);
      this.#released.add(fiberId);
      this.#checked.delete(fiberId);
      this.unfollow(fiberId);
      return record;
    });
  }

  /** Mirrors `fiberId` again (it moved away once more after `handBack`). */
  track(fiberId: string): void {
    this.#released.delete(fiberId);
  }

  /** Stops following `fiberId` (its copy is kept). */
  unfollow(fiberId: string): void {
    const timer = this.#followed.get(fiberId);
    if (timer !== undefined) clearTimeout(timer);
    this.#followed.delete(fiberId);
  }

  #queued<T>(fiberId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(fiberId) ?? Promise.resolve();
    const next = previous.then(work, work);
    this.#queues.set(fiberId, next);
    const done = () => {
      if (this.#queues.get(fiberId) === next) this.#queues.delete(fiberId);
    };
    next.then(done, done);
    return next;
  }

  /** Syncs `fiberId` every `pollMs` until its local copy holds the fiber's end (or `stop`). */
  follow(fiberId: string): void {
    if (this.#stopped || this.#followed.has(fiberId)) return;
    this.#followed.set(fiberId, undefined);
    const tick = async (): Promise<void> => {
      let wait = this.#pollMs;
      try {
        const result = await this.sync(fiberId);
        if (result.status !== "mirrored" || isTerminal(result.record.status)) {
          this.#followed.delete(fiberId);
          return;
        }
        this.#onSynced?.(fiberId, result.record);
      } catch (error) {
        this.#report(error, fiberId);
        wait = this.#pollMs * 4;
      }
      if (this.#stopped || !this.#followed.has(fiberId)) return;
      this.#followed.set(
        fiberId,
        setTimeout(() => void tick(), wait),
      );
    };
    void tick();
  }

  /** Stops following every fiber. */
  stop(): void {
    this.#stopped = true;
    for (const timer of this.#followed.values()) if (timer !== undefined) clearTimeout(timer);
    this.#followed.clear();
  }

  async #sync(fiberId: string): Promise<MirrorSync & { inbox?: InboxEvent[] }> {
    if (this.#released.has(fiberId)) return { status: "home" };
    const store = this.#store;
    const local = await store.getFiber(fiberId);
    const checked = local !== undefined && this.#checked.has(fiberId);
    const replica = await this.#source.readReplica(fiberId, checked ? local.streamHead : 0);
    if (replica === undefined) return { status: "missing" };
    if (!checked) {
      const kept = local !== undefined && (await this.#isPrefix(fiberId, replica.chunks));
      if (!kept) {
        // Synced only once rebuilt: the host shows a synced copy whole (Rule B for an away
        // fiber), and until the delete lands the old copy still holds chunks no page may see.
        const rebuilt = await this.#rebuild(fiberId, local, replica);
        this.#checked.add(fiberId);
        return { ...rebuilt, inbox: replica.inbox };
      }
      this.#checked.add(fiberId);
    }
    const current = local as FiberRecord;
    const chunks = replica.chunks.filter((c) => c.seq > current.streamHead);
    const unchanged =
      chunks.length === 0 &&
      replica.record.updatedAt === current.updatedAt &&
      replica.record.status === current.status &&
      replica.record.home?.epoch === current.home?.epoch;
    if (unchanged)
      return { status: "mirrored", record: current, rebuilt: false, appended: 0, inbox: replica.inbox };
    const group: WriteGroup = {
      fiberId,
      generation: current.generation,
      fiber: mirroredFields(replica.record),
      clearJournal: true,
      journal: replica.journal,
      snapshot: replica.snapshot ?? null,
      ...(chunks.length > 0 ? { chunks } : {}),
    };
    const result = await store.commit([group]);
    if (result.fenced.length > 0) {
      // Someone else wrote the copy meanwhile: compare it whole at the next read.
      this.#checked.delete(fiberId);
      throw new Error(`The local copy of fiber ${fiberId} changed while it was mirrored; it is read again.`);
    }
    const record = (await store.getFiber(fiberId)) ?? current;
    return { status: "mirrored", record, rebuilt: false, appended: chunks.length, inbox: replica.inbox };
  }

  /** Whether every local chunk is the replica's chunk at the same seq (the copy only lags). */
  async #isPrefix(fiberId: string, replicaChunks: readonly StreamChunk[]): Promise<boolean> {
    const localChunks = await this.#store.readStream(fiberId, 0);
    if (localChunks.length > replicaChunks.length) return false;
    return localChunks.every((chunk, i) => sameChunk(chunk, replicaChunks[i]));
  }

  /**
   * Makes the local inbox of `fiberId` the replica's: the events it lacks are enqueued (at the
   * replica's seqs) and the consumed marks copied. A local inbox that is not a prefix of the
   * replica's (events buffered here and never shipped, dropped by a fence) is rebuilt with the
   * whole copy. Resolves with the local record after.
   */
  async #alignInbox(
    fiberId: string,
    record: FiberRecord,
    inbox: readonly InboxEvent[],
  ): Promise<FiberRecord> {
    const store = this.#store;
    let local = await store.readInbox(fiberId);
    if (local.length > inbox.length || !local.every((e, i) => sameEvent(e, inbox[i]))) {
      const replica = await this.#source.readReplica(fiberId, 0);
      if (replica === undefined) throw new Error(`Fiber ${fiberId} has no replica at the edge any more.`);
      const rebuilt = await this.#rebuild(fiberId, record, replica);
      if (rebuilt.status !== "mirrored") throw new Error(`Fiber ${fiberId} could not be rebuilt.`);
      record = rebuilt.record;
      inbox = replica.inbox;
      local = [];
    }
    for (const event of inbox.slice(local.length)) {
      const { name, payload, at, eventId } = event;
      const stored = await store.enqueueEvent({
        fiberId,
        name,
        payload,
        at,
        ...(eventId ? { eventId } : {}),
      });
      if (stored.seq !== event.seq)
        throw new Error(
          `Fiber ${fiberId}'s inbox took seq ${stored.seq} where the replica has ${event.seq}.`,
        );
    }
    const consumed = new Map((await store.readInbox(fiberId)).map((e) => [e.seq, e.consumedBy]));
    const marks = inbox
      .filter((e) => e.consumedBy !== undefined && consumed.get(e.seq) !== e.consumedBy)
      .map((e) => ({ seq: e.seq, consumedBy: e.consumedBy as number }));
    const current = (await store.getFiber(fiberId)) ?? record;
    if (marks.length > 0) {
      const { fenced } = await store.commit([
        { fiberId, generation: current.generation, consumeEvents: marks },
      ]);
      if (fenced.length > 0)
        throw new Error(`The local copy of fiber ${fiberId} changed while it was taken back.`);
    }
    return current;
  }

  /** Replaces the local copy with the replica: one create with every chunk, then the journal. */
  async #rebuild(
    fiberId: string,
    local: FiberRecord | undefined,
    replica: ReplicaSnapshot,
  ): Promise<MirrorSync> {
    const store = this.#store;
    if (local !== undefined) await store.deleteFibers([fiberId]);
    const { owner: _owner, leaseUntil: _leaseUntil, ...rest } = replica.record;
    const head = replica.chunks.at(-1)?.seq ?? 0;
    const created = await store.createFiber({ ...rest, streamHead: head }, replica.chunks);
    if (created.status === "exists") {
      this.#checked.delete(fiberId);
      throw new Error(
        `Fiber ${fiberId} was created here while it was restored from the edge; it is read again.`,
      );
    }
    await store.commit([
      {
        fiberId,
        generation: created.record.generation,
        clearJournal: true,
        journal: replica.journal,
        snapshot: replica.snapshot ?? null,
      },
    ]);
    return { status: "mirrored", record: created.record, rebuilt: true, appended: replica.chunks.length };
  }
}

/** The replica's record fields a mirror keeps (`undefined` ones delete the local field). */
function mirroredFields(record: FiberRecord): Partial<FiberRecord> {
  const patch: Record<string, unknown> = {};
  for (const key of MIRRORED_FIELDS) patch[key] = record[key];
  return patch as Partial<FiberRecord>;
}

function sameEvent(a: InboxEvent, b: InboxEvent | undefined): boolean {
  return (
    b !== undefined &&
    a.seq === b.seq &&
    a.name === b.name &&
    a.at === b.at &&
    encodeValue(a.payload) === encodeValue(b.payload)
  );
}

function sameChunk(a: StreamChunk, b: StreamChunk | undefined): boolean {
  return (
    b !== undefined &&
    a.seq === b.seq &&
    a.type === b.type &&
    a.at === b.at &&
    encodeValue(a.data) === encodeValue(b.data)
  );
}
