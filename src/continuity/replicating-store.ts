/**
 * `ReplicatingStore`: the browser's `Store` with continuity. It wraps the local store and, for
 * fibers of the replicated kinds, puts every write the local store applied into the `Outbox` at
 * the next position (so a durable commit is in the outbox and a failed one is not), refuses the
 * writes and claims of a fiber whose lease ran out or that moved to another home (Rule C: the
 * engine sees them fenced and stops), and answers an event only once it is shipped (so an event
 * a sender was told about is never lost by a change of home). Reads pass through.
 *
 * For a `MemoryStore` the append follows the commit in the same task: nothing can observe the
 * commit first. The `IdbStore` version writes the outbox in the commit's own IndexedDB
 * transaction (docs/design/continuity.md, next step).
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
import { changedHomeError } from "./errors";
import type { Outbox } from "./outbox";

/** Options of `new ReplicatingStore`. */
export interface ReplicatingStoreOptions {
  /** This browser's outbox (one per store). */
  outbox: Outbox;
  /** This browser's home name (`browserHome(deviceId)`): the origin of its events' ids. */
  home: string;
  /** Whether fibers of the definition `name` are replicated. */
  replicates(name: string): boolean;
  /** The browser's clock, for Rule C (default `Date.now`). */
  clock?: () => number;
}

/**
 * A `Store` whose replicated fibers feed an `Outbox`.
 *
 * Failure semantics: as the wrapped store's, plus: a group of a replicated fiber that may not be
 * written (lease lapsed, or fenced by another home) is reported fenced and not written; a commit
 * of a fiber whose outbox is full waits for room first; `enqueueEvent` of a replicated fiber
 * resolves once the event is shipped and rejects with `fenced` if the fiber moved away before.
 */
export class ReplicatingStore implements Store {
  readonly kind: string;
  readonly #inner: Store;
  readonly #outbox: Outbox;
  readonly #home: string;
  readonly #replicates: (name: string) => boolean;
  readonly #clock: () => number;

  constructor(inner: Store, options: ReplicatingStoreOptions) {
    this.#inner = inner;
    this.kind = inner.kind;
    this.#outbox = options.outbox;
    this.#home = options.home;
    this.#replicates = options.replicates;
    this.#clock = options.clock ?? Date.now;
  }

  getFiber(id: string): Promise<FiberRecord | undefined> {
    return this.#inner.getFiber(id);
  }
  findByIdempotencyKey(key: string): Promise<FiberRecord | undefined> {
    return this.#inner.findByIdempotencyKey(key);
  }
  listFibers(query?: FiberQuery): Promise<FiberRecord[]> {
    return this.#inner.listFibers(query);
  }
  readJournal(fiberId: string): Promise<JournalEntry[]> {
    return this.#inner.readJournal(fiberId);
  }
  readSnapshot(fiberId: string): Promise<SnapshotRecord | undefined> {
    return this.#inner.readSnapshot(fiberId);
  }
  readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]> {
    return this.#inner.readStream(fiberId, after, limit);
  }
  readInbox(fiberId: string): Promise<InboxEvent[]> {
    return this.#inner.readInbox(fiberId);
  }

  async createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    const result = await this.#inner.createFiber(record, chunks);
    if (result.status === "created" && this.#replicates(result.record.name))
      this.#outbox.append(result.record.id, { type: "create", record: result.record, chunks });
    return result;
  }

  async claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    if (this.#outbox.mayWrite(id, this.#clock())) return this.#inner.claimFiber(id, request);
    // Not ours to run now: another home holds it, or our lease ran out (Rule C).
    const record = await this.#inner.getFiber(id);
    return record === undefined ? { status: "missing" } : { status: "held", record };
  }

  async commit(groups: WriteGroup[]): Promise<CommitResult> {
    const outbox = this.#outbox;
    for (const id of new Set(groups.map((g) => g.fiberId))) {
      const room = outbox.room(id);
      if (room !== undefined) await room;
    }
    const now = this.#clock();
    const refused = new Set(groups.filter((g) => !outbox.mayWrite(g.fiberId, now)).map((g) => g.fiberId));
    const allowed = refused.size === 0 ? groups : groups.filter((g) => !refused.has(g.fiberId));
    const result = allowed.length === 0 ? { fenced: [] } : await this.#inner.commit(allowed);
    const fenced = new Set(result.fenced);
    for (const group of allowed) {
      if (outbox.replicated(group.fiberId) && !fenced.has(group.fiberId))
        outbox.append(group.fiberId, { type: "commit", group });
    }
    return refused.size === 0 ? result : { fenced: [...fenced, ...refused] };
  }

  async enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    const outbox = this.#outbox;
    const where = outbox.where(event.fiberId);
    if (where?.status === "away") throw changedHomeError(event.fiberId, where.epoch, where.home);
    const stored = await this.#inner.enqueueEvent(event);
    if (!outbox.replicated(event.fiberId)) return stored;
    outbox.append(event.fiberId, { type: "event", event: stored, eventId: `${this.#home}:${stored.seq}` });
    await outbox.shipped(event.fiberId);
    return stored;
  }

  async deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    // A fiber whose end is not shipped yet stays until it is (the collector comes back).
    const deletable = ids.filter((id) => !this.#outbox.hasPending(id));
    const deleted = await this.#inner.deleteFibers(deletable, options);
    for (const id of deleted) this.#outbox.forget(id);
    return deleted;
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
