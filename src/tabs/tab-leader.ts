/**
 * The leader's side of the tab host: in the one tab that won the election, answers the other
 * tabs' control calls (the shared `createControlApi`, as the Service Worker and extension hosts
 * do) and pushes fiber streams to them over the BroadcastChannel. Used by `TabHost`.
 */

import { ConnectionError, serializeError } from "../core/errors";
import type { Runtime } from "../core/runtime";
import { CONTROL_METHODS, createControlApi } from "../sw/control-api";
import { fiberChunks } from "../sw/fiber-chunks";
import type { ControlApi, HeartbeatInfo, WorkerInfo } from "../sw/protocol";
import { type StreamMessage, TABS_PROTOCOL_VERSION, type TabMessage, tabLockName } from "./protocol";

/** The Web Locks calls the leader makes. */
export interface TabLocks {
  request(
    name: string,
    options: { signal?: AbortSignal; ifAvailable?: boolean },
    callback: (lock: unknown) => Promise<unknown> | unknown,
  ): Promise<unknown>;
}

/** What a leader needs. */
export interface TabLeaderOptions {
  runtime: Runtime;
  /** This leader instance, as followers see it. */
  info: WorkerInfo;
  /** The election's name (lock and channel). */
  name: string;
  post(message: TabMessage): void;
  locks: TabLocks;
  /** Whether the takeover's `recover()` has finished. */
  recovered(): boolean;
  onError(error: unknown, doing: string): void;
}

/**
 * Serves followers from this tab's runtime.
 *
 * Failure semantics: a call's error goes back with its class and `code`; a call or subscription
 * for another leader instance is ignored (its sender retries with the leader announced since).
 * A follower that goes away (its tab lock is released: closed, crashed, navigated) has its
 * streams stopped; a stream whose follower stops listening otherwise ends at `fiber.end`.
 */
export class TabLeader {
  readonly #options: TabLeaderOptions;
  readonly #api: ControlApi;
  /** Open streams by `${tab} ${stream}`. */
  readonly #streams = new Map<string, AbortController>();
  /** Followers whose tab lock the leader waits on. */
  readonly #watched = new Set<string>();
  readonly #stop = new AbortController();

  constructor(options: TabLeaderOptions) {
    this.#options = options;
    this.#api = createControlApi(
      options.runtime,
      (): HeartbeatInfo => ({
        ...options.info,
        active: options.runtime.activeCount,
        recovered: options.recovered(),
      }),
    );
  }

  /** The control API, for the leader tab's own calls. */
  get api(): ControlApi {
    return this.#api;
  }

  /** Tells every tab who leads now. */
  announce(): void {
    this.#options.post({ type: "leader", v: TABS_PROTOCOL_VERSION, leader: this.#options.info });
  }

  /** Handles one message from the channel (replies to others are not for the leader). */
  receive(message: TabMessage): void {
    if (this.#stop.signal.aborted) return;
    switch (message.type) {
      case "hello":
        if (message.v === TABS_PROTOCOL_VERSION) this.announce();
        return;
      case "call":
        if (message.leader !== this.#options.info.instanceId) return;
        this.#watch(message.from);
        this.#call(message);
        return;
      case "subscribe":
        if (message.leader !== this.#options.info.instanceId) return;
        this.#watch(message.from);
        this.#subscribe(message);
        return;
      case "unsubscribe":
        this.#streams.get(`${message.from} ${message.stream}`)?.abort();
        return;
    }
  }

  /** Stops every stream and watch (the tab stops leading). */
  dispose(): void {
    this.#stop.abort();
    for (const stream of this.#streams.values()) stream.abort();
    this.#streams.clear();
  }

  #call(message: Extract<TabMessage, { type: "call" }>): void {
    const { from: to, call, method, args } = message;
    const post = this.#options.post;
    if (!CONTROL_METHODS.includes(method)) {
      const error = new ConnectionError("protocol_error", `Unknown control call "${String(method)}".`);
      post({ type: "failed", to, call, error: serializeError(error) });
      return;
    }
    const fn = this.#api[method] as (...a: unknown[]) => Promise<unknown>;
    Promise.resolve()
      .then(() => fn(...(Array.isArray(args) ? args : [])))
      .then(
        (value) => post({ type: "result", to, call, value }),
        (error: unknown) => post({ type: "failed", to, call, error: serializeError(error) }),
      )
      .catch((error: unknown) => this.#options.onError(error, `answering ${method}()`));
  }

  #subscribe(message: Extract<TabMessage, { type: "subscribe" }>): void {
    const { from: to, stream, fiber, after } = message;
    const key = `${to} ${stream}`;
    if (this.#streams.has(key)) return;
    const abort = new AbortController();
    this.#streams.set(key, abort);
    const post = (reply: StreamMessage) => {
      if (!abort.signal.aborted) this.#options.post(reply);
    };
    void (async () => {
      try {
        for await (const chunk of fiberChunks(this.#options.runtime, fiber, after, abort.signal)) {
          if (chunk === "ended") {
            post({ type: "ended", to, stream });
            return;
          }
          if ("created" in chunk) post({ type: "opened", to, stream, created: chunk.created });
          else post({ type: "chunk", to, stream, ...chunk });
        }
        post({ type: "end", to, stream });
      } catch (error) {
        post({ type: "error", to, stream, error: serializeError(error) });
      } finally {
        abort.abort();
        this.#streams.delete(key);
      }
    })();
  }

  /** Waits on a follower's tab lock: granted once its tab is gone, which stops its streams. */
  #watch(tab: string): void {
    if (this.#watched.has(tab)) return;
    this.#watched.add(tab);
    this.#options.locks
      .request(tabLockName(this.#options.name, tab), { signal: this.#stop.signal }, () => {
        this.#watched.delete(tab);
        for (const [key, stream] of this.#streams) if (key.startsWith(`${tab} `)) stream.abort();
      })
      .catch(() => {
        // Aborted: this tab stopped leading.
      });
  }
}
