/**
 * The control calls of `fiberline/client` inside a browser extension: JSON messages on a
 * `chrome.runtime` port to the extension host in the background worker (`fiberline/extension`),
 * each with a deadline. Chrome disconnects the port when the worker stops; the pending calls then
 * reject and the next call connects again, which starts the worker. Used by `FiberlineClient`
 * when `connect({ extension: true })`.
 */

import { ConnectionError, deserializeError } from "../core/errors";
import type { ChromePort, ChromeRuntimeConnector } from "../extension/chrome-types";
import {
  CONTROL_PORT,
  type ControlReply,
  type ControlRequest,
  EXTENSION_PROTOCOL_VERSION,
} from "../extension/protocol";
import type { RpcArgs, RpcMethod, RpcResult, WorkerInfo } from "../sw/protocol";
import type { ControlChannel } from "./http-channel";
import { notCloneable } from "./not-cloneable";
import { withDeadline } from "./rpc-channel";

/** Options of {@link ExtensionChannel}. */
export interface ExtensionChannelOptions {
  /** `chrome.runtime` of the page or content script. */
  runtime: ChromeRuntimeConnector;
  /** Deadline of every call and of the handshake, in ms. */
  timeoutMs: number;
  /** Called after every handshake, with whether it found a new worker instance. */
  onConnect?(worker: WorkerInfo, restarted: boolean): void;
}

interface Connection {
  port: ChromePort;
  worker: WorkerInfo;
  pending: Map<number, { method: string; settle(reply: ControlReply | Error): void }>;
}

/**
 * Control calls to the extension's background worker.
 *
 * Failure semantics: a call rejects with the host's error rebuilt (class and `code` kept), with
 * `ConnectionError` `deadline_exceeded` when no answer came in `timeoutMs`, and with
 * `worker_restarted` when the worker stopped before answering. After either the call may have
 * taken effect: retry it; `start` with the same `id` or `idempotencyKey` joins instead.
 */
export class ExtensionChannel implements ControlChannel {
  readonly #options: ExtensionChannelOptions;
  #current: Connection | null = null;
  #connecting: Promise<Connection> | null = null;
  #lastWorker: WorkerInfo | undefined;
  #nextCall = 1;
  #closed = false;

  constructor(options: ExtensionChannelOptions) {
    this.#options = options;
  }

  get worker(): WorkerInfo | undefined {
    return this.#current?.worker;
  }

  async open(): Promise<WorkerInfo> {
    return (await this.#connection()).worker;
  }

  call<M extends RpcMethod>(method: M, args: RpcArgs<M>): Promise<RpcResult<M>> {
    if (this.#closed) return Promise.reject(closedError());
    const { timeoutMs } = this.#options;
    const call = this.#nextCall++;
    let conn: Connection | undefined;
    const answer = this.#connection().then(
      (c) =>
        new Promise<RpcResult<M>>((resolve, reject) => {
          conn = c;
          c.pending.set(call, {
            method,
            settle: (reply) => {
              c.pending.delete(call);
              if (reply instanceof Error) reject(reply);
              else if (reply.type === "result") resolve(reply.value as RpcResult<M>);
              else if (reply.type === "failed") reject(deserializeError(reply.error));
            },
          });
          const request: ControlRequest = { type: "call", call, method, args: [...args] };
          try {
            c.port.postMessage(request);
          } catch (cause) {
            c.pending.delete(call);
            // Extension messaging speaks JSON: a bigint or a cycle cannot go (anything else thrown
            // here is the port's own failure).
            reject(
              jsonRefuses(request) ? notCloneable(method, "the extension's background worker", cause) : cause,
            );
          }
        }),
    );
    return withDeadline(answer, timeoutMs, () => {
      conn?.pending.delete(call);
      return new ConnectionError(
        "deadline_exceeded",
        `The extension's background worker did not answer ${method}() within ${timeoutMs} ms. It may be busy or restarting; the call may or may not have taken effect. Retry, or raise timeoutMs in connect().`,
      );
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const conn = this.#current;
    this.#current = null;
    if (conn) {
      this.#fail(conn, closedError());
      conn.port.disconnect();
    }
  }

  #connection(): Promise<Connection> {
    if (this.#current) return Promise.resolve(this.#current);
    if (this.#closed) return Promise.reject(closedError());
    this.#connecting ??= withDeadline(this.#handshake(), this.#options.timeoutMs, () => {
      return new ConnectionError(
        "deadline_exceeded",
        `No Fiberline extension host answered within ${this.#options.timeoutMs} ms: is createExtensionHost() called at the top level of the extension's background worker?`,
      );
    }).finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }

  #handshake(): Promise<Connection> {
    return new Promise<Connection>((resolve, reject) => {
      let port: ChromePort;
      try {
        // Connecting is an extension event: it starts a stopped background worker.
        port = this.#options.runtime.connect({ name: CONTROL_PORT });
      } catch (error) {
        reject(
          new ConnectionError(
            "worker_restarted",
            `Could not connect to the extension's background worker: ${error instanceof Error ? error.message : String(error)}`,
            { cause: error },
          ),
        );
        return;
      }
      let conn: Connection | undefined;
      port.onMessage.addListener((message) => {
        const reply = message as ControlReply;
        if (!conn) {
          if (reply?.type === "rejected") {
            port.disconnect();
            reject(deserializeError(reply.error));
          } else if (reply?.type === "ready") {
            conn = { port, worker: reply.worker, pending: new Map() };
            if (this.#closed) {
              port.disconnect();
              reject(closedError());
              return;
            }
            const restarted =
              this.#lastWorker !== undefined && this.#lastWorker.instanceId !== reply.worker.instanceId;
            this.#lastWorker = reply.worker;
            this.#current = conn;
            this.#options.onConnect?.(reply.worker, restarted);
            resolve(conn);
          }
          return;
        }
        if (reply?.type === "result" || reply?.type === "failed") conn.pending.get(reply.call)?.settle(reply);
      });
      port.onDisconnect.addListener(() => {
        if (!conn) {
          reject(
            new ConnectionError(
              "worker_restarted",
              "The extension's background worker closed the connection during the handshake. Retry.",
            ),
          );
          return;
        }
        if (this.#current === conn) this.#current = null;
        this.#fail(conn, null);
      });
      const hello: ControlRequest = { type: "hello", protocol: EXTENSION_PROTOCOL_VERSION };
      port.postMessage(hello);
    });
  }

  /** Rejects the connection's pending calls (with `error`, or `worker_restarted`). */
  #fail(conn: Connection, error: Error | null): void {
    for (const pending of [...conn.pending.values()]) {
      pending.settle(
        error ??
          new ConnectionError(
            "worker_restarted",
            `The extension's background worker stopped while ${pending.method}() was pending, so its answer is lost. The call may or may not have taken effect: retry it (start() with the same id or idempotencyKey joins instead of starting twice).`,
          ),
      );
    }
    conn.pending.clear();
  }
}

function closedError(): ConnectionError {
  return new ConnectionError("client_closed", "This Fiberline client was closed; connect() again.");
}

/** Whether `JSON.stringify` throws for `value` (a bigint, a cycle). */
function jsonRefuses(value: unknown): boolean {
  try {
    JSON.stringify(value);
    return false;
  } catch {
    return true;
  }
}
