/**
 * Live fan-out of durable chunks to readers in the same runtime. The commit queue publishes each
 * fiber's chunks right after their transaction completes; `runtime.events()` subscribes here and
 * falls back to reading the store whenever what it holds is not contiguous.
 *
 * The hub also keeps the latest chunks of the fibers it is told to track (those `start` created
 * here, while they run here): a page opens a fiber's stream right after starting it, and a reader
 * that finds its cursor inside that tail goes live without reading storage, where its reads would
 * queue behind the fiber's own first commits.
 */

import type { StreamChunk } from "./records";

type Subscriber = (chunks: readonly StreamChunk[]) => void;

/** The most chunks a tracked fiber's tail keeps; a reader further behind reads storage. */
export const TAIL_CHUNKS = 64;

/** What a tracked fiber's tail holds: its chunks published last, contiguous, in order. */
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
    this.#tails.set(fiberId, { identity, chunks: [] });
  }

  /** Whether fiber `fiberId`'s tail is kept (it was tracked, has not ended, nor been forgotten). */
  tracks(fiberId: string): boolean {
    return this.#tails.has(fiberId);
  }

  /** Stops keeping fiber `fiberId`'s tail (its run left this runtime). */
  forget(fiberId: string): void {
    this.#tails.delete(fiberId);
  }

  /**
   * A copy of fiber `fiberId`'s tail: every chunk published since it was tracked, or the last
   * `TAIL_CHUNKS` of them. Taken in the same turn as `subscribe`, the tail and what the
   * subscriber receives after it are the stream without a gap or an overlap.
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
      if ((last !== undefined && chunk.seq !== last.seq + 1) || chunk.type === "fiber.end") {
        // The end (a reader past it is answered from storage), or not the continuation of what
        // the tail holds (a commit this runtime did not see): readers read storage from now on.
        this.#tails.delete(fiberId);
        return;
      }
      tail.chunks.push(chunk);
    }
    if (tail.chunks.length > TAIL_CHUNKS) tail.chunks.splice(0, tail.chunks.length - TAIL_CHUNKS);
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
      if (subs.size === 0) this.#subscribers.delete(fiberId);
    };
  }
}

/**
 * A single reader's queue: buffers published chunks and wakes the reader when some arrive or a
 * poll interval passes.
 */
export class ChunkInbox {
  #buffer: StreamChunk[] = [];
  #wake: (() => void) | null = null;

  push = (chunks: readonly StreamChunk[]): void => {
    for (const c of chunks) this.#buffer.push(c);
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
