/**
 * `pullQueue`: items pushed by callbacks (port messages, channel messages), pulled one at a time
 * by an async loop, such as a stream transport's generator.
 */

/** A queue fed by `push` and read by `next`. */
export interface PullQueue<T> {
  /** Adds `item` and wakes a waiting `next`. */
  push(item: T): void;
  /**
   * The oldest item, waiting for one if none is queued. Items already queued are returned even
   * after `signal` aborted; once the queue is empty, rejects with the signal's reason.
   */
  next(): Promise<T>;
  /** Stops listening to the signal; call it when the reading loop ends. */
  close(): void;
}

/** A `PullQueue` whose waiting `next` is woken, and rejected, by `signal`'s abort. */
export function pullQueue<T>(signal: AbortSignal): PullQueue<T> {
  const queue: T[] = [];
  let wake: (() => void) | null = null;
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort);
  return {
    push(item) {
      queue.push(item);
      wake?.();
    },
    async next() {
      for (;;) {
        if (queue.length > 0) return queue.shift() as T;
        signal.throwIfAborted();
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = null;
      }
    },
    close() {
      signal.removeEventListener("abort", onAbort);
    },
  };
}
