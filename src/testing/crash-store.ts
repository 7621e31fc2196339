/**
 * A `Store` wrapper that simulates a process crash for engine-level tests: after `crash()` (or at
 * a chosen write) every call hangs forever, as if the process had died, and nothing more reaches
 * the wrapped store. A new runtime on the wrapped store then plays the part of the next process.
 * Used by Fiberline's own crash tests and by users testing their fibers in Node.
 */

import type { FiberRecord, InboxEvent, JournalEntry, SnapshotRecord, StreamChunk } from "../core/records";
import type {
  ClaimRequest,
  ClaimResult,
  CommitResult,
  CreateResult,
  DeleteOptions,
  FiberQuery,
  Store,
  WriteGroup,
} from "../core/store";

/** Options of `crashableStore`. */
export interface CrashOptions {
  /** Crash at this write (1-based count of createFiber, claimFiber, commit, enqueueEvent, deleteFibers calls). */
  crashAtWrite?: number;
  /** Whether the write that crashes is applied first (the crash hit after its commit) or dropped. */
  applyCrashingWrite?: boolean;
}

/** A store that can be made to "die". */
export interface CrashableStore extends Store {
  /** Kills the store now: every pending and later call hangs forever. */
  crash(): void;
  /** Whether it has crashed. */
  readonly crashed: boolean;
  /** Writes seen so far. */
  readonly writes: number;
}

const never = <T>(): Promise<T> => new Promise<T>(() => {});

/**
 * Wraps `inner` so that it can crash.
 *
 * @example
 * const disk = new MemoryStore();
 * const first = createRuntime({ store: crashableStore(disk, { crashAtWrite: 7 }), fibers });
 * // ... the first runtime hangs at its 7th write; a second one recovers:
 * const second = createRuntime({ store: disk, fibers, leaseMs: 0 });
 * await second.recover();
 */
export function crashableStore(inner: Store, options: CrashOptions = {}): CrashableStore {
  let crashed = false;
  let writes = 0;
  const read = <T>(fn: () => Promise<T>): Promise<T> =>
    crashed ? never<T>() : fn().then((v) => (crashed ? never<T>() : v));
  const write = <T>(fn: () => Promise<T>): Promise<T> => {
    if (crashed) return never<T>();
    writes++;
    if (options.crashAtWrite !== undefined && writes >= options.crashAtWrite) {
      crashed = true;
      if (options.applyCrashingWrite) void fn().catch(() => {});
      return never<T>();
    }
    return fn().then((v) => (crashed ? never<T>() : v));
  };
  return {
    kind: `crashable(${inner.kind})`,
    get crashed() {
      return crashed;
    },
    get writes() {
      return writes;
    },
    crash() {
      crashed = true;
    },
    getFiber: (id: string): Promise<FiberRecord | undefined> => read(() => inner.getFiber(id)),
    findByIdempotencyKey: (key: string) => read(() => inner.findByIdempotencyKey(key)),
    listFibers: (query?: FiberQuery) => read(() => inner.listFibers(query)),
    readJournal: (id: string): Promise<JournalEntry[]> => read(() => inner.readJournal(id)),
    readSnapshot: (id: string): Promise<SnapshotRecord | undefined> => read(() => inner.readSnapshot(id)),
    readStream: (id: string, after: number, limit?: number): Promise<StreamChunk[]> =>
      read(() => inner.readStream(id, after, limit)),
    readInbox: (id: string): Promise<InboxEvent[]> => read(() => inner.readInbox(id)),
    createFiber: (record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> =>
      write(() => inner.createFiber(record, chunks)),
    claimFiber: (id: string, request: ClaimRequest): Promise<ClaimResult> =>
      write(() => inner.claimFiber(id, request)),
    commit: (groups: WriteGroup[]): Promise<CommitResult> => write(() => inner.commit(groups)),
    enqueueEvent: (event: Omit<InboxEvent, "seq" | "consumedBy">) => write(() => inner.enqueueEvent(event)),
    deleteFibers: (ids: readonly string[], options?: DeleteOptions) =>
      write(() => inner.deleteFibers(ids, options)),
    close: () => (crashed ? Promise.resolve() : inner.close()),
  };
}
