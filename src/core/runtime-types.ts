/**
 * The shapes of the runtime's public API: what `createRuntime` takes and what `start`, `inspect`
 * and `recover` return. Types only, kept apart so `runtime.ts` holds the behaviour; it re-exports
 * them, and the client, the wire protocol and the hooks import them from there.
 */

import type { FiberDefinition } from "./define";
import type { FiberLocks } from "./locks";
import type { FiberEvent, FiberRecord, FiberStatus, InboxEvent, JournalEntry } from "./records";
import type { Replication } from "./replication";
import type { Store } from "./store";

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
  /**
   * Largest input, step result, stash, chunk, event or result, estimated in bytes (default 1 MiB;
   * 900 KiB in the edge host's `RuntimeParts`, so a record's input and result fit one 2 MB row).
   * Text counts as UTF-8 with JSON's escapes (a CJK character 3 bytes), binary data as the whole
   * buffer a view shares (`estimateSize`).
   */
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
  /**
   * The source of `ctx.uuid()`, generated fiber ids and the default `runnerId` (default
   * `crypto.randomUUID`). Deterministic simulations pass a seeded one.
   */
  uuid?: () => string;
  /**
   * Continuity (`src/continuity`): the replication of fibers to a second home. A replicated
   * fiber's steps run once their start is shipped and its chunks reach readers once shipped;
   * every other fiber is unaffected (default: none).
   */
  replication?: Replication;
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

/** What `Runtime.openEventBatches` returns: the fiber's record, read with the stream's first chunks. */
export interface OpenedEventBatches {
  /** The record as read with the first chunks; `undefined` when no such fiber exists. */
  record: FiberRecord | undefined;
  /** The stream in batches, starting from the chunks read with `record`. */
  batches: AsyncGenerator<FiberEvent[]>;
  /** Releases the reader when `batches` will not be read (an answer without a body). */
  close(): void;
}
