/**
 * Live fan-out of durable chunks to readers in the same runtime. The commit queue publishes each
 * fiber's chunks right after their transaction completes; `runtime.events()` subscribes here and
 * falls back to reading the store whenever what it holds is not contiguous.
 *
 * The hub also keeps the first chunks of the fibers it is told to track (a fiber `start` created
 * in this runtime, while it runs here): a page opens a fiber's stream right after starting it,
 * and a reader whose cursor is inside those chunks goes live without reading storage, where its
 * reads would queue behind the fiber's own first commits. A tail is only for that moment: it is
 * dropped once it would hold more than `TAIL_CHUNKS` chunks, and at most `TAILS` fibers keep one.
 */

import type { StreamChunk } from "./records";
import { estimateSize } from "./validate";

type Subscriber = (chunks: readonly StreamChunk[]) => void;

/** The most chunks a tail holds; at the next one it is dropped, and readers read storage. */
export const TAIL_CHUNKS = 32;

/** The most fibers that keep a tail at once; tracking one more drops the oldest tail. */
export const TAILS = 128;

/** What a tracked fiber's tail holds: its chunks published since it was tracked, in order. */
export interface StreamTail {
  /** Which fiber under this id (`identityOf` in the stream reader): a later one starts over. */
  identity: string;
  chunks: readonly StreamChunk[];
}

/** Per-fiber subscriber lists, and the tails of tracked fibers. */
export class StreamHub {
  readonly #subscribers = new Map<string, Set<Subscriber>>();
  readonly #tails = new Map<string, { identity: string; chunks: StreamChunk[] }>();

  /** Delivers durable `chunks` of `fiberId` to its subscribers. */
  publish(fiberId: string, chunks: readonly StreamChunk[]): void {
    this.#extendTail(fiberId, chunks);
    const subs = this.#subscribers.get(fiberId);
    if (!subs) return;
    for (const sub of subs) sub(chunks);
  }

  /**
   * Keeps the tail of fiber `fiberId` (of `identity`) from its next published chunk on, until
   * `forget`, its `fiber.end`, or a publish that does not continue it.
   */
  track(fiberId: string, identity: string): void {
    this.#tails.delete(fiberId);
    this.#tails.set(fiberId, { identity, chunks: [] });
    if (this.#tails.size > TAILS) {
      const oldest = this.#tails.keys().next();
      if (!oldest.done) this.#tails.delete(oldest.value);
    }
  }

  /**
   * Whether a reader of fiber `fiberId` after `cursor` can start from its tail: the tail holds
   * the chunk right after the cursor (so the fiber exists, and there is something to send).
   */
  covers(fiberId: string, cursor: number): boolean {
    const chunks = this.#tails.get(fiberId)?.chunks;
    return chunks !== undefined && startsWithin(chunks, cursor);
  }

  /** The identity fiber `fiberId`'s tail was tracked with, while it keeps one. */
  identity(fiberId: string): string | undefined {
    return this.#tails.get(fiberId)?.identity;
  }

  /** Stops keeping fiber `fiberId`'s tail (its run left this runtime). */
  forget(fiberId: string): void {
    this.#tails.delete(fiberId);
  }

  /**
   * A copy of fiber `fiberId`'s tail: every chunk published since it was tracked. Taken in the
   * same turn as `subscribe`, the tail and what the subscriber receives after it are the stream
   * without a gap or an overlap.
   */
  tail(fiberId: string): StreamTail | undefined {
    const tail = this.#tails.get(fiberId);
    return tail && { identity: tail.identity, chunks: tail.chunks.slice() };
  }

  #extendTail(fiberId: string, chunks: readonly StreamChunk[]): void {
    const tail = this.#tails.get(fiberId);
    if (tail === undefined) return;
    for (const chunk of chunks) {
      const last = tail.chunks.at(-1);
      const continues = last === undefined || chunk.seq === last.seq + 1;
      if (!continues || chunk.type === "fiber.end" || tail.chunks.length === TAIL_CHUNKS) {
        // A commit this runtime did not see, the end (a reader past it is answered from
        // storage), or past the first moments of the fiber: readers read storage from now on.
        this.#tails.delete(fiberId);
        return;
      }
      tail.chunks.push(chunk);
    }
  }

  /** Subscribes to `fiberId`; returns the unsubscribe function. */
  subscribe(fiberId: string, subscriber: Subscriber): () => void {
    let subs = this.#subscribers.get(fiberId);
    if (!subs) {
      subs = new Set();
      this.#subscribers.set(fiberId, subs);
    }
    subs.add(subscriber);
    return () => {
      subs.delete(subscriber);
      // Idempotent: a second call must not drop a set made since for new subscribers.
      if (subs.size === 0 && this.#subscribers.get(fiberId) === subs) this.#subscribers.delete(fiberId);
    };
  }
}

/**
 * The most chunks a reader's queue keeps while its reader is not taking them (a page that stopped
 * reading while its fiber goes on emitting): past it the oldest half goes. Every published chunk
 * is durable, and a reader whose queue no longer starts right after its cursor reads the missing
 * ones from storage, so this bounds memory and loses nothing.
 */
export const INBOX_LIMIT = 4096;

/**
 * The most a reader's queue keeps in estimated bytes (`estimateSize` of each chunk's data), for
 * the same reason: 4,096 chunks of up to `maxPayloadBytes` each would be gigabytes.
 */
export const INBOX_BYTES = 8 * 1024 * 1024;

/**
 * A single reader's queue: buffers published chunks (the latest `INBOX_LIMIT` and `INBOX_BYTES`
 * at most) and wakes the reader when some arrive or a poll interval passes.
 */
export class ChunkInbox {
  #buffer: StreamChunk[] = [];
  /** The estimated size of each buffered chunk, in the same order. */
  #sizes: number[] = [];
  #bytes = 0;
  #wake: (() => void) | null = null;

  push = (chunks: readonly StreamChunk[]): void => {
    for (const c of chunks) {
      const size = estimateSize(c.data, INBOX_BYTES);
      this.#buffer.push(c);
      this.#sizes.push(size);
      this.#bytes += size;
    }
    if (this.#buffer.length > INBOX_LIMIT || this.#bytes > INBOX_BYTES) {
      // Down to half of each limit, oldest first.
      let drop = 0;
      let bytes = this.#bytes;
      while (
        drop < this.#buffer.length &&
        (this.#buffer.length - drop > INBOX_LIMIT / 2 || bytes > INBOX_BYTES / 2)
      ) {
        bytes -= this.#sizes[drop] as number;
        drop++;
      }
      const dropped = this.#buffer.splice(0, drop);
      this.#sizes.splice(0, drop);
      this.#bytes = bytes;
      // A first `fiber.start` stays: by it a reader tells a fiber started again under its id.
      const start = dropped.find((c) => c.seq === 1 && c.type === "fiber.start");
      if (start !== undefined) {
        this.#buffer.unshift(start);
        this.#sizes.unshift(0);
      }
    }
    this.#wake?.();
  };

  /** How many chunks are buffered. */
  get size(): number {
    return this.#buffer.length;
  }

  /** Takes everything buffered. */
  take(): StreamChunk[] {
    const out = this.#buffer;
    this.#buffer = [];
    this.#sizes = [];
    this.#bytes = 0;
    return out;
  }

  /** Resolves when chunks arrive, after `timeoutMs`, or when `signal` aborts. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.#buffer.length > 0 || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }
}

/**
 * Whether `chunks` (contiguous) hold the chunk right after `cursor`, so a reader there can go on
 * from them with no gap before them.
 */
export function startsWithin(chunks: readonly StreamChunk[], cursor: number): boolean {
  const first = chunks[0];
  const last = chunks.at(-1);
  return first !== undefined && last !== undefined && first.seq <= cursor + 1 && last.seq > cursor;
}
