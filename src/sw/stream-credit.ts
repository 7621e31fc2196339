/**
 * Flow control for the streams pushed over ports (the Service Worker's port stream, the extension
 * host's stream port): a page that reads with flow control grants the worker a window of chunk
 * data, and returns credit as its reader takes chunks, so a reader that stops reading holds at
 * most a window in the port and its queue while the runtime's own reader queue (bounded) and
 * read-back from storage take the rest. A page that grants nothing (an older client) gets every
 * chunk at once, as before.
 */

/** The window a page grants: characters of chunk data (about bytes) in flight at most. */
export const STREAM_WINDOW = 4 * 1024 * 1024;

/** What a chunk costs against the window: its data's length and a little for the rest. */
export function chunkCost(data: string): number {
  return data.length + 64;
}

/** The worker's side: what it may still send. */
export class StreamCredit {
  readonly #window: number | undefined;
  #outstanding = 0;
  #wake: (() => void) | undefined;

  /** `window`: what the page granted; `undefined` for a page that reads without flow control. */
  constructor(window: number | undefined) {
    this.#window = window;
  }

  /** The page took `cost` more of what was sent. */
  grant(cost: number): void {
    this.#outstanding = Math.max(0, this.#outstanding - cost);
    this.#wake?.();
  }

  /**
   * Resolves once a chunk of `cost` may be sent, or when `signal` aborts: when it fits in the
   * window, and whatever its size when less than half a window is in flight. The page returns
   * credit by halves of a window, so what it holds back when it has read everything is under
   * half: a chunk that does not fit then still goes (in flight stays under half a window and one
   * chunk), and the stream never waits for credit that is not coming.
   */
  async reserve(cost: number, signal: AbortSignal): Promise<void> {
    const window = this.#window;
    while (
      window !== undefined &&
      this.#outstanding + cost > window &&
      this.#outstanding >= window / 2 &&
      !signal.aborted
    ) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.#wake = undefined;
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.#wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
    this.#outstanding += cost;
  }
}

/**
 * The page's side: returns credit in batches of half a window as its reader takes chunks (what it
 * holds back is always under half a window, which `StreamCredit.reserve` relies on).
 */
export class CreditReturn {
  #taken = 0;
  readonly #send: (cost: number) => void;

  constructor(send: (cost: number) => void) {
    this.#send = send;
  }

  /** The reader took a chunk of `data`. */
  took(data: string): void {
    this.#taken += chunkCost(data);
    if (this.#taken < STREAM_WINDOW / 2) return;
    const cost = this.#taken;
    this.#taken = 0;
    this.#send(cost);
  }
}
