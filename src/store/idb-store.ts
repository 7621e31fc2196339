/**
 * `IdbStore`: the `Store` contract on IndexedDB (through `idb`), the store of browser and Service
 * Worker hosts.
 *
 * Every method is exactly one IndexedDB transaction; writes use the configured durability
 * (`relaxed` by default). Cost is per transaction, not per byte, so `commit` issues all its
 * writes without waiting on each and awaits only the transaction's completion.
 */

import { type IDBPTransaction, type StoreNames, unwrap } from "idb";
import { FiberNotFoundError, StoreError } from "../core/errors";
import type { FiberRecord, InboxEvent, JournalEntry, SnapshotRecord, StreamChunk } from "../core/records";
import {
  decideClaim,
  effectiveLimit,
  finishListing,
  mergeFiberPatch,
  queriedStatuses,
  storeClosedError,
  toStoreError,
} from "./fiber-rules";
import { type FiberlineDatabase, type FiberlineSchema, openFiberlineDatabase } from "./idb-database";
import type {
  ClaimRequest,
  ClaimResult,
  CommitResult,
  CreateResult,
  FiberQuery,
  Store,
  WriteGroup,
} from "./store";

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
   * (`import "fake-indexeddb/auto"` in Node).
   */
  indexedDB?: IDBFactory;
}

type Db = FiberlineDatabase;

/** A read waiting for the turn's shared readonly transaction. */
interface PendingRead {
  operation: string;
  stores: Names[];
  body: (tx: Tx<"readonly">) => Promise<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}
type Names = StoreNames<FiberlineSchema>;
type Tx<Mode extends IDBTransactionMode> = IDBPTransaction<FiberlineSchema, Names[], Mode>;

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
  #factory: IDBFactory | undefined;
  #opening: Promise<Db> | undefined;
  #connection: IDBDatabase | undefined;
  #closed = false;
  #reads: PendingRead[] = [];

  constructor(options: IdbStoreOptions = {}) {
    this.name = options.name ?? "fiberline";
    this.durability = options.durability ?? "relaxed";
    this.#factory = options.indexedDB;
  }

  async getFiber(id: string): Promise<FiberRecord | undefined> {
    return this.#read("getFiber", ["fibers"], (tx) => tx.objectStore("fibers").get(id));
  }

  async findByIdempotencyKey(key: string): Promise<FiberRecord | undefined> {
    return this.#read("findByIdempotencyKey", ["fibers"], (tx) =>
      tx.objectStore("fibers").index("idempotencyKey").get(key),
    );
  }

  async listFibers(query?: FiberQuery): Promise<FiberRecord[]> {
    const statuses = queriedStatuses(query);
    const limit = effectiveLimit(query?.limit);
    if (limit === 0 || statuses?.length === 0) return this.#nothing([]);
    return this.#read("listFibers", ["fibers"], async (tx) => {
      const fibers = tx.objectStore("fibers");
      if (statuses === undefined) {
        // The createdAt index already orders by createdAt, then id (the primary key).
        const records = await fibers
          .index("createdAt")
          .getAll(null, query?.name === undefined ? limit : undefined);
        return finishListing(records, query);
      }
      const byStatus = fibers.index("status");
      const lists = await Promise.all(statuses.map((status) => byStatus.getAll(status)));
      return finishListing(lists.flat(), query);
    });
  }

  async readJournal(fiberId: string): Promise<JournalEntry[]> {
    return this.#read("readJournal", ["journal"], (tx) => tx.objectStore("journal").getAll(rowsOf(fiberId)));
  }

  async readSnapshot(fiberId: string): Promise<SnapshotRecord | undefined> {
    return this.#read("readSnapshot", ["snapshots"], (tx) => tx.objectStore("snapshots").get(fiberId));
  }

  async readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]> {
    const max = effectiveLimit(limit);
    if (max === 0) return this.#nothing([]);
    return this.#read("readStream", ["chunks"], async (tx) => {
      const range = IDBKeyRange.bound([fiberId, after], [fiberId, Number.POSITIVE_INFINITY], true, false);
      return tx.objectStore("chunks").getAll(range, max);
    });
  }

  async readInbox(fiberId: string): Promise<InboxEvent[]> {
    return this.#read("readInbox", ["inbox"], (tx) => tx.objectStore("inbox").getAll(rowsOf(fiberId)));
  }

  async createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    return this.#write("createFiber", ["fibers", "chunks"], async (tx) => {
      const fibers = tx.objectStore("fibers");
      const key = record.idempotencyKey;
      const [byId, byKey] = await Promise.all([
        fibers.get(record.id),
        key === undefined ? undefined : fibers.index("idempotencyKey").get(key),
      ]);
      const existing = byId ?? byKey;
      if (existing !== undefined) return { status: "exists", record: existing };
      unwrap(fibers).put(record);
      const rawChunks = unwrap(tx.objectStore("chunks"));
      for (const chunk of chunks) rawChunks.put(chunk);
      return { status: "created", record: structuredClone(record) };
    });
  }

  async claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    return this.#write("claimFiber", ["fibers"], async (tx) => {
      const fibers = tx.objectStore("fibers");
      const result = decideClaim(await fibers.get(id), request);
      if (result.status === "claimed") unwrap(fibers).put(result.record);
      return result;
    });
  }

  async commit(groups: WriteGroup[]): Promise<CommitResult> {
    if (groups.length === 0) return this.#nothing({ fenced: [] });
    const fenced: string[] = [];
    let pending = groups;
    // A fence that fails (another runner claimed the fiber: rare) aborts the optimistic
    // transaction; the commit then runs again without that fiber's groups.
    for (;;) {
      try {
        await this.#write("commit", commitScope(pending), (tx) => commitGroups(tx, pending));
        return { fenced };
      } catch (error) {
        if (!(error instanceof FenceFailed)) throw error;
        for (const group of error.groups) if (!fenced.includes(group.fiberId)) fenced.push(group.fiberId);
        pending = pending.filter((group) => !error.groups.includes(group));
        if (pending.length === 0) return { fenced };
      }
    }
  }

  async enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    return this.#write("enqueueEvent", ["fibers", "inbox"], async (tx) => {
      const inbox = tx.objectStore("inbox");
      const [record, last] = await Promise.all([
        tx.objectStore("fibers").get(event.fiberId),
        inbox.openCursor(rowsOf(event.fiberId), "prev"),
      ]);
      if (record === undefined) throw new FiberNotFoundError(event.fiberId);
      const stored: InboxEvent = {
        fiberId: event.fiberId,
        seq: (last?.value.seq ?? 0) + 1,
        name: event.name,
        payload: event.payload,
        at: event.at,
      };
      unwrap(inbox).put(stored);
      return structuredClone(stored);
    });
  }

  async deleteFibers(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return this.#nothing(undefined);
    return this.#write("deleteFibers", ["fibers", "journal", "snapshots", "chunks", "inbox"], async (tx) => {
      const [fibers, journal, snapshots, chunks, inbox] = (
        ["fibers", "journal", "snapshots", "chunks", "inbox"] as const
      ).map((name) => unwrap(tx.objectStore(name)));
      for (const id of ids) {
        fibers?.delete(id);
        snapshots?.delete(id);
        for (const rows of [journal, chunks, inbox]) rows?.delete(rowsOf(id));
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const opening = this.#opening;
    this.#opening = undefined;
    this.#connection = undefined;
    // close() lets running transactions finish; only new ones are refused.
    if (opening !== undefined) (await opening.catch(() => undefined))?.close();
  }

  /** The answer to a call that needs no transaction, still refused once closed. */
  async #nothing<T>(value: T): Promise<T> {
    if (this.#closed) throw storeClosedError(this.kind);
    return value;
  }

  /**
   * Reads issued in the same turn share one readonly transaction (one consistent snapshot for all
   * of them): `recover()` reads the inbox of every waiting fiber at once, and a transaction each
   * costs far more than a request each.
   */
  #read<T>(operation: string, stores: Names[], body: (tx: Tx<"readonly">) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#reads.push({ operation, stores, body, resolve, reject } as PendingRead);
      if (this.#reads.length === 1) queueMicrotask(() => this.#flushReads());
    });
  }

  #flushReads(): void {
    const batch = this.#reads;
    this.#reads = [];
    const alone = (read: PendingRead) =>
      this.#transact(read.operation, read.stores, "readonly", read.body).then(read.resolve, read.reject);
    const [only] = batch;
    if (batch.length === 1 && only) {
      void alone(only);
      return;
    }
    const answered = new Set<PendingRead>();
    const stores = [...new Set(batch.flatMap((read) => read.stores))];
    this.#transact("read", stores, "readonly", (tx) =>
      Promise.all(
        batch.map((read) =>
          read.body(tx).then((value) => {
            answered.add(read);
            read.resolve(value);
          }),
        ),
      ),
    ).catch(() => {
      // The shared transaction failed (a request failed and aborted it, the connection closed):
      // every read not answered yet runs alone, so each gets its own result or its own error.
      for (const read of batch) if (!answered.has(read)) void alone(read);
    });
  }

  #write<T>(operation: string, stores: Names[], body: (tx: Tx<"readwrite">) => Promise<T>): Promise<T> {
    return this.#transact(operation, stores, "readwrite", body);
  }

  async #transact<Mode extends IDBTransactionMode, T>(
    operation: string,
    stores: Names[],
    mode: Mode,
    body: (tx: Tx<Mode>) => Promise<T>,
  ): Promise<T> {
    let tx: Tx<Mode> | undefined;
    for (let attempt = 1; tx === undefined; attempt++) {
      tx = this.#begin(await this.#database(), operation, stores, mode, attempt);
    }
    // From here to the end of `body`, only this transaction's own requests are awaited.
    // Watched instead of `tx.done`, whose rejection carries a generic AbortError, not the cause.
    tx.done.catch(() => undefined);
    try {
      const [value] = await Promise.all([body(tx), finished(unwrap(tx))]);
      return value;
    } catch (error) {
      try {
        tx.abort();
      } catch {
        // Already finished (it failed by itself): nothing to roll back.
      }
      if (error instanceof FenceFailed) throw error;
      throw this.#closed ? storeClosedError(this.kind) : toStoreError(operation, error);
    }
  }

  /** Starts a transaction on `db`, or returns `undefined` to retry on a fresh connection. */
  #begin<Mode extends IDBTransactionMode>(
    db: Db,
    operation: string,
    stores: Names[],
    mode: Mode,
    attempt: number,
  ): Tx<Mode> | undefined {
    try {
      const options: IDBTransactionOptions = mode === "readwrite" ? { durability: this.durability } : {};
      return db.transaction(stores, mode, options);
    } catch (error) {
      if (this.#closed) throw storeClosedError(this.kind);
      // The connection was closed under us (versionchange, browser): reopen once.
      if (attempt === 1 && error instanceof Error && error.name === "InvalidStateError") {
        this.#forget(unwrap(db));
        return undefined;
      }
      throw toStoreError(operation, error);
    }
  }

  async #database(): Promise<Db> {
    if (this.#closed) throw storeClosedError(this.kind);
    if (this.#opening === undefined) {
      const opening = this.#open();
      this.#opening = opening;
      opening.catch(() => {
        if (this.#opening === opening) this.#opening = undefined;
      });
    }
    const db = await this.#opening;
    if (this.#closed) throw storeClosedError(this.kind);
    return db;
  }

  #open(): Promise<Db> {
    const factory = this.#factory ?? (globalThis.indexedDB as IDBFactory | undefined);
    if (factory === undefined) {
      return Promise.reject(
        new StoreError(
          "store_error",
          "IndexedDB is not available in this context: use MemoryStore, or pass `indexedDB` (e.g. fake-indexeddb in Node).",
        ),
      );
    }
    return openFiberlineDatabase(factory, this.name, {
      wanted: () => !this.#closed,
      opened: (connection) => {
        this.#connection = connection;
      },
      gone: (connection) => this.#forget(connection),
    });
  }

  #forget(connection: IDBDatabase): void {
    if (this.#connection !== connection) return;
    this.#connection = undefined;
    this.#opening = undefined;
  }
}

/** Settles when `tx` commits, or rejects with the error that aborted it (quota, constraint...). */
function finished(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.addEventListener("complete", () => resolve());
    tx.addEventListener("abort", () =>
      reject(tx.error ?? new DOMException("The transaction was aborted.", "AbortError")),
    );
  });
}

/** The key range of one fiber's rows in a `[fiberId, n]`-keyed store. */
function rowsOf(fiberId: string): IDBKeyRange {
  return IDBKeyRange.bound([fiberId, Number.NEGATIVE_INFINITY], [fiberId, Number.POSITIVE_INFINITY]);
}

/** The object stores a commit touches: fewer stores, fewer transactions waiting on each other. */
function commitScope(groups: WriteGroup[]): Names[] {
  const scope = new Set<Names>(["fibers"]);
  for (const group of groups) {
    if (group.clearJournal === true || (group.journal?.length ?? 0) > 0) scope.add("journal");
    if (group.snapshot !== undefined) scope.add("snapshots");
    if ((group.chunks?.length ?? 0) > 0) scope.add("chunks");
    if ((group.consumeEvents?.length ?? 0) > 0) scope.add("inbox");
  }
  return [...scope];
}

/** Thrown (after aborting, so nothing was written) by a commit whose fence failed for `groups`. */
class FenceFailed extends Error {
  readonly groups: WriteGroup[];
  constructor(groups: WriteGroup[]) {
    super(`fenced: ${groups.map((group) => group.fiberId).join(", ")}`);
    this.groups = groups;
  }
}

/**
 * The body of `commit`, optimistic: every write that does not depend on a read (journal,
 * snapshot, chunks) is issued together with the fence reads instead of after them, and the
 * transaction is committed explicitly as soon as the last write is issued. That saves two round
 * trips to the IndexedDB backend per commit, which is most of a commit's cost when it holds one
 * step or one stash. If a fence fails, the transaction is aborted (so none of it is written) and
 * `FenceFailed` names the groups to leave out.
 */
async function commitGroups(tx: Tx<"readwrite">, groups: WriteGroup[]): Promise<void> {
  const fibers = tx.objectStore("fibers");
  const ids = [...new Set(groups.map((group) => group.fiberId))];
  const consumed = groups.flatMap((g) =>
    (g.consumeEvents ?? []).map((c) => [g.fiberId, c.seq] as [string, number]),
  );
  const inbox = consumed.length > 0 ? tx.objectStore("inbox") : undefined;
  const reads = Promise.all([
    Promise.all(ids.map((id) => fibers.get(id))),
    Promise.all(consumed.map((key) => inbox?.get(key))),
  ]);
  // If a write below throws (a value that cannot be cloned), the abort rejects these reads too.
  reads.catch(() => undefined);
  for (const group of groups) writeRows(tx, group);
  const [current, events] = await reads;

  const records = new Map<string, FiberRecord | undefined>(ids.map((id, i) => [id, current[i]]));
  const fenced = groups.filter((group) => records.get(group.fiberId)?.generation !== group.generation);
  if (fenced.length > 0) {
    tx.abort();
    throw new FenceFailed(fenced);
  }
  const inboxEvents = new Map<string, InboxEvent>();
  for (const event of events)
    if (event !== undefined) inboxEvents.set(`${event.seq}\u0000${event.fiberId}`, event);
  const patched = new Set<string>();
  for (const group of groups) {
    const record = records.get(group.fiberId);
    if (record !== undefined && group.fiber !== undefined) {
      records.set(group.fiberId, mergeFiberPatch(record, group.fiber));
      patched.add(group.fiberId);
    }
    consumeEvents(tx, group, inboxEvents);
  }
  const rawFibers = unwrap(fibers);
  for (const id of patched) rawFibers.put(records.get(id));
  // Everything is issued: commit now instead of waiting a round trip for the requests to settle.
  const raw = unwrap(tx) as IDBTransaction & { commit?: () => void };
  raw.commit?.();
}

/**
 * Issues one group's row writes (journal, snapshot, chunks) on the raw stores: no promise per
 * request; a failing request aborts the transaction, and `#transact` rejects with its error.
 */
function writeRows(tx: Tx<"readwrite">, group: WriteGroup): void {
  const { fiberId } = group;
  if (group.clearJournal === true || (group.journal?.length ?? 0) > 0) {
    const journal = unwrap(tx.objectStore("journal"));
    if (group.clearJournal === true) journal.delete(rowsOf(fiberId));
    for (const entry of group.journal ?? []) journal.put(entry);
  }
  if (group.snapshot === null) unwrap(tx.objectStore("snapshots")).delete(fiberId);
  else if (group.snapshot !== undefined) unwrap(tx.objectStore("snapshots")).put(group.snapshot);
  if ((group.chunks?.length ?? 0) > 0) {
    const chunks = unwrap(tx.objectStore("chunks"));
    for (const chunk of group.chunks ?? []) chunks.put(chunk);
  }
}

/** Marks the buffered events a group consumed (read in the same transaction). */
function consumeEvents(tx: Tx<"readwrite">, group: WriteGroup, inboxEvents: Map<string, InboxEvent>): void {
  if ((group.consumeEvents?.length ?? 0) === 0) return;
  const inbox = unwrap(tx.objectStore("inbox"));
  for (const { seq, consumedBy } of group.consumeEvents ?? []) {
    const event = inboxEvents.get(`${seq}\u0000${group.fiberId}`);
    if (event === undefined) continue;
    event.consumedBy = consumedBy;
    inbox.put(event);
  }
}
