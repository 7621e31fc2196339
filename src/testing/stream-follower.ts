/**
 * A fiber's stream as one reader sees it across page deaths: chunks read in a page through
 * `window.fiberline.events()` are pushed to Node as they arrive, so they outlive the page, and the
 * next page resumes with `after` = the last seq received. `AppSession.follow()` creates these and
 * moves their page-side reader from page to page; a follower only keeps the log.
 */

import type { FiberEvent } from "../core/records";
import { checkStream, type StreamReport } from "./stream-check";

/** A message from a page-side reader (through the session's binding). */
export type ReaderMessage =
  | { token: string; kind: "chunk"; event: FiberEvent }
  | { token: string; kind: "end" }
  | { token: string; kind: "error"; error: string };

interface Waiter {
  test(): boolean;
  resolve(): void;
}

/** The log of one fiber's stream, read through every fault the test injects. */
export class StreamFollower {
  /** The fiber followed. */
  readonly fiberId: string;
  /** The seq it started after. */
  readonly after: number;
  readonly #received: FiberEvent[] = [];
  readonly #errors: string[] = [];
  readonly #waiters = new Set<Waiter>();
  #lastSeq: number;
  #token: string | null = null;
  #attachments = 0;
  #stopped = false;
  #finished = false;

  /** @internal Created by `AppSession.follow()`. */
  constructor(fiberId: string, after: number) {
    this.fiberId = fiberId;
    this.after = after;
    this.#lastSeq = after;
  }

  /** Every chunk received, in arrival order (a duplicate would appear twice). */
  get events(): readonly FiberEvent[] {
    return this.#received;
  }

  /** The highest seq received: where the next page's reader resumes. */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Whether `fiber.end` was received. */
  get ended(): boolean {
    return this.#finished;
  }

  /** How many page-side readers have read for it (1 + one per page change). */
  get attachments(): number {
    return this.#attachments;
  }

  /** Errors the page-side readers gave up with (each was followed by a new reader). */
  get readerErrors(): readonly string[] {
    return this.#errors;
  }

  /** Lost, duplicated and reordered seqs so far (see `checkStream`). */
  report(): StreamReport {
    return checkStream(this.#received, { after: this.after });
  }

  /**
   * Resolves once `test(events)` holds for the chunks received so far.
   *
   * Failure semantics: rejects after `timeoutMs` (default 60 s) with the last chunks in the message.
   */
  async waitFor(
    test: (events: readonly FiberEvent[]) => boolean,
    options: { timeoutMs?: number; what?: string } = {},
  ): Promise<readonly FiberEvent[]> {
    if (test(this.#received)) return this.#received;
    const timeoutMs = options.timeoutMs ?? 60_000;
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        test: () => test(this.#received),
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        const tail = this.#received
          .slice(-5)
          .map((e) => `${e.seq}:${e.type}`)
          .join(", ");
        reject(
          new Error(
            `Fiber ${this.fiberId}: ${options.what ?? "the awaited chunks"} did not arrive within ${timeoutMs} ms (received ${this.#received.length}, last: ${tail || "none"}; reader errors: ${this.#errors.join(" | ") || "none"}).`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
    return this.#received;
  }

  /** Resolves with every chunk once `fiber.end` arrived (see {@link waitFor}). */
  async done(options: { timeoutMs?: number } = {}): Promise<readonly FiberEvent[]> {
    return await this.waitFor(() => this.#finished, { ...options, what: "fiber.end" });
  }

  /** Resolves once at least `count` chunks of `type` (any type when omitted) arrived. */
  async count(count: number, type?: string, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.waitFor(
      (events) => events.filter((e) => type === undefined || e.type === type).length >= count,
      {
        ...options,
        what: `${count} ${type ?? "chunk"}(s)`,
      },
    );
  }

  /** Stops following: later chunks are ignored and no new reader is started. */
  stop(): void {
    this.#stopped = true;
    this.#token = null;
  }

  /** @internal Whether it needs a page-side reader. */
  get detached(): boolean {
    return this.#token === null && !this.#stopped && !this.#finished;
  }

  /** @internal Binds a new page-side reader; returns its token (older readers are ignored from now on). */
  bind(): string {
    this.#attachments++;
    this.#token = `${this.fiberId}#${this.#attachments}`;
    return this.#token;
  }

  /** @internal Forgets the current reader (its page went away); the session binds a new one. */
  unbind(token?: string): void {
    if (token === undefined || token === this.#token) this.#token = null;
  }

  /** @internal Whether `token` is the current reader's. */
  owns(token: string): boolean {
    return token === this.#token;
  }

  /** @internal A message from the current reader (stale ones are filtered by the session). */
  receive(message: ReaderMessage): void {
    if (!this.owns(message.token)) return;
    if (message.kind === "chunk") {
      this.#received.push(message.event);
      this.#lastSeq = Math.max(this.#lastSeq, message.event.seq);
      if (message.event.type === "fiber.end") this.#finished = true;
    } else if (message.kind === "end") {
      this.#token = null;
      if (!this.#finished) this.#errors.push("the stream closed before fiber.end");
    } else {
      this.#token = null;
      this.#errors.push(message.error);
    }
    for (const waiter of this.#waiters) {
      if (!waiter.test()) continue;
      this.#waiters.delete(waiter);
      waiter.resolve();
    }
  }
}
