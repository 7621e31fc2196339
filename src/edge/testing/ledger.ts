/**
 * The Node side of the test Workers' `env.LEDGER` binding: records every side effect a fiber
 * reports (`/<fiber id>/<what>?attempt=N`), lets a test wait for one, and can hold one
 * unanswered so the step that made it is certainly in flight when the test kills workerd.
 */

/** One reported side effect. */
export interface LedgerEntry {
  fiber: string;
  what: string;
  attempt: number;
  at: number;
}

export class Ledger {
  readonly entries: LedgerEntry[] = [];
  readonly #held = new Set<string>();
  readonly #refused = new Set<string>();
  readonly #release: Array<() => void> = [];
  readonly #waiters: Array<{ match: (e: LedgerEntry) => boolean; resolve: () => void }> = [];

  /** The service-binding function to pass to Miniflare. */
  readonly binding = (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    // A question from the Worker about what to refuse (`refuse`), not a side effect: not recorded.
    if (url.pathname.startsWith("/_refused/")) {
      const key = decodeURIComponent(url.pathname.slice("/_refused/".length));
      return Promise.resolve(new Response(this.#refused.has(key) ? "refused" : "ok"));
    }
    const [, fiber = "", what = ""] = url.pathname.split("/").map(decodeURIComponent);
    const entry = { fiber, what, attempt: Number(url.searchParams.get("attempt") ?? 1), at: Date.now() };
    this.entries.push(entry);
    for (const waiter of [...this.#waiters]) {
      if (waiter.match(entry)) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
    if (this.#refused.has(`${fiber}/${what}`))
      return Promise.resolve(new Response("refused", { status: 503 }));
    const key = `${fiber}/${what}/${entry.attempt}`;
    if (!this.#held.has(key)) return Promise.resolve(new Response("ok"));
    return new Promise((resolve) => this.#release.push(() => resolve(new Response("ok"))));
  };

  /** Leaves the report of `what` (attempt `attempt`) by `fiber` unanswered until `releaseAll()`. */
  hold(fiber: string, what: string, attempt = 1): void {
    this.#held.add(`${fiber}/${what}/${attempt}`);
  }

  /**
   * Makes a Worker process started from now on refuse `what` (it asks `/_refused/<what>` when it
   * starts, unrecorded) until `allow(what)`.
   */
  refuse(what: string): void {
    this.#refused.add(what);
  }

  allow(what: string): void {
    this.#refused.delete(what);
  }

  releaseAll(): void {
    for (const release of this.#release.splice(0)) release();
  }

  /** How many times `fiber` reported `what`. */
  count(fiber: string, what?: string): number {
    return this.entries.filter((e) => e.fiber === fiber && (what === undefined || e.what === what)).length;
  }

  /** Resolves when a matching report arrives (or has arrived); rejects after `timeoutMs`. */
  arrived(
    fiber: string,
    what: string,
    options: { attempt?: number; timeoutMs?: number } = {},
  ): Promise<void> {
    const match = (e: LedgerEntry) =>
      e.fiber === fiber &&
      e.what === what &&
      (options.attempt === undefined || e.attempt === options.attempt);
    if (this.entries.some(match)) return Promise.resolve();
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${fiber}/${what} reported within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiters.push({
        match,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }
}
