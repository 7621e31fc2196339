/**
 * The parts of the Cloudflare Durable Object API the edge host uses, as structural types.
 *
 * `fiberline/edge` declares them itself instead of depending on `@cloudflare/workers-types`,
 * whose globals clash with the DOM types the rest of the package (and most apps) compile with.
 * A real `DurableObjectState` satisfies `DurableObjectStateLike`; `examples/edge` compiles against
 * workers-types to prove it.
 */

/** One value SQLite hands back or accepts as a binding. */
export type SqlValue = ArrayBuffer | string | number | null;

/** A query result: iterate it, or `toArray()` / `one()`. */
export interface SqlCursorLike<T> extends Iterable<T> {
  toArray(): T[];
  one(): T;
  readonly rowsWritten: number;
}

/** `ctx.storage.sql`: synchronous SQLite. */
export interface SqlStorageLike {
  exec<T extends Record<string, SqlValue>>(query: string, ...bindings: unknown[]): SqlCursorLike<T>;
}

/** `ctx.storage` of a SQLite-backed Durable Object. */
export interface DurableObjectStorageLike {
  readonly sql: SqlStorageLike;
  /** Runs `closure` in one SQLite transaction, rolled back if it throws. */
  transactionSync<T>(closure: () => T): T;
  getAlarm(): Promise<number | null>;
  setAlarm(scheduledTime: number | Date): Promise<void>;
  deleteAlarm(): Promise<void>;
}

/** `ctx` of a Durable Object (its `DurableObjectState`). */
export interface DurableObjectStateLike {
  readonly storage: DurableObjectStorageLike;
  /** Holds every event (requests, alarms) until `callback` settles. */
  blockConcurrencyWhile<T>(callback: () => Promise<T>): Promise<T>;
  /** Accepted for API symmetry; a Durable Object stays alive through its own events, not this. */
  waitUntil?(promise: Promise<unknown>): void;
}
