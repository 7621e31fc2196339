/**
 * Live fan-out of durable chunks to readers in the same runtime. The commit queue publishes each
 * fiber's chunks right after their transaction completes; `runtime.events()` subscribes here and
 * falls back to reading the store whenever what it holds is not contiguous.
 */

import type { StreamChunk } from "./records";

type Subscriber = (chunks: readonly StreamChunk[]) => void;

/** Per-fiber subscriber lists. */
export class StreamHub {
  readonly #subscribers = new Map<string, Set<Subscriber>>();

  /** Delivers durable `chunks` of `fiberId` to its subscribers. */
  publish(fiberId: string, chunks: readonly StreamChunk[]): void {
    const subs = this.#subscribers.get(fiberId);
    if (!subs) return;
    for (const sub of subs) sub(chunks);
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
