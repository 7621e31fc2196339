/**
 * The page's end of the control channel: a comlink proxy on a `MessagePort` whose other end the
 * Service Worker host exposes. Every call has a deadline; a worker that restarted (its old port
 * silently dead: Chromium fires no `close` event on it) is detected and the channel re-handshakes,
 * rejecting the calls that were pending on the dead port. Used by `FiberlineClient`.
 */

import { type Endpoint, type Remote, transfer, wrap } from "comlink";
import { ConnectionError, deserializeError } from "../core/errors";
import { installErrorTransfer } from "../sw/error-transfer";
import type { ControlApi, PortStreamApi } from "../sw/protocol";
import {
  type ConnectMessage,
  type HandshakeReply,
  PROTOCOL_VERSION,
  type RpcArgs,
  type RpcMethod,
  type RpcResult,
  type WorkerInfo,
} from "../sw/protocol";
import { isDataCloneError, notCloneable } from "./not-cloneable";

/** Something to post the handshake to: the controlling `ServiceWorker`. */
export interface WorkerTarget {
  postMessage(message: unknown, transfer: Transferable[]): void;
}

/** Where the channel finds its worker. */
export interface ChannelHost {
  /** The worker controlling the page; waits (at most `timeoutMs`) until there is one. */
  controller(timeoutMs: number): Promise<WorkerTarget>;
  /** Calls `listener` when another worker takes control; returns the unsubscribe function. */
  onControllerChange(listener: () => void): () => void;
}

/** Options of {@link RpcChannel}. */
export interface RpcChannelOptions {
  host: ChannelHost;
  prefix: string;
  /** Deadline of every call and of the handshake, in ms. */
  timeoutMs: number;
  /** A call unanswered this long makes the channel check whether the worker restarted. */
  probeAfterMs: number;
  /** A channel silent this long re-handshakes before the next call (the worker may have idled out). */
  staleAfterMs: number;
  /** Called after every handshake, with whether it found a new worker instance. */
  onConnect?(worker: WorkerInfo, restarted: boolean): void;
}

interface PendingCall {
  method: string;
  reject(error: unknown): void;
}

interface Connection {
  port: MessagePort;
  remote: Remote<ControlApi & PortStreamApi>;
  worker: WorkerInfo;
  pending: Set<PendingCall>;
  lastHeardAt: number;
  retired: boolean;
  probed: boolean;
}

/**
 * A deadline-bound, restart-aware RPC channel to the Service Worker host.
 *
 * Failure semantics: a call rejects with `ConnectionError` `deadline_exceeded` when no answer came
 * in time, and with `worker_restarted` when the worker it was sent to was replaced or restarted
 * before answering (a controller change, or a new instance found by a probe). Either way the call
 * may or may not have taken effect in the worker: retry it; `start` with the same `id` or
 * `idempotencyKey` joins instead of starting twice. The next call re-handshakes.
 */
export class RpcChannel {
  readonly #options: RpcChannelOptions;
  readonly #unsubscribe: () => void;
  #current: Connection | null = null;
  #connecting: Promise<Connection> | null = null;
  #epoch = 0;
  #closed = false;

  constructor(options: RpcChannelOptions) {
    installErrorTransfer();
    this.#options = options;
    this.#unsubscribe = options.host.onControllerChange(() => this.#controllerChanged());
  }

  /** The worker instance of the current connection, if connected. */
  get worker(): WorkerInfo | undefined {
    return this.#current?.worker;
  }

  /** Connects now (calls connect lazily otherwise); rejects like a call would. */
  async open(): Promise<WorkerInfo> {
    return (await this.#connection(this.#options.timeoutMs)).worker;
  }

  /** Calls `method` in the worker with a deadline of `timeoutMs` (default: the channel's). */
  call<M extends RpcMethod>(
    method: M,
    args: RpcArgs<M>,
    timeoutMs = this.#options.timeoutMs,
  ): Promise<RpcResult<M>> {
    return this.#invoke(
      method,
      (remote) => {
        const fn = remote[method] as unknown as (...a: RpcArgs<M>) => Promise<RpcResult<M>>;
        return fn(...args);
      },
      timeoutMs,
    );
  }

  /**
   * Asks the worker to push the events of fiber `id` after `after` to `port` (the stream fallback
   * of `PortStreamApi`); resolves once the worker accepted, with the same deadline as a call.
   */
  openStream(id: string, after: number, port: MessagePort, created?: number, window?: number): Promise<void> {
    return this.#invoke(
      "openStream",
      (remote) => remote.openStream(id, after, transfer(port, [port]), created, window),
      this.#options.timeoutMs,
    );
  }

  #invoke<T>(
    method: string,
    send: (remote: Remote<ControlApi & PortStreamApi>) => Promise<T>,
    timeoutMs: number,
  ): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let conn: Connection | undefined;
      let probe: ReturnType<typeof setTimeout> | undefined;
      const entry: PendingCall = { method, reject: (error) => settle(() => reject(error)) };
      const settle = (finish: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(probe);
        if (conn) this.#release(conn, entry);
        finish();
      };
      const timer = setTimeout(() => {
        settle(() => reject(deadlineError(method, timeoutMs)));
        // Slow or dead? Re-handshaking tells: a new instance means the old port is dead.
        if (conn) this.#probe(conn);
      }, timeoutMs);
      this.#connection(timeoutMs).then(
        (c) => {
          if (settled) return;
          conn = c;
          c.pending.add(entry);
          probe = setTimeout(() => this.#probe(c), this.#options.probeAfterMs);
          send(c.remote).then(
            (value) => {
              c.lastHeardAt = Date.now();
              settle(() => resolve(value));
            },
            (error: unknown) => {
              // The page's own postMessage refused the arguments: nothing reached the worker.
              if (isDataCloneError(error)) {
                settle(() => reject(notCloneable(method, "the Service Worker", error)));
                return;
              }
              c.lastHeardAt = Date.now();
              settle(() => reject(error));
            },
          );
        },
        (error: unknown) => settle(() => reject(error)),
      );
    });
  }

  /** Rejects pending calls and closes the port; later calls reject. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    if (this.#current) this.#retire(this.#current, closedError());
    this.#current = null;
  }

  #connection(timeoutMs: number): Promise<Connection> {
    const c = this.#current;
    if (c && !c.retired && Date.now() - c.lastHeardAt < this.#options.staleAfterMs) return Promise.resolve(c);
    return withDeadline(this.#reconnect(), timeoutMs, () =>
      deadlineError("the handshake", timeoutMs, "No Fiberline Service Worker answered the handshake"),
    );
  }

  /** One handshake at a time; swaps the current connection and retires the old one if its worker is gone. */
  #reconnect(): Promise<Connection> {
    if (this.#connecting) return this.#connecting;
    const epoch = this.#epoch;
    const attempt = this.#handshake().then((fresh) => {
      if (this.#closed || epoch !== this.#epoch) {
        // The page was closed, or another worker took over while this handshake ran.
        fresh.port.close();
        throw this.#closed ? closedError() : restartedError("the handshake");
      }
      const old = this.#current;
      const restarted = old !== null && old.worker.instanceId !== fresh.worker.instanceId;
      this.#current = fresh;
      if (old && restarted) this.#retire(old, null);
      else if (old && old.pending.size === 0) old.port.close();
      this.#options.onConnect?.(fresh.worker, restarted);
      return fresh;
    });
    this.#connecting = attempt;
    const clear = () => {
      if (this.#connecting === attempt) this.#connecting = null;
    };
    attempt.then(clear, clear);
    return attempt;
  }

  async #handshake(): Promise<Connection> {
    const { host, timeoutMs, prefix } = this.#options;
    const target = await host.controller(timeoutMs);
    const { port1, port2 } = new MessageChannel();
    let onReply!: (event: MessageEvent) => void;
    const reply = new Promise<HandshakeReply>((resolve) => {
      onReply = (event) => {
        const data = event.data as HandshakeReply | undefined;
        if (data?.type === "fiberline/ready" || data?.type === "fiberline/rejected") resolve(data);
      };
      port1.addEventListener("message", onReply);
    });
    port1.start();
    const message: ConnectMessage = { type: "fiberline/connect", protocol: PROTOCOL_VERSION, prefix };
    target.postMessage(message, [port2]);
    let answer: HandshakeReply;
    try {
      answer = await withDeadline(reply, timeoutMs, () =>
        deadlineError(
          "the handshake",
          timeoutMs,
          "No Fiberline Service Worker answered the handshake (is createServiceWorkerHost() called in the worker script?)",
        ),
      );
    } catch (error) {
      port1.close();
      throw error;
    } finally {
      port1.removeEventListener("message", onReply);
    }
    if (answer.type === "fiberline/rejected") {
      port1.close();
      throw deserializeError(answer.error);
    }
    return {
      port: port1,
      remote: wrap<ControlApi & PortStreamApi>(callEndpoint(port1)),
      worker: answer.worker,
      pending: new Set(),
      lastHeardAt: Date.now(),
      retired: false,
      probed: false,
    };
  }

  #probe(conn: Connection): void {
    if (conn.probed || conn.retired || conn !== this.#current || this.#closed) return;
    conn.probed = true;
    this.#reconnect().catch(() => {
      // The calls' own deadlines report it.
    });
  }

  #controllerChanged(): void {
    this.#epoch++;
    const old = this.#current;
    this.#current = null;
    if (old) this.#retire(old, null);
  }

  /** Rejects the connection's pending calls (with `error`, or `worker_restarted`) and closes it. */
  #retire(conn: Connection, error: Error | null): void {
    conn.retired = true;
    for (const call of [...conn.pending]) call.reject(error ?? restartedError(call.method));
    conn.pending.clear();
    conn.port.close();
  }

  #release(conn: Connection, entry: PendingCall): void {
    conn.pending.delete(entry);
    // A connection replaced by a same-instance handshake is closed once its last call answered.
    if (conn !== this.#current && !conn.retired && conn.pending.size === 0) conn.port.close();
  }
}

function deadlineError(what: string, timeoutMs: number, lead?: string): ConnectionError {
  const call = what === "the handshake" ? what : `${what}()`;
  return new ConnectionError(
    "deadline_exceeded",
    `${lead ?? `The Service Worker did not answer ${call}`} within ${timeoutMs} ms. It may be busy, stopped or restarting; the client re-connects on the next call. Retry, or raise timeoutMs in connect().`,
  );
}

function restartedError(what: string): ConnectionError {
  const call = what === "the handshake" ? what : `${what}()`;
  return new ConnectionError(
    "worker_restarted",
    `The Service Worker was restarted or replaced while ${call} was pending, so its answer is lost. The call may or may not have taken effect: retry it (start() with the same id or idempotencyKey joins instead of starting twice).`,
  );
}

function closedError(): ConnectionError {
  return new ConnectionError("client_closed", "This Fiberline client was closed; connect() again.");
}

/** `promise`, or a rejection with `error()` after `ms`. */
export function withDeadline<T>(promise: Promise<T>, ms: number, error: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(error()), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (reason: unknown) => {
        clearTimeout(timer);
        reject(reason);
      },
    );
  });
}

/**
 * `port` as comlink's endpoint, answering for the port a call it refused to post. comlink keeps a
 * resolver per call id until a message with that id comes back, and a call whose arguments the
 * structured clone refuses (`DataCloneError`, thrown by `postMessage`) was never sent, so nothing
 * would ever come back: every refused call left a resolver behind for the life of the port. The
 * refusal still reaches the caller (comlink's promise rejects with it first); a microtask later
 * comlink's own listener gets an answer under the call's id, which frees it (its resolver, called
 * on a settled promise, does nothing).
 */
export function callEndpoint(port: MessagePort): Endpoint {
  /** The listeners added through this endpoint: comlink's, never the port's other ones. */
  const listeners = new Set<EventListenerOrEventListenerObject>();
  return {
    postMessage(message: unknown, transfer?: Transferable[]) {
      try {
        port.postMessage(message, transfer ?? []);
      } catch (error) {
        const id = (message as { id?: unknown } | null)?.id;
        if (isDataCloneError(error) && typeof id === "string") {
          const answer = new MessageEvent("message", {
            data: {
              id,
              type: "HANDLER",
              name: "throw",
              value: { isError: true, value: { message: String(error) } },
            },
          });
          queueMicrotask(() => {
            for (const listener of listeners) {
              if (typeof listener === "function") listener(answer);
              else listener.handleEvent(answer);
            }
          });
        }
        throw error;
      }
    },
    addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: object) {
      if (type === "message") listeners.add(listener);
      port.addEventListener(type, listener, options);
    },
    removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: object) {
      if (type === "message") listeners.delete(listener);
      port.removeEventListener(type, listener, options);
    },
    start: () => port.start(),
  };
}
