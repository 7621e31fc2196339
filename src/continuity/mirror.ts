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

import { type FiberRecord, isTerminal, type StreamChunk } from "../core/records";
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
}

/** What one `sync` did. */
export type MirrorSync =
  /** The local copy holds the replica as read (`rebuilt`: the old copy diverged, or there was none). */
  | { status: "mirrored"; record: FiberRecord; rebuilt: boolean; appended: number }
  /** The edge has no replica of the fiber. */
  | { status: "missing" };

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
  #stopped = false;

  constructor(options: MirrorOptions) {
    this.#store = options.store;
    this.#source = options.source;
    this.#pollMs = options.pollMs ?? 500;
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
    const previous = this.#queues.get(fiberId) ?? Promise.resolve();
    const next = previous.then(
      () => this.#sync(fiberId),
      () => this.#sync(fiberId),
    );
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
        if (result.status === "missing" || isTerminal(result.record.status)) {
          this.#followed.delete(fiberId);
          return;
        }
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

  async #sync(fiberId: string): Promise<MirrorSync> {
    const store = this.#store;
    const local = await store.getFiber(fiberId);
    const checked = local !== undefined && this.#checked.has(fiberId);
    const replica = await this.#source.readReplica(fiberId, checked ? local.streamHead : 0);
    if (replica === undefined) return { status: "missing" };
    if (!checked) {
      const kept = local !== undefined && (await this.#isPrefix(fiberId, replica.chunks));
      this.#checked.add(fiberId);
      if (!kept) return this.#rebuild(fiberId, local, replica);
    }
    const current = local as FiberRecord;
    const chunks = replica.chunks.filter((c) => c.seq > current.streamHead);
    const unchanged =
      chunks.length === 0 &&
      replica.record.updatedAt === current.updatedAt &&
      replica.record.status === current.status &&
      replica.record.home?.epoch === current.home?.epoch;
    if (unchanged) return { status: "mirrored", record: current, rebuilt: false, appended: 0 };
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
    return { status: "mirrored", record, rebuilt: false, appended: chunks.length };
  }

  /** Whether every local chunk is the replica's chunk at the same seq (the copy only lags). */
  async #isPrefix(fiberId: string, replicaChunks: readonly StreamChunk[]): Promise<boolean> {
    const localChunks = await this.#store.readStream(fiberId, 0);
    if (localChunks.length > replicaChunks.length) return false;
    return localChunks.every((chunk, i) => sameChunk(chunk, replicaChunks[i]));
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

function sameChunk(a: StreamChunk, b: StreamChunk | undefined): boolean {
  return (
    b !== undefined &&
    a.seq === b.seq &&
    a.type === b.type &&
    a.at === b.at &&
    encodeValue(a.data) === encodeValue(b.data)
  );
}
