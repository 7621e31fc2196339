/**
 * `ForwardingStore`: a `Store` that hands every call to another one. The continuity wrappers
 * (`ReplicatingStore` in the browser, `ArbitratedStore` at the edge) extend it and override only
 * the calls they change.
 */

import type { FiberRecord, InboxEvent, JournalEntry, SnapshotRecord, StreamChunk } from "../core/records";
import {
  type ClaimRequest,
  type ClaimResult,
  type CommitResult,
  type CreateResult,
  type DeleteOptions,
  type FiberQuery,
  readStreamAndRecord,
  type Store,
  type StreamAndRecord,
  type WriteGroup,
} from "../core/store";

/** Forwards every call to `inner`; failure semantics are `inner`'s. */
export class ForwardingStore implements Store {
  readonly kind: string;
  protected readonly inner: Store;

  constructor(inner: Store) {
    this.inner = inner;
    this.kind = inner.kind;
  }

  getFiber(id: string): Promise<FiberRecord | undefined> {
    return this.inner.getFiber(id);
  }
  findByIdempotencyKey(key: string): Promise<FiberRecord | undefined> {
    return this.inner.findByIdempotencyKey(key);
  }
  listFibers(query?: FiberQuery): Promise<FiberRecord[]> {
    return this.inner.listFibers(query);
  }
  readJournal(fiberId: string): Promise<JournalEntry[]> {
    return this.inner.readJournal(fiberId);
  }
  readSnapshot(fiberId: string): Promise<SnapshotRecord | undefined> {
    return this.inner.readSnapshot(fiberId);
  }
  readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]> {
    return this.inner.readStream(fiberId, after, limit);
  }
  /** Forwarded as one call; a subclass that changes `readStream` or `getFiber` overrides this too. */
  readStreamAndRecord(fiberId: string, after: number, limit?: number): Promise<StreamAndRecord> {
    return readStreamAndRecord(this.inner, fiberId, after, limit);
  }
  readInbox(fiberId: string): Promise<InboxEvent[]> {
    return this.inner.readInbox(fiberId);
  }
  createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    return this.inner.createFiber(record, chunks);
  }
  claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    return this.inner.claimFiber(id, request);
  }
  commit(groups: WriteGroup[]): Promise<CommitResult> {
    return this.inner.commit(groups);
  }
  enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    return this.inner.enqueueEvent(event);
  }
  deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    return this.inner.deleteFibers(ids, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
