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
 *
 * A write that fails poisons its writer (the fiber under the generation it wrote with): every
 * later write of that writer, already queued or not, is rejected without reaching the store. A
 * run's writes are a sequence (journal entries, chunks numbered by `seq`), so committing a later
 * one after an earlier one failed would leave a hole; the run stops instead and the runner
 * resumes the fiber from what is durable. A batch never holds two generations of one fiber, so
 * the store's fence verdict on a fiber is the verdict on each group of it in the batch.
 */

import { FencedError, StoreError } from "./errors";
import type { StreamChunk } from "./records";
import type { Store, WriteGroup } from "./store";

interface Pending {
  group: WriteGroup;
  resolve(): void;
  reject(error: unknown): void;
}

const noop = (): void => {};

/** How many poisoned writers are remembered; generations never repeat, so old ones never return. */
const POISON_LIMIT = 4_096;

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
  /** Writers (`generation:fiberId`) whose earlier write failed, with the error their later writes get. */
  readonly #poisoned = new Map<string, unknown>();
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
    const poison = this.#poisoned.get(writerOf(pending.group));
    if (poison !== undefined) {
      pending.reject(poison);
      return;
    }
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
    if (this.#inFlight) return;
    const batch = this.#takeBatch();
    if (batch.length === 0) return;
    this.#inFlight = this.#commit(batch).finally(() => {
      this.#inFlight = null;
      if (this.#queue.length > 0) this.#flush();
    });
  }

  /**
   * The next batch: queued writes in order, without those of poisoned writers (rejected here),
   * up to the first write of a fiber under a second generation (it waits for the next batch).
   */
  #takeBatch(): Pending[] {
    const batch: Pending[] = [];
    const generations = new Map<string, number>();
    let i = 0;
    for (; i < this.#queue.length; i++) {
      const pending = this.#queue[i] as Pending;
      const { fiberId, generation } = pending.group;
      const poison = this.#poisoned.get(writerOf(pending.group));
      if (poison !== undefined) {
        pending.reject(poison);
        continue;
      }
      const seen = generations.get(fiberId);
      if (seen !== undefined && seen !== generation) break;
      generations.set(fiberId, generation);
      batch.push(pending);
    }
    this.#queue = this.#queue.slice(i);
    return batch;
  }

  /** Rejects every later write of `group`'s writer with `error`. */
  #poison(group: WriteGroup, error: unknown): void {
    const writer = writerOf(group);
    if (this.#poisoned.has(writer)) return;
    this.#poisoned.set(writer, error);
    if (this.#poisoned.size > POISON_LIMIT) {
      const oldest = this.#poisoned.keys().next();
      if (!oldest.done) this.#poisoned.delete(oldest.value);
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    const groups = mergeGroups(batch.map((p) => p.group));
    this.stats.transactions += 1;
    this.stats.groups += groups.length;
    let fenced: Set<string>;
    let lapsed: ReadonlySet<string> = new Set();
    try {
      const result = await this.#store.commit(groups);
      fenced = new Set(result.fenced);
      if (result.lapsed !== undefined) lapsed = new Set(result.lapsed);
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
      for (const p of batch) {
        this.#poison(p.group, wrapped);
        p.reject(wrapped);
      }
      return;
    }
    for (const group of groups) {
      if (fenced.has(group.fiberId) || !group.chunks?.length) continue;
      this.stats.chunks += group.chunks.length;
      this.#onChunks(group.fiberId, group.chunks);
    }
    for (const p of batch) {
      if (fenced.has(p.group.fiberId)) {
        const error = lapsed.has(p.group.fiberId)
          ? new FencedError(
              "lease_lapsed",
              `This home's lease on fiber ${p.group.fiberId} ran out before its second home acknowledged it again; the write was refused and this runner stopped (it resumes once the lease is renewed, or the other home continues the fiber).`,
            )
          : new FencedError(
              "fenced",
              `Fiber ${p.group.fiberId} is now owned by another runner (generation ${p.group.generation} is stale); this runner stopped.`,
            );
        this.#poison(p.group, error);
        p.reject(error);
      } else {
        p.resolve();
      }
    }
  }
}

/** The writer of a group: one fiber under one generation. */
function writerOf(group: WriteGroup): string {
  return `${group.generation}:${group.fiberId}`;
}

/**
 * Folds consecutive groups of the same fiber into one, keeping their order. A group is copied
 * only when a later one merges into it (copy on write): the callers' groups are never changed,
 * and a batch without merges (one write, or one per fiber) allocates nothing but the list.
 */
function mergeGroups(groups: WriteGroup[]): WriteGroup[] {
  const out: WriteGroup[] = [];
  // Per fiber: where its current group is in `out`, and whether that entry is already a copy.
  const last = new Map<string, { index: number; owned: boolean }>();
  for (const g of groups) {
    const slot = last.get(g.fiberId);
    const prev = slot && (out[slot.index] as WriteGroup);
    if (!slot || !prev || prev.generation !== g.generation || g.clearJournal) {
      last.set(g.fiberId, { index: out.length, owned: false });
      out.push(g);
      continue;
    }
    let into = prev;
    if (!slot.owned) {
      // The copy owns its arrays and patch, so later groups (one per emitted chunk) merge in place.
      // Field by field rather than a spread: one object shape for every copy (a spread of groups
      // of varied shapes was a tenth of a step loop's CPU).
      into = ownedCopy(prev);
      out[slot.index] = into;
      slot.owned = true;
    }
    if (g.fiber) into.fiber = into.fiber ? Object.assign(into.fiber, g.fiber) : { ...g.fiber };
    if (g.journal) into.journal = append(into.journal, g.journal);
    if (g.snapshot !== undefined) into.snapshot = g.snapshot;
    if (g.chunks) into.chunks = append(into.chunks, g.chunks);
    if (g.consumeEvents) into.consumeEvents = append(into.consumeEvents, g.consumeEvents);
    if (g.unclaimed) into.unclaimed = true;
    if (g.inboxSeen !== undefined) into.inboxSeen = g.inboxSeen;
  }
  return out;
}

/**
 * The fields `ownedCopy` copies: every field of `WriteGroup`, so that a field added there without
 * being copied here fails to compile.
 */
export const COPIED_FIELDS: Readonly<Record<keyof WriteGroup, true>> = {
  fiberId: true,
  generation: true,
  fiber: true,
  clearJournal: true,
  journal: true,
  snapshot: true,
  chunks: true,
  consumeEvents: true,
  unclaimed: true,
  inboxSeen: true,
};

/** A copy of `group` whose patch and arrays are its own (the fields it lacks stay absent). */
function ownedCopy(group: WriteGroup): WriteGroup {
  const copy: WriteGroup = { fiberId: group.fiberId, generation: group.generation };
  if (group.fiber !== undefined) copy.fiber = { ...group.fiber };
  if (group.clearJournal !== undefined) copy.clearJournal = group.clearJournal;
  if (group.journal !== undefined) copy.journal = group.journal.slice();
  if (group.snapshot !== undefined) copy.snapshot = group.snapshot;
  if (group.chunks !== undefined) copy.chunks = group.chunks.slice();
  if (group.consumeEvents !== undefined) copy.consumeEvents = group.consumeEvents.slice();
  if (group.unclaimed !== undefined) copy.unclaimed = group.unclaimed;
  if (group.inboxSeen !== undefined) copy.inboxSeen = group.inboxSeen;
  return copy;
}

/** Appends in place to an array the merged group owns (a copy made when the group was first seen). */
function append<T>(owned: T[] | undefined, items: readonly T[]): T[] {
  if (!owned) return items.slice();
  for (const item of items) owned.push(item);
  return owned;
}
