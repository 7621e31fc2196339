/**
 * The `Store` contract: how the engine persists fibers, journals, snapshots, streams and events.
 * The engine owns this port and the backends implement it, so `src/core` imports nothing from
 * `src/store`.
 *
 * Implementations: `IdbStore` (IndexedDB via `idb`, `src/store`), `MemoryStore` (tests, ephemeral
 * hosts, `src/store`) and, at the edge, `SqliteStore` (`src/edge`). Every method is one atomic transaction, so the contract fits an
 * asynchronous IndexedDB and a synchronous SQL backend alike. `runStoreContract` (in
 * `src/store/store-contract.ts`) is the suite every implementation passes.
 */

import type {
  FiberRecord,
  FiberStatus,
  InboxEvent,
  JournalEntry,
  SnapshotRecord,
  StreamChunk,
} from "./records";

/** A filter for `listFibers`. */
export interface FiberQuery {
  /** One status or several; all fibers when omitted. */
  status?: FiberStatus | readonly FiberStatus[];
  /** Only fibers of this definition name. */
  name?: string;
  /** At most this many, oldest `createdAt` first. */
  limit?: number;
  /**
   * Only fibers with an `endedAt` at or before this time (ms since the epoch): ended fibers (the
   * engine sets `endedAt` on every end). A backend reads only those where it can (IndexedDB's
   * `endedAt` index), so a collector's listing costs what is expired, not what is retained.
   */
  endedBefore?: number;
  /**
   * `false`: the records may come without their input (`input` undefined), for a caller that
   * decides on a fiber's state alone (`recover()`, the lease sweep, the collector: a run takes its
   * input from its claim). `IdbStore` keeps inputs in rows of their own and then skips a read per
   * record; other stores may return the input all the same. Default `true`.
   */
  withInput?: boolean;
}

/**
 * The writes of one fiber inside a `commit`, applied only while the fiber's `generation` still
 * equals `generation` (the fence).
 */
export interface WriteGroup {
  fiberId: string;
  /** The generation the writer claimed; a mismatch skips the whole group and reports it fenced. */
  generation: number;
  /**
   * Fields merged into the fiber record (`undefined` values delete the field). `id` and
   * `generation` never change through a patch: only a claim moves the generation.
   */
  fiber?: Partial<FiberRecord>;
  /** Drop the whole journal before writing `journal` (a restart from scratch). */
  clearJournal?: boolean;
  /** Journal entries to put; an entry replaces the one at the same `pos`. */
  journal?: JournalEntry[];
  /** Replace the snapshot; `null` removes it. */
  snapshot?: SnapshotRecord | null;
  /**
   * Chunks to append. Their `seq` values must continue the stream right after the record's
   * `streamHead` (and the chunks of earlier groups of the fiber in the same commit), with no gap
   * and no repeat: otherwise the whole commit is refused with `stream_gap` and nothing is
   * written. The record's `streamHead` becomes the last chunk's `seq`.
   */
  chunks?: StreamChunk[];
  /**
   * Buffered events consumed by waits, marked with the consuming journal position; `null`
   * releases an event a discarded run had consumed (a restart from scratch), so the new run can
   * consume it again.
   */
  consumeEvents?: Array<{ seq: number; consumedBy: number | null }>;
  /**
   * Written without a claim, by a writer that may share its generation with writers in other
   * contexts (the continuity mirror's copy of a fiber another home runs, which an old and a new
   * Service Worker can both be writing): a store that remembers where a fiber's rows end must
   * read it again, in the commit's own transaction, rather than trust what it remembers.
   */
  unclaimed?: boolean;
  /**
   * On a runner's write that leaves its fiber waiting: every event of the fiber's inbox up to
   * this `seq` is known to the run (consumed, or not one its waits take), so the store looks only
   * past it for an event that makes the fiber due (`dueForInbox`). Without it, the whole inbox.
   */
  inboxSeen?: number;
}

/** What a `commit` did: the fiber ids whose groups were skipped because their fence failed. */
export interface CommitResult {
  fenced: string[];
  /**
   * Of `fenced`, the fibers refused because this home's lease on them ran out (continuity's
   * `ReplicatingStore`), not because another runner or home owns them: their runner stops with
   * `lease_lapsed` and looks again soon, instead of taking the fiber for moved.
   */
  lapsed?: string[];
}

/** How a runner asks for a fiber. */
export interface ClaimRequest {
  /** The runner asking. */
  owner: string;
  /** The current time (ms since the epoch), from the runtime's clock. */
  now: number;
  /** How long the claim holds without renewal. */
  leaseMs: number;
  /**
   * Take the fiber even if another owner's lease has not expired (the caller holds the Web Lock,
   * which proves the previous owner is gone, or is cancelling).
   */
  force?: boolean;
}

/** The outcome of `claimFiber`. */
export type ClaimResult =
  | { status: "claimed"; record: FiberRecord }
  | { status: "held"; record: FiberRecord }
  | { status: "missing" };

/** Options of `Store.deleteFibers`. */
export interface DeleteOptions {
  /**
   * Deletes an id listed here only while its record is still at this generation. A collector's
   * list of expired fibers can be stale: another context may have collected one meanwhile and
   * the id been started again, and that new fiber must not be deleted.
   */
  ifGeneration?: ReadonlyMap<string, number>;
}

/** Chunks of a fiber's stream and its record, read from one state. */
export interface StreamAndRecord {
  chunks: StreamChunk[];
  record: FiberRecord | undefined;
}

/**
 * `store.readStreamAndRecord` where the store has it; else the record, the chunks and the record
 * again, in turn: the same fiber both times, and the chunks are that fiber's (an id may be
 * collected and started again in between; then it reads again, and after three such turns
 * answers that the fiber is gone).
 */
export async function readStreamAndRecord(
  store: Store,
  fiberId: string,
  after: number,
  limit?: number,
): Promise<StreamAndRecord> {
  if (store.readStreamAndRecord) return store.readStreamAndRecord(fiberId, after, limit);
  for (let turn = 0; turn < 3; turn++) {
    const before = await store.getFiber(fiberId);
    const chunks = await store.readStream(fiberId, after, limit);
    const record = await store.getFiber(fiberId);
    // Absent before: created meanwhile, the chunks are its own (or none). Absent after: gone.
    if (before === undefined || record === undefined || sameFiber(before, record)) return { chunks, record };
  }
  return { chunks: [], record: undefined };
}

/** Whether two records of one id are the same fiber, not one collected and another started. */
function sameFiber(a: FiberRecord, b: FiberRecord): boolean {
  return a.createdAt === b.createdAt && a.createdGeneration === b.createdGeneration;
}

/** The outcome of `createFiber`. */
export type CreateResult =
  | { status: "created"; record: FiberRecord }
  | { status: "exists"; record: FiberRecord };

/**
 * Durable storage for the engine. Each method runs in one transaction.
 *
 * Failure semantics: a method that rejects wrote nothing. A method that resolved is durable to the
 * degree the implementation promises (`IdbStore`: a completed commit survives a browser crash with
 * its default relaxed durability).
 */
export interface Store {
  /** A short name of the backend, for diagnostics: "idb", "memory", "sqlite". */
  readonly kind: string;

  /** The fiber record, or `undefined`. */
  getFiber(id: string): Promise<FiberRecord | undefined>;
  /** The fiber started with this idempotency key, or `undefined`. */
  findByIdempotencyKey(key: string): Promise<FiberRecord | undefined>;
  /** Fibers matching `query`, oldest first. */
  listFibers(query?: FiberQuery): Promise<FiberRecord[]>;
  /** The fiber's journal, ordered by `pos`. */
  readJournal(fiberId: string): Promise<JournalEntry[]>;
  /** The fiber's snapshot, or `undefined`. */
  readSnapshot(fiberId: string): Promise<SnapshotRecord | undefined>;
  /** Chunks with `seq > after`, ascending, at most `limit`. */
  readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]>;
  /**
   * Optional: `readStream` and `getFiber` of one fiber answered from one state (one read
   * transaction), so a stream reader learns whose chunks it read without a second round trip.
   * Readers call `readStreamAndRecord(store, ...)`, which falls back to the record, the chunks
   * and the record again (`getFiber`, `readStream`, `getFiber`).
   */
  readStreamAndRecord?(fiberId: string, after: number, limit?: number): Promise<StreamAndRecord>;
  /** The fiber's buffered events (consumed ones included), ordered by `seq`. */
  readInbox(fiberId: string): Promise<InboxEvent[]>;

  /**
   * Writes `record` and its first `chunks` unless a fiber with the same id or idempotency key
   * exists, in which case nothing is written and the existing record is returned.
   *
   * The stored record (the `record` of a `created` result) may carry a higher `generation` than
   * the one given: a store never gives a fiber a generation that a deleted fiber reached, so a
   * runner of a deleted fiber stays fenced from a new fiber of the same id. Callers write under
   * the returned one.
   */
  createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult>;
  /**
   * Claims a non-terminal fiber for `request.owner`: bumps its generation and sets owner and
   * lease, unless another owner's lease is still valid (and `force` is not set).
   */
  claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult>;
  /**
   * Applies the groups whose fences hold, all in one transaction; reports the fenced ones. A
   * claimed group that sets its fiber `waiting` makes it due (`wakeAt`) at the time of the
   * earliest unconsumed event it waits for past the group's `inboxSeen` (every event, without
   * it), judged on the record and inbox the whole commit leaves (an earlier `wakeAt` stays; a
   * stamp ahead of the store's clock counts as now): `dueForInbox` in
   * `src/store/fiber-rules.ts`. `recover()` reads no inbox, and relies on it.
   */
  commit(groups: WriteGroup[]): Promise<CommitResult>;
  /**
   * Buffers an event for a fiber, assigning the next inbox `seq` (one above the fiber's highest,
   * never a seq it had before: a run that saw a seq takes it as known, `inboxSeen`); rejects if
   * the fiber is missing.
   * A fiber waiting for it becomes due at the event's time (or the store's, if earlier), in the
   * same transaction (`dueForEvent`). An event with an `eventId` the fiber's inbox already holds
   * (continuity: the same pushed event handed in twice, e.g. by two workers of one origin) is
   * not stored again: the held one is answered, in the same transaction as the check.
   */
  enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent>;
  /**
   * Deletes fibers with everything they own (journal, snapshot, stream, inbox), in one
   * transaction, and resolves with the ids of the records it deleted. Ids without a record lose
   * whatever rows they still have; a fiber whose generation is not `options.ifGeneration`'s is
   * left whole.
   *
   * A store remembers the highest generation a deleted fiber reached, and `createFiber` starts a
   * new fiber above it (`aboveGenerationFloor` in `fiber-rules.ts`).
   */
  deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]>;
  /** Releases the backend; later calls reject with `store_closed`. */
  close(): Promise<void>;
}
