/**
 * The no-Service-Worker fallback host: the runtime runs in one tab of the origin, elected by a
 * Web Lock held for that tab's lifetime; every other tab reaches it over a BroadcastChannel. One
 * `TabHost` per `connect({ fallback })`: it takes part in the election, runs the app's runtime
 * (`fallback.runtime()`) and recovers the fibers when it wins, and gives `FiberlineClient` a
 * control channel and a stream transport that go to the local runtime while this tab leads and
 * over the channel while another does. When the leader's tab closes or crashes the browser
 * releases its lock, the next tab in line takes it, recovers the fibers from IndexedDB and
 * announces itself; calls pending at the old leader reject with `worker_restarted` and readers
 * resume from their cursor at the new one.
 */

import type { StreamItem } from "../client/event-reader";
import type { ControlChannel } from "../client/http-channel";
import { isDataCloneError, notCloneable } from "../client/not-cloneable";
import { pullQueue } from "../client/pull-queue";
import { withDeadline } from "../client/rpc-channel";
import { ConnectionError, deserializeError, ServiceWorkerUnavailableError } from "../core/errors";
import type { Runtime } from "../core/runtime";
import { fiberChunks } from "../sw/fiber-chunks";
import type { RpcArgs, RpcMethod, RpcResult, WorkerInfo } from "../sw/protocol";
import {
  DEFAULT_TABS_NAME,
  isTabMessage,
  leaderLockName,
  type StreamMessage,
  TABS_PROTOCOL_VERSION,
  type TabMessage,
  tabLockName,
} from "./protocol";
import { TabLeader, type TabLocks } from "./tab-leader";

/** The fallback of `connect()` where no Service Worker can run. */
export interface TabFallbackOptions {
  /**
   * Creates the runtime in the tab that wins the election (and again in the next one when it
   * goes away): the same fibers and store the Service Worker would have, e.g.
   * `() => createRuntime({ store: new IdbStore(), fibers })`. The tab host calls `recover()`.
   */
  runtime(): Runtime | Promise<Runtime>;
  /**
   * `"no-service-worker"` (default): used only where `navigator.serviceWorker` is missing or
   * registering `scriptUrl` is refused. `"always"`: skip the Service Worker (tests, embedded views).
   */
  when?: "no-service-worker" | "always";
  /** Name of the election lock and the channel (default "fiberline/tabs"); one per app. */
  name?: string;
  /** Where failures of the leader's background work are reported (default `console.error`). */
  onError?(error: unknown, doing: string): void;
}

/** What `TabHost` needs beyond the fallback options. */
export interface TabHostOptions extends TabFallbackOptions {
  /** Deadline of every call and of finding a leader, in ms. */
  timeoutMs: number;
  /** Called when a leader answers for the first time, and when another takes over. */
  onConnect?(worker: WorkerInfo, restarted: boolean): void;
  /** The Web Locks manager (default `navigator.locks`). */
  locks?: TabLocks;
  /** Opens the channel (default `new BroadcastChannel(name)`). */
  channel?(name: string): BroadcastChannel;
}

type Pending = { leader: string; method: string; settle(reply: TabMessage | Error): void };
type Stream = { leader: string; push(message: StreamMessage | Error): void };

/**
 * One tab's part in the fallback host: a `ControlChannel` plus a stream transport.
 *
 * Failure semantics: every call has the deadline `timeoutMs`, also when no leader is known yet
 * (`deadline_exceeded`). A call pending at a leader that goes away rejects with `worker_restarted`:
 * it may or may not have taken effect; retry it (a `start` with the same `id` or `idempotencyKey`
 * joins). A stream read from a leader that goes away throws `worker_restarted`, which the client's
 * reader answers by resuming from its cursor at the next leader. Fibers advance only while some
 * tab of the origin is open.
 */
export class TabHost implements ControlChannel {
  /** This tab's id on the channel. */
  readonly tab = randomId();
  readonly #options: TabHostOptions;
  readonly #name: string;
  readonly #locks: TabLocks;
  readonly #channel: BroadcastChannel;
  readonly #stop = new AbortController();
  readonly #pending = new Map<number, Pending>();
  readonly #streams = new Map<number, Stream>();
  #local: { runtime: Runtime; leader: TabLeader } | undefined;
  #remote: WorkerInfo | undefined;
  #last: WorkerInfo | undefined;
  #waiters: Array<() => void> = [];
  #failure: unknown;
  #next = 1;

  constructor(options: TabHostOptions) {
    this.#options = options;
    this.#name = options.name ?? DEFAULT_TABS_NAME;
    this.#locks = options.locks ?? webLockManager();
    this.#channel = options.channel?.(this.#name) ?? openChannel(this.#name);
    this.#channel.addEventListener("message", (event: MessageEvent) => {
      if (isTabMessage(event.data)) this.#receive(event.data);
    });
    void this.#join();
  }

  /** Whether this tab runs the fibers now. */
  get leading(): boolean {
    return this.#local !== undefined;
  }

  /** The leader that answers now (this tab's own instance while it leads). */
  get worker(): WorkerInfo | undefined {
    return this.#stop.signal.aborted ? undefined : this.#current();
  }

  /** Resolves once a leader (this tab or another) answers. */
  async open(): Promise<WorkerInfo> {
    return await withDeadline(this.#leader(), this.#options.timeoutMs, () =>
      noLeaderError(this.#options.timeoutMs),
    );
  }

  call<M extends RpcMethod>(method: M, args: RpcArgs<M>): Promise<RpcResult<M>> {
    if (this.#stop.signal.aborted) return Promise.reject(closedError());
    const call = this.#next++;
    const answer = this.#leader().then((leader) => {
      const local = this.#local;
      if (local) {
        const fn = local.leader.api[method] as (...a: unknown[]) => Promise<RpcResult<M>>;
        return fn(...args);
      }
      return new Promise<RpcResult<M>>((resolve, reject) => {
        this.#pending.set(call, {
          leader: leader.instanceId,
          method,
          settle: (reply) => {
            this.#pending.delete(call);
            if (reply instanceof Error) reject(reply);
            else if (reply.type === "result") resolve(reply.value as RpcResult<M>);
            else if (reply.type === "failed") reject(deserializeError(reply.error));
          },
        });
        try {
          this.#post({
            type: "call",
            v: TABS_PROTOCOL_VERSION,
            from: this.tab,
            leader: leader.instanceId,
            call,
            method,
            args: [...args],
          });
        } catch (cause) {
          // BroadcastChannel clones the arguments: a function or a DOM node cannot go. The same
          // call in the leader tab is refused by the runtime with this error.
          this.#pending.delete(call);
          reject(isDataCloneError(cause) ? notCloneable(method, "the tab running the fibers", cause) : cause);
        }
      });
    });
    const { timeoutMs } = this.#options;
    return withDeadline(answer, timeoutMs, () => {
      this.#pending.delete(call);
      return new ConnectionError(
        "deadline_exceeded",
        `The tab running the fibers did not answer ${method}() within ${timeoutMs} ms. It may be busy or closing; the call may or may not have taken effect. Retry, or raise timeoutMs in connect().`,
      );
    });
  }

  /**
   * One attempt of the client's resumable reader (its `transport`): the chunks after `after`
   * from the local runtime while this tab leads, else from the leader over the channel.
   */
  async *stream(fiber: string, after: number, signal: AbortSignal): AsyncGenerator<StreamItem> {
    const leader = await withDeadline(this.#leader(), this.#options.timeoutMs, () =>
      noLeaderError(this.#options.timeoutMs),
    );
    signal.throwIfAborted();
    if (this.#local) {
      yield* fiberChunks(this.#local.runtime, fiber, after, signal);
      return;
    }
    yield* this.#remoteStream(leader.instanceId, fiber, after, signal);
  }

  /** Leaves the election (handing the fibers to the next tab) and rejects pending calls. */
  close(): void {
    if (this.#stop.signal.aborted) return;
    this.#stop.abort();
    this.#failAll(closedError());
    const local = this.#local;
    this.#local = undefined;
    if (local) {
      local.leader.dispose();
      local.runtime.close().catch((error: unknown) => this.#report(error, "closing the runtime"));
    }
    this.#channel.close();
  }

  async *#remoteStream(
    leader: string,
    fiber: string,
    after: number,
    signal: AbortSignal,
  ): AsyncGenerator<StreamItem> {
    const stream = this.#next++;
    const queue = pullQueue<StreamMessage | Error>(signal);
    this.#streams.set(stream, { leader, push: (message) => queue.push(message) });
    let finished = false;
    try {
      this.#post({
        type: "subscribe",
        v: TABS_PROTOCOL_VERSION,
        from: this.tab,
        leader,
        stream,
        fiber,
        after,
      });
      for (;;) {
        const next = await queue.next();
        if (next instanceof Error) throw next;
        switch (next.type) {
          case "opened":
            yield { created: next.created };
            break;
          case "chunk":
            yield { seq: next.seq, event: next.event, at: next.at, data: next.data };
            break;
          case "end":
            finished = true;
            return;
          case "ended":
            finished = true;
            yield "ended";
            return;
          case "error":
            finished = true;
            throw deserializeError(next.error);
        }
      }
    } finally {
      queue.close();
      this.#streams.delete(stream);
      if (!finished && !this.#stop.signal.aborted)
        this.#post({ type: "unsubscribe", from: this.tab, stream });
    }
  }

  /** Holds this tab's own lock, asks who leads, and queues for the leader lock. */
  async #join(): Promise<void> {
    const signal = this.#stop.signal;
    try {
      // Held for the tab's lifetime: the leader waits on it to learn this tab is gone.
      await new Promise<void>((granted, failed) => {
        this.#locks
          .request(tabLockName(this.#name, this.tab), { signal }, () => {
            granted();
            return untilAborted(signal);
          })
          .catch(failed);
      });
      this.#post({ type: "hello", v: TABS_PROTOCOL_VERSION, from: this.tab });
      await this.#locks.request(leaderLockName(this.#name), { signal }, async () => {
        if (signal.aborted) return;
        await this.#lead();
        // Lead until this client closes or the tab goes away (the browser then releases the lock).
        // Closed while it was taking the lead, the signal is aborted already: let go at once.
        await untilAborted(signal);
      });
    } catch (error) {
      if (signal.aborted) return;
      this.#failure = error;
      this.#report(error, "taking part in the tab election");
      this.#wakeWaiters();
    }
  }

  /** This tab won: create the runtime, recover the fibers, take over, announce. */
  async #lead(): Promise<void> {
    const runtime = await this.#options.runtime();
    let recovered = false;
    const info: WorkerInfo = {
      instanceId: randomId(),
      scriptUrl: globalThis.location?.href ?? "",
      startedAt: Date.now(),
      protocol: TABS_PROTOCOL_VERSION,
      prefix: this.#name,
    };
    const leader = new TabLeader({
      runtime,
      info,
      name: this.#name,
      locks: this.#locks,
      post: (message) => this.#post(message),
      recovered: () => recovered,
      onError: (error, doing) => this.#report(error, doing),
    });
    try {
      await runtime.recover();
      recovered = true;
    } catch (error) {
      // The runtime's sweeper retries what is left; calls and streams are served meanwhile.
      this.#report(error, "recovering fibers at takeover");
    }
    if (this.#stop.signal.aborted) {
      await runtime.close();
      return;
    }
    // Whatever was pending at the old leader is lost with it.
    this.#failAll(null);
    this.#remote = undefined;
    this.#local = { runtime, leader };
    this.#changed(info);
    leader.announce();
  }

  #receive(message: TabMessage): void {
    if (this.#stop.signal.aborted) return;
    if ("to" in message) {
      if (message.to !== this.tab) return;
      if ("stream" in message) this.#streams.get(message.stream)?.push(message);
      else this.#pending.get(message.call)?.settle(message);
      return;
    }
    if (message.type === "leader") {
      if (message.v !== TABS_PROTOCOL_VERSION || this.#local) return;
      if (this.#remote?.instanceId === message.leader.instanceId) return;
      this.#remote = message.leader;
      this.#failAll(null, message.leader.instanceId);
      this.#changed(message.leader);
      return;
    }
    this.#local?.leader.receive(message);
  }

  #current(): WorkerInfo | undefined {
    return this.#local ? this.#last : this.#remote;
  }

  #changed(leader: WorkerInfo): void {
    const restarted = this.#last !== undefined && this.#last.instanceId !== leader.instanceId;
    this.#last = leader;
    this.#wakeWaiters();
    this.#options.onConnect?.(leader, restarted);
  }

  /** The leader to talk to, once there is one. */
  #leader(): Promise<WorkerInfo> {
    const known = this.#current();
    if (known) return Promise.resolve(known);
    if (this.#stop.signal.aborted) return Promise.reject(closedError());
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise<void>((resolve) => this.#waiters.push(resolve)).then(() => this.#leader());
  }

  #wakeWaiters(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Rejects the calls and streams of every leader but `keep` (with `error`, or `worker_restarted`). */
  #failAll(error: Error | null, keep?: string): void {
    for (const pending of [...this.#pending.values()]) {
      if (pending.leader === keep) continue;
      pending.settle(error ?? restartedError(`${pending.method}() was pending`));
    }
    for (const [id, stream] of [...this.#streams]) {
      if (stream.leader === keep) continue;
      this.#streams.delete(id);
      stream.push(error ?? restartedError("its stream was open"));
    }
    if (error) this.#wakeWaiters();
  }

  #post(message: TabMessage): void {
    if (this.#stop.signal.aborted) return;
    this.#channel.postMessage(message);
  }

  #report(error: unknown, doing: string): void {
    const onError = this.#options.onError ?? ((e, d) => console.error(`[fiberline/tabs] ${d} failed:`, e));
    onError(error, doing);
  }
}

function restartedError(what: string): ConnectionError {
  return new ConnectionError(
    "worker_restarted",
    `The tab running the fibers went away while ${what}, and another tab took over. A call may or may not have taken effect: retry it (start() with the same id or idempotencyKey joins instead of starting twice); streams resume by themselves.`,
  );
}

function noLeaderError(ms: number): ConnectionError {
  return new ConnectionError(
    "deadline_exceeded",
    `No tab of this origin took the lead within ${ms} ms: the tab that holds the Fiberline lock does not answer, or fallback.runtime() is slow or failing. Check the leader tab's console.`,
  );
}

function closedError(): ConnectionError {
  return new ConnectionError("client_closed", "This Fiberline client was closed; connect() again.");
}

/** `navigator.locks`, or the typed error that says the fallback cannot run here. */
function webLockManager(): TabLocks {
  const locks = (globalThis as { navigator?: { locks?: TabLocks } }).navigator?.locks;
  if (locks) return locks;
  throw new ServiceWorkerUnavailableError(
    "fallback_unavailable",
    "Neither a Service Worker nor the tab fallback can run here: the fallback elects one tab with the Web Locks API (navigator.locks), which browsers offer only in secure contexts. Serve the app over HTTPS (or from localhost in development).",
  );
}

function openChannel(name: string): BroadcastChannel {
  if (typeof BroadcastChannel === "function") return new BroadcastChannel(name);
  throw new ServiceWorkerUnavailableError(
    "fallback_unavailable",
    "Neither a Service Worker nor the tab fallback can run here: the fallback needs BroadcastChannel, which this browser lacks. Open the app in a current browser.",
  );
}

function randomId(): string {
  return globalThis.crypto.randomUUID();
}

/** Resolves once `signal` is aborted, at once when it is already. */
function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}
