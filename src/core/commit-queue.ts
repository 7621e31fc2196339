/**
 * Group commit: every write of every fiber in one runtime goes through one `CommitQueue`, which
 * folds whatever accumulated while the previous transaction was in flight into the next one.
 * One transaction per batch, never one per chunk under load; FIFO, so a write is durable only
 * after every write enqueued before it.
 *
 * A deferred write (`{ defer: true }`, used for a step's completion) does not start a transaction
 * by itself: nothing waits on it, and FIFO makes it durable with the next write (the next step's
 * `started` entry, a chunk, the fiber's end) or, if none comes in the current task, at the next
 * macrotask. Flushing it at once gave a sequential step loop two transactions per step (the
 * completion of step n, then the start of step n+1); riding along gives one.
 */

import type { Store, WriteGroup } from "../store/store";
import { FencedError, StoreError } from "./errors";
import type { StreamChunk } from "./records";

interface Pending {
  group: WriteGroup;
  resolve(): void;
  reject(error: unknown): void;
}

const noop = (): void => {};

/** Called after each durable commit with the chunks it made visible. */
export type ChunkListener = (fiberId: string, chunks: readonly StreamChunk[]) => void;

/** Counts of what the queue did, for tests and benchmarks. */
export interface CommitStats {
  transactions: number;
  groups: number;
  chunks: number;
}

/** The runtime's single writer. */
export class CommitQueue {
  readonly #store: Store;
  readonly #onChunks: ChunkListener;
  #queue: Pending[] = [];
  #inFlight: Promise<void> | null = null;
  #scheduled = false;
  #lateTimer: ReturnType<typeof setTimeout> | null = null;
  readonly stats: CommitStats = { transactions: 0, groups: 0, chunks: 0 };

  constructor(store: Store, onChunks: ChunkListener) {
    this.#store = store;
    this.#onChunks = onChunks;
  }

  /**
   * Queues `group` for the next transaction. With `defer`, the group waits for the next write or
   * the end of the current task instead of starting a transaction of its own.
   *
   * Failure semantics: resolves once the group is durable; rejects with `FencedError` when the
   * fiber's generation moved on (nothing of the group was written), or with the store's error
   * (nothing of the batch was written).
   */
  write(group: WriteGroup, options: { defer?: boolean } = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => this.#enqueue({ group, resolve, reject }, options));
  }

  /**
   * `write` without a promise, for writes nobody awaits on a hot path (every emitted chunk):
   * `onFailure` receives what `write` would have rejected with.
   */
  enqueue(group: WriteGroup, onFailure: (error: unknown) => void, options: { defer?: boolean } = {}): void {
    this.#enqueue({ group, resolve: noop, reject: onFailure }, options);
  }

  #enqueue(pending: Pending, options: { defer?: boolean }): void {
    this.#queue.push(pending);
    if (options.defer) this.#scheduleLate();
    else this.#schedule();
  }

  /** Resolves once everything queued so far is durable (or failed). */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#inFlight) {
      if (this.#inFlight) await this.#inFlight;
      else if (this.#lateTimer && !this.#scheduled) this.#flush();
      else await new Promise<void>((r) => queueMicrotask(r));
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight) return;
    this.#scheduled = true;
    // A microtask lets every write issued in the same tick join this batch.
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  /** A write that can wait: flushed by the next scheduled flush, or after the current task. */
  #scheduleLate(): void {
    if (this.#lateTimer || this.#scheduled || this.#inFlight) return;
    this.#lateTimer = setTimeout(() => {
      this.#lateTimer = null;
      if (!this.#scheduled) this.#flush();
    }, 0);
  }

  #flush(): void {
    if (this.#lateTimer) {
      clearTimeout(this.#lateTimer);
      this.#lateTimer = null;
    }
    if (this.#inFlight || this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    this.#inFlight = this.#commit(batch).finally(() => {
      this.#inFlight = null;
      if (this.#queue.length > 0) this.#flush();
    });
  }

  async #commit(batch: Pending[]): Promise<void> {
    const groups = mergeGroups(batch.map((p) => p.group));
    this.stats.transactions += 1;
    this.stats.groups += groups.length;
    let fenced: Set<string>;
    try {
      const result = await this.#store.commit(groups);
      fenced = new Set(result.fenced);
    } catch (error) {
      const wrapped =
        error instanceof StoreError
          ? error
          : new StoreError(
              "store_error",
              `Writing to the ${this.#store.kind} store failed: ${String(error)}`,
              {
                cause: error,
              },
            );
      for (const p of batch) p.reject(wrapped);
      return;
    }
    for (const group of groups) {
      if (fenced.has(group.fiberId) || !group.chunks?.length) continue;
      this.stats.chunks += group.chunks.length;
      this.#onChunks(group.fiberId, group.chunks);
    }
    for (const p of batch) {
      if (fenced.has(p.group.fiberId)) {
        p.reject(
          new FencedError(
            "fenced",
            `Fiber ${p.group.fiberId} is now owned by another runner (generation ${p.group.generation} is stale); this runner stopped.`,
          ),
        );
      } else {
        p.resolve();
      }
    }
  }
}

/** Folds consecutive groups of the same fiber into one, keeping their order. */
function mergeGroups(groups: WriteGroup[]): WriteGroup[] {
  const out: WriteGroup[] = [];
  const last = new Map<string, WriteGroup>();
  for (const g of groups) {
    const prev = last.get(g.fiberId);
    if (!prev || prev.generation !== g.generation || g.clearJournal) {
      // Copies own the arrays and the patch, so later groups can be merged into them in place.
      const copy: WriteGroup = {
        ...g,
        fiber: g.fiber && { ...g.fiber },
        journal: g.journal?.slice(),
        chunks: g.chunks?.slice(),
        consumeEvents: g.consumeEvents?.slice(),
      };
      out.push(copy);
      last.set(g.fiberId, copy);
      continue;
    }
    // The copy owns its patch: later patches (one per emitted chunk) merge into it in place.
    if (g.fiber) prev.fiber = prev.fiber ? Object.assign(prev.fiber, g.fiber) : { ...g.fiber };
    if (g.journal) prev.journal = append(prev.journal, g.journal);
    if (g.snapshot !== undefined) prev.snapshot = g.snapshot;
    if (g.chunks) prev.chunks = append(prev.chunks, g.chunks);
    if (g.consumeEvents) prev.consumeEvents = append(prev.consumeEvents, g.consumeEvents);
  }
  return out;
}

/** Appends in place to an array the merged group owns (a copy made when the group was first seen). */
function append<T>(owned: T[] | undefined, items: readonly T[]): T[] {
  if (!owned) return items.slice();
  for (const item of items) owned.push(item);
  return owned;
}
