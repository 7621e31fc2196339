/**
 * `IdbStore`: the `Store` contract on IndexedDB (through `idb`), the store of browser and Service
 * Worker hosts.
 *
 * Every call runs inside one IndexedDB transaction; writes use the configured durability
 * (`relaxed` by default). Cost is per transaction, not per byte, so `commit` issues all its
 * writes without waiting on each and awaits only the transaction's completion, reads made in one
 * turn share a readonly transaction (`IdbConnection`), and claims made while another claim is
 * being written share the next one (`CallBatcher`).
 *
 * It also keeps the continuity outbox (`idb-outbox.ts`): `createFiber`, `commit` and
 * `enqueueEvent` given an `OutboxWrite` put each replicated fiber's entry into the outbox in the
 * write's own transaction, and `loadOutbox` / `saveOutbox` are what `Outbox.open` reads and
 * writes. Writes of other fibers touch none of it.
 */

import { type IDBPObjectStore, unwrap } from "idb";
import { homeEventId } from "../continuity/protocol";
import { InvalidInputError, StoreError } from "../core/errors";
import type { FiberRecord, InboxEvent, JournalEntry, SnapshotRecord, StreamChunk } from "../core/records";
import type {
  ClaimRequest,
  ClaimResult,
  CommitResult,
  CreateResult,
  DeleteOptions,
  FiberQuery,
  Store,
  StreamAndRecord,
  WriteGroup,
} from "../core/store";
import {
  aboveGenerationFloor,
  assertTakesEvents,
  decideClaim,
  deletable,
  dueForEvent,
  effectiveLimit,
  finishListing,
  queriedStatuses,
  raiseGenerationFloor,
} from "./fiber-rules";
import { CallBatcher } from "./idb-batch";
import {
  commitGroups,
  commitScope,
  FENCE_KEEP_MS,
  type Fence,
  FenceFailed,
  FiberKeys,
  fenceRow,
  journalWritten,
  type Names,
  publicRecord,
  recentFences,
  rowsOf,
  StaleKeys,
  storedRecord,
  type Tx,
  type Written,
} from "./idb-commit";
import { AbortedOnPurpose, commitNow, IdbConnection } from "./idb-connection";
import {
  type FiberlineSchema,
  floorFenceKey,
  floorFenceKeys,
  floorFenceRow,
  GENERATION_FLOOR,
  hasInlineInput,
  NEXT_HANDLE,
  type RowKey,
  STASH_TOMBSTONES,
  type StashTombstones,
  type StoredFiber,
  TOMBSTONES,
  type Tombstones,
} from "./idb-database";
import {
  type AdoptedOutbox,
  adoptOutbox,
  appendToOutbox,
  awayError,
  firstHead,
  loadOutbox,
  type OutboxProgress,
  type OutboxWrite,
  outboxOf,
  type Placed,
  reportPlaced,
  type SavedOutbox,
  saveOutbox,
} from "./idb-outbox";
import {
  type ChunkRow,
  decodeChunk,
  decodeInboxEvent,
  decodeStash,
  emptyStash,
  encodeChunk,
  encodeInboxEvent,
  foldSegments,
  type InboxRow,
  inboxOf,
  stashesOf,
  stashTombstoneKey,
  writtenStashesOf,
} from "./idb-rows";
import { dropOrphans, isConstraintError, StashCollided, stashOnly } from "./idb-stashes";

/** One `claimFiber` call. */
interface Claim {
  id: string;
  request: ClaimRequest;
}

/** Options of `IdbStore`. */
export interface IdbStoreOptions {
  /** The IndexedDB database name; default `"fiberline"`. */
  name?: string;
  /**
   * Transaction durability of writes; default `"relaxed"` (a completed write survives a browser
   * crash; an OS crash or power loss can lose the last seconds). `"strict"` flushes to disk on
   * every write, about twice as slow.
   */
  durability?: "relaxed" | "strict";
  /**
   * The IndexedDB factory; default `globalThis.indexedDB`. Inject one for tests (`new IDBFactory()`
   * from `fake-indexeddb`); `idb` still needs the IndexedDB classes as globals
   * (`import "fake-indexeddb/auto"` in Node). Or a function resolving to one, called at each
   * open, e.g. a storage bucket's, which has its own quota and persistence:
   * `() => navigator.storageBuckets.open("fibers", { persisted: true }).then((b) => b.indexedDB)`.
   */
  indexedDB?: IDBFactory | (() => Promise<IDBFactory>);
  /**
   * How many fibers' row keys (handle, next journal segment) the store keeps in memory; default
   * 256. A fiber beyond that, least recently used, costs its next commit one extra read.
   */
  keyCacheSize?: number;
  /**
   * Every how many commits of a fiber's journal they are folded into one row; default 64. Each
   * commit appends a row (a step's `started` entry, then its `completed` one in the next), so a
   * long journal would be read back, on every recovery, as one row per commit with each step
   * twice; a fold rewrites the last rows as one holding each step once, in the commit that
   * reaches the count (no transaction of its own). `0` (or `1`) never folds.
   */
  journalFold?: number;
}

/** The object stores a fiber's registration writes (without a replicated fiber's outbox). */
const CREATE_STORES = ["fibers", "handles", "inputs", "meta", "stashes", "streamChunks"] as const;

/** What a registration written blind writes: the same, but `meta` (its handle is reserved). */
const BLIND_STORES = ["fibers", "handles", "inputs", "stashes", "streamChunks"] as const;

/**
 * How many handles a registration takes from `nextHandle` when it reads it: the first for its
 * fiber, the rest for the connection's next registrations, written blind. Handles are never
 * reused; what is left of a block at close is lost.
 */
const HANDLE_BLOCK = 64;

/**
 * What a registration that read `meta` left for the next ones to be written blind: the handles
 * `[next, end)` it reserved in database `db`, and the generation floor it read there.
 */
interface Reserved {
  db: IDBDatabase;
  next: number;
  end: number;
  floor: number | undefined;
}

/** A blind registration cannot be written (no handle reserved): the reading one runs. */
class NothingReserved extends AbortedOnPurpose {}

/**
 * Writes `meta`'s list `key` of tombstones kept for `FENCE_KEEP_MS` (each `[..., at]`, when it
 * was put): the `kept` ones still within it, then `added`; each one past it is removed with
 * `remove`. A list left as it was is not written again.
 */
function keepTombstones<T extends readonly [unknown, unknown, number]>(
  meta: IDBObjectStore,
  key: string,
  kept: readonly T[] | undefined,
  added: readonly T[],
  now: number,
  remove: (tombstone: T) => void,
): void {
  const still = (kept ?? []).filter((tombstone) => {
    if (now - tombstone[2] <= FENCE_KEEP_MS) return true;
    remove(tombstone);
    return false;
  });
  if (added.length > 0 || still.length !== (kept ?? []).length) meta.put([...still, ...added], key);
}

/**
 * A `Store` on IndexedDB, for pages and Service Workers.
 *
 * Failure semantics: each method is one transaction; a method that rejects wrote nothing (the
 * transaction is aborted). IndexedDB failures reject with `StoreError` `store_error` whose message
 * says what to do (quota, non-cloneable value...) and whose `cause` is the `DOMException`. A
 * resolved write is durable per `durability`: with the default `"relaxed"`, a completed commit
 * survives a browser crash. When another context upgrades or deletes the database, this store
 * closes its connection and reopens on the next call; after `close()` every call rejects with
 * `store_closed`.
 *
 * @example
 * const store = new IdbStore({ name: "fiberline", durability: "relaxed" });
 * const runtime = createRuntime({ store, fibers: [research] });
 */
export class IdbStore implements Store {
  readonly kind = "idb";
  /** The IndexedDB database name. */
  readonly name: string;
  /** The durability of write transactions. */
  readonly durability: "relaxed" | "strict";
  readonly #db: IdbConnection;
  readonly #keys: FiberKeys;
  /** What the last reading registration left for blind ones (`createFiber`). */
  #reserved: Reserved | undefined;
  readonly #claims = new CallBatcher<Claim, ClaimResult>(
    (claims) => this.#claimAll(claims),
    (claim) => claim.id,
  );

  constructor(options: IdbStoreOptions = {}) {
    this.name = options.name ?? "fiberline";
    this.durability = options.durability ?? "relaxed";
    this.#db = new IdbConnection({
      name: this.name,
      durability: this.durability,
      factory: options.indexedDB,
      kind: this.kind,
    });
    this.#keys = new FiberKeys(
      wholeOption("keyCacheSize", options.keyCacheSize, 0),
      wholeOption("journalFold", options.journalFold, 0),
    );
  }

  async getFiber(id: string): Promise<FiberRecord | undefined> {
    return this.#db.read("getFiber", ["fibers", "inputs"], async (tx) => {
      // The input is read with the record, in the same round trip (an old record ignores it).
      const [stored, input] = await Promise.all([
        tx.objectStore("fibers").get(id),
        tx.objectStore("inputs").get(id),
      ]);
      return this.#public(stored, input);
    });
  }

  async findByIdempotencyKey(key: string): Promise<FiberRecord | undefined> {
    return this.#db.read("findByIdempotencyKey", ["fibers", "inputs"], async (tx) => {
      const stored = await tx.objectStore("fibers").index("idempotencyKey").get(key);
      return this.#public(stored, await inputOf(tx, stored));
    });
  }

  async listFibers(query?: FiberQuery): Promise<FiberRecord[]> {
    const statuses = queriedStatuses(query);
    const limit = effectiveLimit(query?.limit);
    const endedBefore = query?.endedBefore;
    if (limit === 0 || statuses?.length === 0 || Number.isNaN(endedBefore)) return this.#db.nothing([]);
    return this.#db.read("listFibers", ["fibers", "inputs"], async (tx) => {
      const fibers = tx.objectStore("fibers");
      // The inputs of the records listed, once filtered and cut to the limit (unless not wanted).
      const withInput = query?.withInput !== false;
      const publicAll = async (stored: StoredFiber[]) => {
        const listed = finishListing(stored, query);
        const inputs = withInput ? await Promise.all(listed.map((record) => inputOf(tx, record))) : [];
        return listed.map((record, i) => this.#public(record, inputs[i]) as FiberRecord);
      };
      if (endedBefore !== undefined) {
        // Only ended fibers have an `endedAt`: the index holds them alone, oldest end first.
        const ended = await fibers.index("endedAt").getAll(IDBKeyRange.upperBound(endedBefore));
        const matching =
          statuses === undefined ? ended : ended.filter((record) => statuses.includes(record.status));
        return publicAll(matching);
      }
      if (statuses === undefined) {
        // The createdAt index already orders by createdAt, then id (the primary key).
        const records = await fibers
          .index("createdAt")
          .getAll(null, query?.name === undefined ? limit : undefined);
        return publicAll(records);
      }
      const byStatus = fibers.index("status");
      const lists = await Promise.all(statuses.map((status) => byStatus.getAll(status)));
      return publicAll(lists.flat());
    });
  }

  async readJournal(fiberId: string): Promise<JournalEntry[]> {
    return this.#db.read("readJournal", ["handles", "journalSegments"], async (tx) => {
      const segments = await this.#rowsOf(tx, fiberId, (handle) =>
        tx.objectStore("journalSegments").getAll(rowsOf(handle)),
      );
      return foldSegments(fiberId, segments ?? []);
    });
  }

  async readSnapshot(fiberId: string): Promise<SnapshotRecord | undefined> {
    return this.#db.read("readSnapshot", ["fibers", "stashes"], async (tx) => {
      // The fiber's one stash row, unless the fiber is gone (its tombstone, or an orphan not yet
      // removed: neither is read).
      const [key, row] = await Promise.all([
        tx.objectStore("fibers").getKey(fiberId),
        tx.objectStore("stashes").index("fiber").get(fiberId),
      ]);
      return key === undefined ? undefined : decodeStash(row);
    });
  }

  async readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]> {
    const max = effectiveLimit(limit);
    if (max === 0) return this.#db.nothing([]);
    return this.#db.read("readStream", ["handles", "streamChunks"], async (tx) => {
      const read = await this.#rowsOf(tx, fiberId, (handle) => {
        const range = IDBKeyRange.bound([handle, after], [handle, Number.POSITIVE_INFINITY], true, false);
        // The seq is in the key only (idb-rows.ts): keys and values, both requests in flight at once.
        const chunks = tx.objectStore("streamChunks");
        return Promise.all([chunks.getAllKeys(range, max), chunks.getAll(range, max)]);
      });
      if (read === undefined) return [];
      const [keys, rows] = read;
      return rows.map((row: ChunkRow, i) => decodeChunk(fiberId, (keys[i] as RowKey)[1], row));
    });
  }

  /** Both reads issued in one turn share one readonly transaction (`IdbConnection.read`). */
  async readStreamAndRecord(fiberId: string, after: number, limit?: number): Promise<StreamAndRecord> {
    const [chunks, record] = await Promise.all([
      this.readStream(fiberId, after, limit),
      this.getFiber(fiberId),
    ]);
    return { chunks, record };
  }

  async readInbox(fiberId: string): Promise<InboxEvent[]> {
    return this.#db.read("readInbox", ["inboxEvents"], async (tx) => {
      const rows = await tx.objectStore("inboxEvents").getAll(inboxOf(fiberId));
      return rows.map((row) => decodeInboxEvent(fiberId, row));
    });
  }

  /**
   * With `outbox` naming the fiber replicated, the created fiber's outbox starts in the same
   * transaction: its head, and its first entry (position 1, the record and `chunks`).
   *
   * Written blind when it can be (see `#createBlind`), else after reading what it needs.
   */
  async createFiber(given: FiberRecord, chunks: StreamChunk[], outbox?: OutboxWrite): Promise<CreateResult> {
    assertStringKey("createFiber", "fiber id", given.id);
    if (given.idempotencyKey !== undefined)
      assertStringKey("createFiber", "idempotency key", given.idempotencyKey);
    const replicated = outbox?.replicated.has(given.id) === true;
    if (!replicated && this.#reserved !== undefined) {
      try {
        return await this.#createBlind(given, chunks);
      } catch {
        // A collision, nothing reserved, or any other failure (a value that cannot be cloned,
        // quota): nothing was written, and the reading registration gives the answer it always
        // gave (`exists` for a taken id whatever the new record holds, else the same failure).
      }
    }
    return this.#createReading(given, chunks, replicated ? outbox : undefined);
  }

  /**
   * A registration that reads first whether the id or the idempotency key is taken, the next
   * handle and the generation floor. It reserves `HANDLE_BLOCK` handles, and sets the floor's
   * row in `stashes` where the floor is (it always is, unless a build wrote the floor without it),
   * for the next registrations to be written blind.
   */
  async #createReading(
    given: FiberRecord,
    chunks: StreamChunk[],
    outbox?: OutboxWrite,
  ): Promise<CreateResult> {
    const scope =
      outbox !== undefined
        ? [...CREATE_STORES, "outbox" as const, "outboxFibers" as const]
        : [...CREATE_STORES];
    let placed: Placed[] = [];
    let reserved: Reserved | undefined;
    const result = await this.#db.write("createFiber", scope, async (tx): Promise<CreateResult> => {
      const fibers = tx.objectStore("fibers");
      const meta = tx.objectStore("meta");
      const key = given.idempotencyKey;
      const inputs = tx.objectStore("inputs");
      const [byId, byKey, next, floor] = await Promise.all([
        fibers.get(given.id),
        key === undefined ? undefined : fibers.index("idempotencyKey").get(key),
        meta.get(NEXT_HANDLE) as Promise<number | undefined>,
        meta.get(GENERATION_FLOOR) as Promise<number | undefined>,
      ]);
      const existing = byId ?? byKey;
      // Joining (rare: a retry, a double submit) reads the existing fiber's input; creating does not.
      if (existing !== undefined) {
        return {
          status: "exists",
          record: this.#public(existing, await inputOf(tx, existing)) as FiberRecord,
        };
      }
      const record = aboveGenerationFloor(given, floor);
      const handle = next ?? 1;
      unwrap(meta).put(handle + HANDLE_BLOCK, NEXT_HANDLE);
      reserved = { db: unwrap(tx).db, next: handle + 1, end: handle + HANDLE_BLOCK, floor };
      unwrap(tx.objectStore("handles")).put(handle, record.id);
      unwrap(fibers).put(storedRecord(record, handle));
      unwrap(inputs).put(record.input, record.id);
      // The fiber's stash row, its fence for stashes; first any orphan or tombstone of an earlier
      // fiber of this id.
      const stashes = unwrap(tx.objectStore("stashes"));
      stashes.delete(stashesOf(record.id));
      stashes.put(emptyStash(record.id), [record.id, record.generation]);
      stashes.delete(floorFenceKeys());
      stashes.put(floorFenceRow(), floorFenceKey(floor));
      const rawChunks = unwrap(tx.objectStore("streamChunks"));
      for (const chunk of chunks) rawChunks.put(encodeChunk(chunk), [handle, chunk.seq]);
      const created = structuredClone(record);
      if (outbox !== undefined) {
        // Rows an earlier fiber of this id left (deleted without its outbox: never) go first.
        unwrap(tx.objectStore("outbox")).delete(outboxOf(record.id));
        placed = appendToOutbox(unwrap(tx), [
          { fiberId: record.id, head: firstHead(record), body: { type: "create", record: created, chunks } },
        ]);
      }
      commitNow(unwrap(tx));
      this.#keys.bind(unwrap(tx).db);
      this.#keys.rememberWriter(record.id, handle, record.generation, 1);
      return { status: "created", record: created };
    });
    reportPlaced(outbox, placed);
    // Only now that the reservation is durable may blind registrations take its handles.
    if (reserved !== undefined) this.#reserved = reserved;
    return result;
  }

  /**
   * A registration written without reading anything first: its writes go out at once, and the
   * transaction commits once they are done. (Not with `commit()` called at once: on a full
   * origin, Chromium 156 then sometimes never ends the transaction, neither completing nor
   * aborting it; `e2e/storage.spec.ts`'s refused start hung 3 times in 5.) Each thing the reading one would have read is checked by a collision inside IndexedDB
   * instead, which fails the request and aborts the transaction (nothing written):
   * - the record goes in with `add`: a taken id, or a taken idempotency key (a unique index),
   *   collides;
   * - the generation is set above the floor the last reading registration read, and the floor's
   *   row in `stashes` is put at that floor: had the floor moved since (a fiber deleted in another
   *   context), its row stands at another key and collides on the unique index, as a stale stash
   *   does (`idb-stashes.ts`);
   * - the fiber's own stash row collides with an orphan or a tombstone (`stashTombstoneKey`) an
   *   earlier fiber of this id left;
   * - the handle comes from the block that registration reserved; in a database deleted and
   *   created again under this connection, none is used.
   * After a collision the reading registration runs, and answers `exists` or clears what stood.
   */
  async #createBlind(given: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    const written = await this.#db.run("createFiber", [...BLIND_STORES], "readwrite", async (tx) => {
      const reserved = this.#reserved;
      if (reserved === undefined || reserved.db !== tx.db || reserved.next >= reserved.end) {
        tx.abort();
        throw new NothingReserved();
      }
      const handle = reserved.next++;
      const record = aboveGenerationFloor(structuredClone(given), reserved.floor);
      const stashes = tx.objectStore("stashes");
      tx.objectStore("fibers").add(storedRecord(record, handle));
      tx.objectStore("handles").put(handle, record.id);
      tx.objectStore("inputs").put(record.input, record.id);
      stashes.put(emptyStash(record.id), [record.id, record.generation]);
      stashes.put(floorFenceRow(), floorFenceKey(reserved.floor));
      const rawChunks = tx.objectStore("streamChunks");
      for (const chunk of chunks) rawChunks.put(encodeChunk(chunk), [handle, chunk.seq]);
      // A collision fails its request, which aborts the transaction: `run` rejects, and
      // `createFiber` hands the call to the reading registration.
      return { record, handle, db: tx.db };
    });
    this.#keys.bind(written.db);
    this.#keys.rememberWriter(written.record.id, written.handle, written.record.generation, 1);
    return { status: "created", record: written.record };
  }

  async claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    return this.#claims.submit({ id, request });
  }

  /**
   * Claims issued together, in one transaction (`CallBatcher`): each decided on the record read
   * in it, as alone, but the round trips and the commit are paid once for the batch.
   */
  async #claimAll(claims: Claim[]): Promise<ClaimResult[]> {
    return this.#db.write("claimFiber", ["fibers", "inputs", "stashes", "journalSegments"], async (tx) => {
      this.#keys.bind(unwrap(tx).db);
      const fibers = tx.objectStore("fibers");
      const inputs = tx.objectStore("inputs");
      const byFiber = tx.objectStore("stashes").index("fiber");
      const journal = tx.objectStore("journalSegments");
      // Where each journal ends, read with the records for the fibers whose handle is known.
      const lastKey = (handle: number) => journalEnd(journal, handle);
      const known = claims.map(({ id }) => this.#keys.handle(id));
      const [records, inputRows, stashRows, lastKeys] = await Promise.all([
        Promise.all(claims.map(({ id }) => fibers.get(id))),
        Promise.all(claims.map(({ id }) => inputs.get(id))),
        Promise.all(claims.map(({ id }) => byFiber.openCursor(id))),
        Promise.all(known.map((handle) => (handle === undefined ? undefined : lastKey(handle)))),
      ]);
      const stashes = unwrap(tx.objectStore("stashes"));
      const fencing: Array<Promise<void>> = [];
      const results = claims.map(({ id, request }, i): ClaimResult => {
        const stored = records[i];
        const result = decideClaim(
          stored === undefined ? undefined : publicRecord(stored, inputRows[i]),
          request,
        );
        if (stored === undefined || result.status !== "claimed") return result;
        const { handle } = stored;
        // A record written before schema v8 leaves its input here (`StoredFiber.input`).
        if (hasInlineInput(stored)) unwrap(inputs).put(result.record.input, id);
        // The stash row moves to the new generation: from now on, a stash of the old one collides.
        const stash = stashRows[i] ?? null;
        if (stash !== null) stashes.delete(stash.primaryKey);
        stashes.put(stash?.value ?? emptyStash(id), [id, result.record.generation]);
        // A stale handle remembered (the fiber re-created elsewhere) reads its journal's end again.
        const last = known[i] === handle ? lastKeys[i] : undefined;
        fencing.push(
          (last === undefined ? lastKey(handle) : Promise.resolve(last)).then((end) => {
            const claimed = storedRecord(result.record, handle);
            const fences = this.#claimFence(journal, stored, claimed, end);
            unwrap(fibers).put(fences.length > 0 ? { ...claimed, fences } : claimed);
          }),
        );
        return result;
      });
      await Promise.all(fencing);
      commitNow(unwrap(tx));
      return results;
    });
  }

  /**
   * Puts a fence row (`fenceRow`) at the next key of the claimed fiber's journal (`end` is its
   * last), where the writer of the generation before appends next (`FiberKeys.fenceless`), and
   * remembers the new generation's writer: its segments go on after the fence. Returns the
   * fences the record keeps (`StoredFiber.fences`): the recent ones and this one.
   */
  #claimFence(
    journal: IDBPObjectStore<FiberlineSchema, Names[], "journalSegments", "readwrite">,
    before: StoredFiber,
    claimed: StoredFiber,
    end: number,
  ): Fence[] {
    const now = Date.now();
    const fences = recentFences(before, now);
    // A journal with no row has no writer that appends without a fence read (it confirmed none).
    if (end === 0) {
      this.#keys.rememberWriter(claimed.id, claimed.handle, claimed.generation, 1);
      return fences;
    }
    unwrap(journal).put(fenceRow(now), [claimed.handle, end + 1]);
    this.#keys.rememberWriter(claimed.id, claimed.handle, claimed.generation, end + 2);
    return [...fences, [end + 1, now]];
  }

  /**
   * With `outbox`, the groups of the fibers it names replicated go into the outbox in the same
   * transaction, each at its fiber's next position; a fiber fenced from this home (its outbox
   * head is `away`) is reported fenced, as a failed generation fence is.
   */
  async commit(groups: WriteGroup[], outbox?: OutboxWrite): Promise<CommitResult> {
    if (groups.length === 0) return this.#db.nothing({ fenced: [] });
    const replicating =
      outbox !== undefined && groups.some((group) => outbox.replicated.has(group.fiberId))
        ? outbox
        : undefined;
    const fenced: string[] = [];
    let pending = groups;
    // A fence that fails (another runner claimed the fiber: rare) aborts the optimistic
    // transaction; the commit then runs again without that fiber's groups. Stale handles (the
    // fiber was deleted and re-created by another context) are forgotten and read again.
    let readFences = false;
    for (let attempt = 1; ; attempt++) {
      try {
        // Stash-only batches go out without fence reads (`commitStashes`), until one collides.
        // (Never for a replicated fiber: its outbox head is read with the fences.)
        const stashesOnly = !readFences && replicating === undefined && pending.every(stashOnly);
        const begun = stashesOnly ? Date.now() : 0;
        const { orphaned, placed, written } = await this.#db.run(
          "commit",
          commitScope(pending, stashesOnly, replicating?.replicated, this.#keys),
          "readwrite",
          (tx) => commitGroups(tx, pending, this.#keys, stashesOnly, replicating),
        );
        reportPlaced(replicating, placed);
        this.#confirm(pending, written);
        if (stashesOnly) {
          for (const group of pending) if (!orphaned.includes(group)) this.#keys.confirmStash(group, begun);
        }
        if (orphaned.length > 0) await dropOrphans(this.#db, orphaned, fenced);
        return { fenced };
      } catch (error) {
        // A stash collided with its fiber's row: write again with fence reads, which name the
        // stale groups (only ever after a takeover, so the extra round trip is rare).
        if (error instanceof StashCollided && !readFences) {
          readFences = true;
          continue;
        }
        // The aborted attempt named stale or fenced fibers (all of them among `pending`), and took
        // segment numbers it never wrote: the retry learns every fiber's keys again from disk,
        // so a fold range is not left with a hole at its end (and never folded).
        const segmentTaken = isSegmentCollision(error) && pending.some(journalWritten);
        if (error instanceof StaleKeys || error instanceof FenceFailed || segmentTaken) {
          for (const group of pending) this.#keys.forget(group.fiberId);
        }
        if (segmentTaken) {
          if (attempt < 3) continue;
          throw error;
        }
        if (error instanceof StaleKeys) {
          // Fresh keys are read in the retry; stale again means the fiber keeps being re-created.
          if (attempt < 3) continue;
          throw new StoreError(
            "store_error",
            `Fiber ${error.fiberIds.join(", ")} was deleted and re-created by another context during each of ${attempt} attempts to write it; nothing was written. Retry once the other context is done.`,
          );
        }
        if (!(error instanceof FenceFailed)) throw error;
        for (const group of error.groups) {
          if (!fenced.includes(group.fiberId)) fenced.push(group.fiberId);
        }
        pending = pending.filter((group) => !error.groups.includes(group));
        if (pending.length === 0) return { fenced };
      }
    }
  }

  /** Confirms the writers of a complete commit's `groups` (`FiberKeys.confirm`). */
  #confirm(groups: readonly WriteGroup[], written: readonly Written[]): void {
    const keys = this.#keys;
    for (const group of groups) {
      if (!journalWritten(group)) continue;
      const segment = written.find((w) => w.group === group);
      const handle = segment?.handle ?? keys.handle(group.fiberId);
      if (handle !== undefined) keys.confirm(group, handle, segment?.segment);
    }
  }

  /**
   * With `outbox` naming the fiber replicated, the event goes into its outbox in the same
   * transaction (its id `homeEventId`'s); a fiber fenced from this home rejects with `fenced`.
   */
  async enqueueEvent(
    event: Omit<InboxEvent, "seq" | "consumedBy">,
    outbox?: OutboxWrite,
  ): Promise<InboxEvent> {
    const replicated = outbox?.replicated.has(event.fiberId) === true;
    const scope: Names[] = replicated
      ? ["fibers", "inboxEvents", "outbox", "outboxFibers"]
      : ["fibers", "inboxEvents"];
    let placed: Placed[] = [];
    const stored = await this.#db.write("enqueueEvent", scope, async (tx) => {
      const inbox = tx.objectStore("inboxEvents");
      const [record, last, head, rows] = await Promise.all([
        tx.objectStore("fibers").get(event.fiberId),
        inbox.openKeyCursor(inboxOf(event.fiberId), "prev"),
        replicated ? tx.objectStore("outboxFibers").get(event.fiberId) : undefined,
        // An id another home gave the event: one the inbox holds is that event, not a new one.
        event.eventId === undefined
          ? undefined
          : (inbox.getAll(inboxOf(event.fiberId)) as Promise<InboxRow[]>),
      ]);
      assertTakesEvents(event.fiberId, record);
      const held = rows?.find((row) => row.eventId === event.eventId);
      if (held !== undefined) {
        commitNow(unwrap(tx));
        return decodeInboxEvent(event.fiberId, held);
      }
      if (head?.away !== undefined) throw awayError(event.fiberId, head.away);
      const due = dueForEvent(record as StoredFiber, event, Date.now());
      if (due !== undefined) unwrap(tx.objectStore("fibers")).put(due);
      const stored: InboxEvent = {
        fiberId: event.fiberId,
        seq: last === null ? 1 : (last.key as [string, number])[1] + 1,
        name: event.name,
        payload: event.payload,
        at: event.at,
        ...(event.eventId === undefined ? {} : { eventId: event.eventId }),
      };
      unwrap(inbox).put(encodeInboxEvent(stored), [event.fiberId, stored.seq]);
      if (outbox !== undefined && head !== undefined) {
        const eventId = homeEventId(outbox.home, head.epoch, stored.seq);
        placed = appendToOutbox(unwrap(tx), [
          { fiberId: event.fiberId, head, body: { type: "event", event: structuredClone(stored), eventId } },
        ]);
      }
      commitNow(unwrap(tx));
      return structuredClone(stored);
    });
    reportPlaced(outbox, placed);
    return stored;
  }

  async deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    for (const id of ids) assertStringKey("deleteFibers", "fiber id", id);
    const unique = [...new Set(ids)];
    if (unique.length === 0) return this.#db.nothing([]);
    const stores = [
      "fibers",
      "handles",
      "stashes",
      "inboxEvents",
      "inputs",
      "journalSegments",
      "streamChunks",
    ] as const;
    let moved: { db: IDBDatabase; floor: number } | undefined;
    // A deleted fiber's outbox goes with it (a replicating host deletes only what is acknowledged).
    const gone = await this.#db.write(
      "deleteFibers",
      [...stores, "meta", "outbox", "outboxFibers"],
      async (tx) => {
        const meta = tx.objectStore("meta");
        const [handles, records, floor, kept, stashesKept] = await Promise.all([
          Promise.all(unique.map((id) => tx.objectStore("handles").get(id))),
          Promise.all(unique.map((id) => tx.objectStore("fibers").get(id))),
          meta.get(GENERATION_FLOOR) as Promise<number | undefined>,
          meta.get(TOMBSTONES) as Promise<Tombstones | undefined>,
          meta.get(STASH_TOMBSTONES) as Promise<StashTombstones | undefined>,
        ]);
        // Where each journal ends: its tombstone goes at the next key.
        const journal = tx.objectStore("journalSegments");
        const ends = await Promise.all(
          handles.map((handle) => (handle === undefined ? 0 : journalEnd(journal, handle))),
        );
        const now = Date.now();
        const tombstones: Tombstones = [];
        const [fibers, handleRows, stashes, inbox, inputs, ...rows] = stores.map((name) =>
          unwrap(tx.objectStore(name)),
        );
        const outboxRows = unwrap(tx.objectStore("outbox"));
        const outboxHeads = unwrap(tx.objectStore("outboxFibers"));
        const deleted: string[] = [];
        const stashTombstones: StashTombstones = [];
        let raised = floor;
        unique.forEach((id, i) => {
          const record = records[i];
          // A missing record's rows (a torn write, an orphan; an id deleted before keeps its
          // stash tombstone) are removed all the same.
          if (record !== undefined) {
            if (!deletable(id, record.generation, options)) return;
            // A fiber created again under this id starts above every generation it reached.
            raised = raiseGenerationFloor(raised, record.generation);
            deleted.push(id);
          }
          this.#keys.forget(id);
          fibers?.delete(id);
          handleRows?.delete(id);
          if (record === undefined) stashes?.delete(writtenStashesOf(id));
          else {
            // A stash written without looking for the row it replaces (`commitStashes`) by a
            // runner of the deleted fiber collides with this row instead of leaving an orphan.
            stashes?.delete(stashesOf(id));
            const [, key] = stashTombstoneKey(id, record.generation);
            stashes?.put(emptyStash(id), [id, key]);
            stashTombstones.push([id, key, now]);
          }
          inbox?.delete(inboxOf(id));
          inputs?.delete(id);
          outboxRows.delete(outboxOf(id));
          outboxHeads.delete(id);
          const handle = handles[i];
          if (handle === undefined) return;
          for (const store of rows) store.delete(rowsOf(handle));
          // A writer that appends without a fence read (`FiberKeys.fenceless`) collides with a
          // tombstone at the journal's next key, or where a recent claim fenced it.
          const end = ends[i] ?? 0;
          const at = end === 0 ? [] : [end + 1];
          for (const [segment] of recentFences(record, now)) at.push(segment);
          for (const segment of at) {
            unwrap(journal).put(fenceRow(now), [handle, segment]);
            tombstones.push([handle, segment, now]);
          }
        });
        keepTombstones(unwrap(meta), TOMBSTONES, kept, tombstones, now, ([handle, segment]) =>
          unwrap(journal).delete([handle, segment]),
        );
        // (An expired stash tombstone's key is never one put above: each is a fiber's last generation.)
        keepTombstones(unwrap(meta), STASH_TOMBSTONES, stashesKept, stashTombstones, now, ([id, key]) =>
          stashes?.delete([id, key]),
        );
        if (raised !== undefined && raised !== floor) {
          unwrap(meta).put(raised, GENERATION_FLOOR);
          // The floor's row moves with it: a registration written blind under the old floor collides.
          stashes?.delete(floorFenceKeys());
          stashes?.put(floorFenceRow(), floorFenceKey(raised));
          moved = { db: unwrap(tx).db, floor: raised };
        }
        commitNow(unwrap(tx));
        return deleted;
      },
    );
    // This store's next blind registrations start above the floor it just raised.
    const reserved = this.#reserved;
    if (moved !== undefined && reserved?.db === moved.db) reserved.floor = moved.floor;
    return gone;
  }

  async close(): Promise<void> {
    await this.#db.close();
  }

  /**
   * The continuity outbox as the last run left it: every replicated fiber's head and the entries
   * its arbiter has not acknowledged (`Outbox.open` reads it once at start); with `fiberId`, only
   * that fiber's (what `Outbox.resync` reads when another worker may have written it).
   */
  loadOutbox(fiberId?: string): Promise<SavedOutbox[]> {
    return loadOutbox(this.#db, fiberId);
  }

  /** Records acknowledgements and fences (`Outbox` calls it): acknowledged rows are deleted. */
  saveOutbox(progress: readonly OutboxProgress[]): Promise<void> {
    return saveOutbox(this.#db, progress);
  }

  /**
   * Makes a fiber this home's again (`Outbox.adopt`, continuity's handoff back): its outbox head
   * becomes `head`, no longer away, and its old entries go, in one transaction.
   */
  adoptOutbox(head: AdoptedOutbox): Promise<void> {
    return adoptOutbox(this.#db, head);
  }

  /**
   * A stored record as the engine sees it (without its handle, with its input as read from
   * `inputs`), remembering the handle.
   */
  #public(stored: StoredFiber | undefined, input: unknown): FiberRecord | undefined {
    if (stored === undefined) return undefined;
    this.#keys.remember(stored.id, stored.handle);
    return publicRecord(stored, input);
  }

  /**
   * Reads a fiber's rows with `read(handle)`, or `undefined` if the fiber does not exist. With a
   * remembered handle, the read goes out together with the handle lookup that confirms it (one
   * round trip); a stale one (the fiber was deleted, maybe re-created) reads again.
   */
  async #rowsOf<T>(
    tx: Tx<"readonly">,
    fiberId: string,
    read: (handle: number) => Promise<T>,
  ): Promise<T | undefined> {
    const handles = tx.objectStore("handles");
    const known = this.#keys.handle(fiberId);
    if (known !== undefined) {
      const [handle, rows] = await Promise.all([handles.get(fiberId), read(known)]);
      if (handle === known) return rows;
    }
    const handle = await handles.get(fiberId);
    if (handle === undefined) {
      this.#keys.forget(fiberId);
      return undefined;
    }
    this.#keys.remember(fiberId, handle);
    return read(handle);
  }
}

/** The last segment key of journal `handle` (0 when it has no row): where a fence row goes next. */
async function journalEnd(
  journal: IDBPObjectStore<FiberlineSchema, Names[], "journalSegments", "readwrite">,
  handle: number,
): Promise<number> {
  const last = await journal.openKeyCursor(rowsOf(handle), "prev");
  return last === null ? 0 : (last.key as RowKey)[1];
}

/** The input of `stored` from `inputs`, unless the record is missing or carries its own. */
function inputOf<Mode extends IDBTransactionMode>(
  tx: Tx<Mode>,
  stored: StoredFiber | undefined,
): Promise<unknown> | undefined {
  return stored === undefined || hasInlineInput(stored) ? undefined : tx.objectStore("inputs").get(stored.id);
}

/**
 * Fiber ids and idempotency keys are strings (`FiberRecord`). IndexedDB would take a number too,
 * but a number as an id would share the keys of the generation floor's row in `stashes`
 * (`floorFenceKey`), and anything that is not a key would be left out of the idempotency index.
 */
function assertStringKey(operation: string, what: string, value: unknown): void {
  if (typeof value === "string") return;
  throw new InvalidInputError(
    "invalid_argument",
    `IdbStore.${operation}: a ${what} must be a string, not ${value === null ? "null" : `a ${typeof value}`}.`,
  );
}

/** A whole-number option of `IdbStore`, at least `min`, or `undefined` for its default. */
function wholeOption(name: string, value: number | undefined, min: number): number | undefined {
  if (value === undefined || (Number.isSafeInteger(value) && value >= min)) return value;
  throw new InvalidInputError(
    "invalid_argument",
    `IdbStore option ${name} must be a whole number of at least ${min}, not ${String(value)}.`,
  );
}

/**
 * Whether a commit failed on a journal segment's key already taken (see `writeRows`): the
 * transaction's `ConstraintError`, as `IdbConnection.run` wraps it.
 */
function isSegmentCollision(error: unknown): boolean {
  return error instanceof StoreError && isConstraintError(error.cause);
}
