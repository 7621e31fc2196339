/**
 * `IdbConnection`: how `IdbStore` reaches its database. It opens the connection lazily (once for
 * concurrent first calls), reopens it after another context upgraded or deleted the database,
 * runs each operation in one transaction with the store's durability, batches the reads issued
 * in one turn into one readonly transaction, and turns IndexedDB failures into `StoreError`s that
 * say what to do. `IdbStore` says what each operation reads and writes; this file says how.
 */

import { unwrap, wrap } from "idb";
import { StoreError } from "../core/errors";
import { storeClosedError, toStoreError } from "./fiber-rules";
import type { Names, Tx } from "./idb-commit";
import { type FiberlineDatabase, openFiberlineDatabase } from "./idb-database";

/**
 * An error a transaction body throws after aborting on purpose (a failed fence, stale keys):
 * `run` rethrows it as is, for the caller to act on, instead of wrapping it in a `StoreError`.
 */
export class AbortedOnPurpose extends Error {}

/** Resolves with a request's result (a failed request aborts its transaction, which `run` reports). */
export function result<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * Commits once the requests issued so far are done, instead of when their results are back in
 * this context: saves a write one round trip to the IndexedDB backend (where `commit()` exists).
 */
export function commitNow(tx: IDBTransaction): void {
  (tx as IDBTransaction & { commit?: () => void }).commit?.();
}

/** A read waiting for the turn's shared readonly transaction. */
interface PendingRead {
  operation: string;
  stores: Names[];
  body: (tx: Tx<"readonly">) => Promise<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** What a connection needs to know. */
export interface ConnectionOptions {
  name: string;
  durability: "relaxed" | "strict";
  /** The IndexedDB factory (or a function resolving to one); `globalThis.indexedDB` when omitted. */
  factory?: IDBFactory | (() => Promise<IDBFactory>);
  /** The store's `kind`, for error messages. */
  kind: string;
}

/**
 * One store's access to its IndexedDB database.
 *
 * Failure semantics: every operation runs in one transaction; one that rejects wrote nothing.
 * After `close()` every operation rejects with `store_closed`.
 */
export class IdbConnection {
  readonly #name: string;
  readonly #durability: "relaxed" | "strict";
  readonly #factory: IDBFactory | (() => Promise<IDBFactory>) | undefined;
  readonly #kind: string;
  #opening: Promise<FiberlineDatabase> | undefined;
  #connection: IDBDatabase | undefined;
  #closed = false;
  #reads: PendingRead[] = [];

  constructor(options: ConnectionOptions) {
    this.#name = options.name;
    this.#durability = options.durability;
    this.#factory = options.factory;
    this.#kind = options.kind;
  }

  /** Lets running transactions finish, refuses new ones, and closes the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const opening = this.#opening;
    this.#opening = undefined;
    this.#connection = undefined;
    if (opening !== undefined) (await opening.catch(() => undefined))?.close();
  }

  /** The answer to a call that needs no transaction, still refused once closed. */
  async nothing<T>(value: T): Promise<T> {
    if (this.#closed) throw storeClosedError(this.#kind);
    return value;
  }

  /**
   * Reads issued in the same turn share one readonly transaction (one consistent snapshot for all
   * of them): `recover()` reads the inbox of every waiting fiber at once, and a transaction each
   * costs far more than a request each.
   */
  read<T>(operation: string, stores: Names[], body: (tx: Tx<"readonly">) => Promise<T>): Promise<T> {
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

  /** A readwrite transaction through `idb`'s typed wrappers. */
  write<T>(operation: string, stores: Names[], body: (tx: Tx<"readwrite">) => Promise<T>): Promise<T> {
    return this.#transact(operation, stores, "readwrite", body);
  }

  /** A transaction through `idb`'s typed wrappers. */
  #transact<Mode extends IDBTransactionMode, T>(
    operation: string,
    stores: Names[],
    mode: Mode,
    body: (tx: Tx<Mode>) => Promise<T>,
  ): Promise<T> {
    return this.run(operation, stores, mode, (raw) => {
      const tx = wrap(raw) as unknown as Tx<Mode>;
      // `#run` watches the transaction itself: its rejection names the cause, `done`'s does not.
      tx.done.catch(() => undefined);
      return body(tx);
    });
  }

  /**
   * Runs `body` in a new transaction on the raw IndexedDB API (`commit` uses it directly: it is
   * the hot path, and `idb`'s proxies and per-request promises cost it ~5%). Resolves with the
   * body's value once the transaction has committed; rejects with a `StoreError` (the transaction
   * aborted, nothing written), or with the body's `AbortedOnPurpose` as is.
   */
  async run<T>(
    operation: string,
    stores: Names[],
    mode: IDBTransactionMode,
    body: (tx: IDBTransaction) => Promise<T>,
  ): Promise<T> {
    let tx: IDBTransaction | undefined;
    for (let attempt = 1; tx === undefined; attempt++) {
      if (this.#closed) throw storeClosedError(this.#kind);
      // Once open, the connection is used as is: no await (and no turn lost) before the transaction.
      const connection = this.#connection ?? unwrap(await this.#database());
      tx = this.#begin(connection, operation, stores, mode, attempt);
    }
    // From here to the end of `body`, only this transaction's own requests are awaited. Bodies
    // must keep to that: after an abort, `run` waits for the body to settle (its requests fail).
    const work = (async () => body(tx as IDBTransaction))();
    try {
      const [value] = await Promise.all([work, finished(tx)]);
      return value;
    } catch (error) {
      try {
        tx.abort();
      } catch {
        // Already finished (it failed by itself): nothing to roll back.
      }
      // The body's own verdict wins over the abort it caused (a stash that collided with its
      // fence aborts the transaction, whose abort event may come first). The body settles: an
      // aborted transaction fails every request it was waiting on.
      const own =
        error instanceof AbortedOnPurpose
          ? error
          : await work.then(
              () => error,
              (e: unknown) => e,
            );
      if (own instanceof AbortedOnPurpose) throw own;
      // A request failed by the abort (its AbortError) says less than what aborted it: a request
      // of its own that failed (a ConstraintError, the quota) is the transaction's error.
      const cause = isAbortError(error) && tx.error ? tx.error : error;
      throw this.#closed ? storeClosedError(this.#kind) : toStoreError(operation, cause);
    }
  }

  /** Starts a transaction on `db`, or returns `undefined` to retry on a fresh connection. */
  #begin(
    db: IDBDatabase,
    operation: string,
    stores: Names[],
    mode: IDBTransactionMode,
    attempt: number,
  ): IDBTransaction | undefined {
    try {
      const options: IDBTransactionOptions = mode === "readwrite" ? { durability: this.#durability } : {};
      return db.transaction(stores, mode, options);
    } catch (error) {
      if (this.#closed) throw storeClosedError(this.#kind);
      // The connection was closed under us (versionchange, browser): reopen once.
      if (attempt === 1 && error instanceof Error && error.name === "InvalidStateError") {
        this.#forget(db);
        return undefined;
      }
      throw toStoreError(operation, error);
    }
  }

  async #database(): Promise<FiberlineDatabase> {
    if (this.#closed) throw storeClosedError(this.#kind);
    if (this.#opening === undefined) {
      const opening = this.#open();
      this.#opening = opening;
      opening.catch(() => {
        if (this.#opening === opening) this.#opening = undefined;
      });
    }
    const db = await this.#opening;
    if (this.#closed) throw storeClosedError(this.#kind);
    return db;
  }

  async #open(): Promise<FiberlineDatabase> {
    const given = this.#factory;
    const factory =
      typeof given === "function"
        ? await given().catch((error: unknown) => Promise.reject(toStoreError("open", error)))
        : (given ?? (globalThis.indexedDB as IDBFactory | undefined));
    if (factory === undefined) {
      return Promise.reject(
        new StoreError(
          "store_error",
          "IndexedDB is not available in this context: use MemoryStore, or pass `indexedDB` (e.g. fake-indexeddb in Node).",
        ),
      );
    }
    return openFiberlineDatabase(factory, this.#name, {
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

function isAbortError(error: unknown): boolean {
  return (error as { name?: unknown } | null)?.name === "AbortError";
}
