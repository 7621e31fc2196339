/**
 * How the Service Worker host keeps its worker alive while fibers run. A worker lives while one
 * of its events is pending (`waitUntil`), and `waitUntil` can only be called during an event's
 * dispatch; so every event the host sees is held open until the tracked work (runs, `ctx.keepAlive`)
 * is done, capped below Chromium's 5-minute event limit, past which Chromium kills the worker.
 */

/** The part of an `ExtendableEvent` the host uses. */
export interface ExtendableEventLike {
  waitUntil(promise: Promise<unknown>): void;
}

/** Options of {@link WorkerLifetime}. */
export interface WorkerLifetimeOptions {
  /**
   * The longest any single event is held open (default 4 minutes). Chromium stops a worker whose
   * event stays pending for 5 minutes; client heartbeats start new events before this cap.
   */
  maxExtensionMs?: number;
}

/**
 * Tracks work that should keep the worker alive and extends events with it.
 *
 * Failure semantics: work that starts while no event is pending cannot extend anything; it runs
 * until the browser stops the idle worker (about 30 s in Chromium) and is covered by the next
 * event, or recovered at the next start.
 */
export class WorkerLifetime {
  readonly #maxExtensionMs: number;
  readonly #work = new Set<Promise<void>>();
  #idle: { promise: Promise<void>; resolve: () => void } | null = null;

  constructor(options: WorkerLifetimeOptions = {}) {
    this.#maxExtensionMs = options.maxExtensionMs ?? 240_000;
  }

  /** Pieces of tracked work not yet settled. */
  get pending(): number {
    return this.#work.size;
  }

  /** The cap on one event's extension, in ms. */
  get maxExtensionMs(): number {
    return this.#maxExtensionMs;
  }

  /** Tracks `work` until it settles (either way). */
  track(work: Promise<unknown>): void {
    const settled = work.then(
      () => {},
      () => {},
    );
    if (!this.#idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.#idle = { promise, resolve };
    }
    this.#work.add(settled);
    void settled.then(() => {
      this.#work.delete(settled);
      if (this.#work.size === 0 && this.#idle) {
        this.#idle.resolve();
        this.#idle = null;
      }
    });
  }

  /**
   * Holds `event` open until all tracked work is done (work tracked later included) and `also`
   * settles, each capped at `maxExtensionMs`. Call it while the event is being dispatched.
   */
  extend(event: ExtendableEventLike, ...also: Promise<unknown>[]): void {
    const parts = also.map((p) => this.capped(p));
    if (this.#idle) parts.push(this.capped(this.#idle.promise));
    if (parts.length > 0) event.waitUntil(Promise.all(parts));
  }

  /** `promise`, or a timeout of `maxExtensionMs`, whichever settles first; never rejects. */
  capped(promise: Promise<unknown>): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const cap = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#maxExtensionMs);
    });
    const done = promise.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
    return Promise.race([done, cap]);
  }
}
