/**
 * `WatchedStore`: a `Store` that tells watchers when a fiber was written. The Durable Object host
 * puts it under its arbiter and its runtime (the only writers of its replicas), so a mirror's held
 * read of a replica (`GET .../replica?wait=`) answers as soon as a shipment, a takeover or the
 * edge's own run changed it, instead of the browser asking again and again. The simulator's edge
 * store is one too.
 */

import { ForwardingStore } from "../continuity/forwarding-store";
import type { FiberRecord, InboxEvent, StreamChunk } from "../core/records";
import type {
  ClaimRequest,
  ClaimResult,
  CommitResult,
  CreateResult,
  DeleteOptions,
  Store,
  WriteGroup,
} from "../core/store";
import type { ReplicaWrites } from "./replica-read";

/** Forwards every call to `inner` and wakes the watchers of each fiber a write call named. */
export class WatchedStore extends ForwardingStore implements ReplicaWrites {
  readonly #watchers = new Map<string, Set<() => void>>();

  constructor(inner: Store) {
    super(inner);
  }

  /**
   * Resolves at the next write call that names `fiberId` once it settled (failed ones too: a
   * watcher reads again and finds nothing new). `cancel` when no longer waiting.
   */
  nextWrite(fiberId: string): { written: Promise<void>; cancel(): void } {
    let wake: () => void = () => {};
    const written = new Promise<void>((resolve) => {
      wake = resolve;
    });
    let watchers = this.#watchers.get(fiberId);
    if (!watchers) {
      watchers = new Set();
      this.#watchers.set(fiberId, watchers);
    }
    watchers.add(wake);
    const cancel = () => {
      const set = this.#watchers.get(fiberId);
      set?.delete(wake);
      if (set?.size === 0) this.#watchers.delete(fiberId);
    };
    return { written: written.then(cancel), cancel };
  }

  override createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    return this.#told([record.id], super.createFiber(record, chunks));
  }
  override claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    return this.#told([id], super.claimFiber(id, request));
  }
  override commit(groups: WriteGroup[]): Promise<CommitResult> {
    return this.#told(
      groups.map((g) => g.fiberId),
      super.commit(groups),
    );
  }
  override enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    return this.#told([event.fiberId], super.enqueueEvent(event));
  }
  override deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    return this.#told(ids, super.deleteFibers(ids, options));
  }

  #told<T>(ids: readonly string[], write: Promise<T>): Promise<T> {
    const tell = () => {
      for (const id of ids) for (const wake of this.#watchers.get(id) ?? []) wake();
    };
    write.then(tell, tell);
    return write;
  }
}
