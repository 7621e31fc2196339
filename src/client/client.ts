/**
 * `connect()` and `FiberlineClient`: the page's handle on the fibers running in its Service
 * Worker. Control calls go over the RPC channel, streams over `fetch`; heartbeats keep the worker
 * alive while the page has fibers running or streams open. With `baseUrl`, the same client talks
 * to a host reached over HTTP (the edge host) instead: control calls and streams both by `fetch`.
 * With `extension`, it talks to the extension host in a browser extension's background worker
 * (`fiberline/extension`) over `chrome.runtime` ports. With `fallback`, where no Service Worker can
 * run, one tab of the origin runs the fibers and the others reach it (`src/tabs/`).
 */

import type { FiberDefinition, InputOf, OutputOf } from "../core/define";
import {
  CancelledError,
  ConnectionError,
  deserializeError,
  ServiceWorkerUnavailableError,
} from "../core/errors";
import type { FiberEvent, FiberRecord, FiberStatus } from "../core/records";
import { isTerminal } from "../core/records";
import type { FiberInspection, StartOptions, StartResult } from "../core/runtime";
import { eitherSignal } from "../core/signals";
import type { FiberQuery } from "../core/store";
import type { ChromeRuntimeConnector } from "../extension/chrome-types";
import {
  DEFAULT_PREFIX,
  type HeartbeatInfo,
  type HeartbeatMessage,
  type StorageHealth,
  type WorkerInfo,
} from "../sw/protocol";
import { type TabFallbackOptions, TabHost } from "../tabs/tab-host";
import { type EventReaderOptions, readFiberEvents } from "./event-reader";
import { ExtensionChannel } from "./extension-channel";
import { readExtensionStream } from "./extension-stream";
import { type ControlChannel, HttpChannel } from "./http-channel";
import { readPortStream } from "./port-stream";
import { RpcChannel } from "./rpc-channel";
import { requestPersistentStorage } from "./storage-health";
import { findRegistration, serviceWorkerContainer, waitForController } from "./worker-registration";

/** Fiber definitions by name, to type `start()`: `connect<{ research: typeof research }>()`. */
export type FiberMap = Record<string, FiberDefinition>;

/** Options of `connect`. */
export interface ConnectOptions {
  /** Route prefix of the host (default "/__fiberline"); must match `createServiceWorkerHost`. */
  prefix?: string;
  /** Deadline of connecting and of every call, in ms (default 10 s). */
  timeoutMs?: number;
  /** Register this worker script; without it, the app's own registration is used. */
  scriptUrl?: string | URL;
  /** Options of `navigator.serviceWorker.register`, e.g. `{ type: "module" }`. */
  registerOptions?: RegistrationOptions;
  /** How often the page tells a busy worker it is still wanted (default 10 s; Chromium idles workers out after 30 s). */
  heartbeatMs?: number;
  /** A call unanswered this long makes the client check for a restarted worker (default min(1 s, timeoutMs / 2)). */
  probeAfterMs?: number;
  /** A channel silent this long re-handshakes before the next call (default 20 s). */
  staleAfterMs?: number;
  /** Reconnect policy of `events()`. */
  reader?: Pick<EventReaderOptions, "initialDelayMs" | "maxDelayMs" | "maxAttempts" | "onReconnect">;
  /** Called after every handshake with the worker instance that answered. */
  onConnect?(worker: WorkerInfo, restarted: boolean): void;
  /** The container to use (default `navigator.serviceWorker`). */
  container?: ServiceWorkerContainer;
  /**
   * Talk to a host reached over HTTP at this origin instead of the Service Worker, e.g. the edge
   * host (`fiberline/edge`) at "https://fibers.example.workers.dev": control calls and streams go
   * to `{baseUrl}{prefix}/...` by `fetch`. The Service Worker options and heartbeats do not apply.
   */
  baseUrl?: string | URL;
  /** The `fetch` used with `baseUrl` (default the global one). */
  fetch?: typeof fetch;
  /**
   * Talk to the extension host (`createExtensionHost` of `fiberline/extension`) in this browser
   * extension's background worker, from an extension page (side panel, popup, options) or a
   * content script: `true` uses the global `chrome.runtime`, or pass the one to use. Control calls
   * and streams go over `chrome.runtime.connect` ports, values as JSON; the Service Worker and
   * `baseUrl` options do not apply, and no heartbeats are needed (the host keeps itself alive).
   */
  extension?: boolean | ChromeRuntimeConnector;
  /**
   * Where no Service Worker can run (`navigator.serviceWorker` missing: an insecure origin, a
   * private window or a policy that disables them; or registering `scriptUrl` refused), run the
   * fibers in one tab of the origin instead, elected by a Web Lock; the other tabs reach it over a
   * BroadcastChannel with this same client API. `runtime` creates the runtime in the tab that
   * leads. Fibers then advance only while some tab of the origin is open (see docs/fallback.md).
   * Without it, `connect()` rejects with `ServiceWorkerUnavailableError` there.
   */
  fallback?: TabFallbackOptions;
}

/**
 * Registers or finds the Service Worker, waits until it controls the page and opens the control
 * channel.
 *
 * Failure semantics: rejects with `ServiceWorkerUnavailableError` (`service_worker_unavailable`)
 * when Service Workers cannot run here and no `fallback` was given, with a message saying why and
 * what to do (`fallback_unavailable` when the fallback cannot run either: no Web Locks outside
 * secure contexts), and with `ConnectionError` when the worker (or the leader tab) does not
 * answer in `timeoutMs`.
 *
 * @example
 * const fl = await connect<{ research: typeof research }>({ scriptUrl: "/sw.js", registerOptions: { type: "module" } });
 * const { id } = await fl.start("research", { topic: "durable execution" });
 * for await (const ev of fl.events(id)) render(ev);
 */
export async function connect<F extends FiberMap = FiberMap>(
  options: ConnectOptions = {},
): Promise<FiberlineClient<F>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (options.baseUrl !== undefined)
    return new FiberlineClient<F>(undefined, undefined, { ...options, timeoutMs });
  if (options.extension)
    return await opened(new FiberlineClient<F>(undefined, undefined, { ...options, timeoutMs }));
  const inTabs = () =>
    opened(new FiberlineClient<F>(undefined, undefined, { ...options, timeoutMs }, "tabs"));
  const { fallback } = options;
  if (fallback?.when === "always") return await inTabs();
  let container: ServiceWorkerContainer;
  let registration: ServiceWorkerRegistration;
  try {
    container = options.container ?? serviceWorkerContainer();
  } catch (error) {
    if (fallback && error instanceof ServiceWorkerUnavailableError) return await inTabs();
    throw error;
  }
  try {
    registration = await findRegistration(container, options.scriptUrl, options.registerOptions, timeoutMs);
  } catch (error) {
    // Only a refused registration: a worker that is merely slow may still start, and two hosts
    // would then run the same fibers.
    const refused = options.scriptUrl !== undefined && error instanceof ServiceWorkerUnavailableError;
    if (fallback && refused) return await inTabs();
    throw error;
  }
  await waitForController(container, timeoutMs);
  return await opened(new FiberlineClient<F>(container, registration, { ...options, timeoutMs }));
}

/** `client` once its channel is open; closed again when opening fails. */
async function opened<F extends FiberMap>(client: FiberlineClient<F>): Promise<FiberlineClient<F>> {
  try {
    await client.ready();
  } catch (error) {
    client.close();
    throw error;
  }
  return client;
}

/** The page's handle on its Service Worker's fibers. Create it with `connect()`. */
export class FiberlineClient<F extends FiberMap = FiberMap> {
  readonly prefix: string;
  /** The Service Worker's registration; `undefined` when connected by `baseUrl`. */
  readonly registration: ServiceWorkerRegistration | undefined;
  readonly #container: ServiceWorkerContainer | undefined;
  readonly #channel: ControlChannel;
  readonly #readerOptions: ConnectOptions["reader"];
  readonly #heartbeat: ReturnType<typeof setInterval> | undefined;
  /** Where streams are read: the prefix, behind `baseUrl` when there is one. */
  readonly #streamRoot: string;
  readonly #fetch: typeof fetch | undefined;
  /** `chrome.runtime` when connected to an extension host. */
  readonly #extension: ChromeRuntimeConnector | undefined;
  /** This tab's part in the tab host, when connected by `fallback`. */
  readonly #tabs: TabHost | undefined;
  #openReaders = 0;
  #workerActive = 0;
  #closed = false;
  /** Aborted by `close()`: ends the readers still open. */
  readonly #closing = new AbortController();

  /** @internal Use `connect()`. */
  constructor(
    container: ServiceWorkerContainer | undefined,
    registration: ServiceWorkerRegistration | undefined,
    options: ConnectOptions,
    host?: "tabs",
  ) {
    const timeoutMs = options.timeoutMs ?? 10_000;
    this.prefix = (options.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, "");
    this.registration = registration;
    this.#container = container;
    this.#readerOptions = options.reader;
    this.#fetch = options.fetch;
    const { baseUrl } = options;
    this.#streamRoot =
      baseUrl === undefined ? this.prefix : `${String(baseUrl).replace(/\/+$/, "")}${this.prefix}`;
    this.#extension = options.extension ? extensionRuntime(options.extension) : undefined;
    this.#tabs =
      host === "tabs" && options.fallback
        ? new TabHost({
            ...options.fallback,
            timeoutMs,
            ...(options.onConnect ? { onConnect: options.onConnect } : {}),
          })
        : undefined;
    if (this.#tabs) {
      this.#channel = this.#tabs;
      this.#heartbeat = undefined;
      return;
    }
    if (this.#extension) {
      this.#channel = new ExtensionChannel({
        runtime: this.#extension,
        timeoutMs,
        ...(options.onConnect ? { onConnect: options.onConnect } : {}),
      });
      this.#heartbeat = undefined;
      return;
    }
    if (container === undefined) {
      this.#channel = new HttpChannel({
        baseUrl: baseUrl ?? "",
        prefix: this.prefix,
        timeoutMs,
        ...(options.fetch ? { fetch: options.fetch } : {}),
      });
      this.#heartbeat = undefined;
      return;
    }
    this.#channel = new RpcChannel({
      prefix: this.prefix,
      timeoutMs,
      probeAfterMs: options.probeAfterMs ?? Math.min(1_000, timeoutMs / 2),
      staleAfterMs: options.staleAfterMs ?? 20_000,
      ...(options.onConnect ? { onConnect: options.onConnect } : {}),
      host: {
        controller: (ms) => waitForController(container, ms),
        onControllerChange: (listener) => {
          container.addEventListener("controllerchange", listener);
          return () => container.removeEventListener("controllerchange", listener);
        },
      },
    });
    this.#heartbeat = setInterval(() => this.#beat(), options.heartbeatMs ?? 10_000);
  }

  /** The worker instance currently connected, if any (with `fallback`, the leader tab's runtime). */
  get worker(): WorkerInfo | undefined {
    return this.#channel.worker;
  }

  /** Whether this page runs the fibers itself: the leader tab of the `fallback` host. */
  get leading(): boolean {
    return this.#tabs?.leading ?? false;
  }

  /** @internal Opens the channel. */
  async ready(): Promise<WorkerInfo> {
    return await this.#channel.open();
  }

  /**
   * Starts a fiber by name, or joins the one with the same `id` or `idempotencyKey`.
   *
   * Failure semantics: rejects with the runtime's error (`unknown_fiber`, `invalid_id`,
   * `not_cloneable`...) keeping its class, or with `ConnectionError`; after a `ConnectionError`
   * the fiber may exist: retry with the same `id` or `idempotencyKey` to join it.
   */
  async start<N extends keyof F & string>(
    name: N,
    input: InputOf<F[N]>,
    options?: StartOptions,
  ): Promise<StartResult<OutputOf<F[N]>>> {
    this.#keepWorkerAwake();
    const result = await this.#channel.call(
      "start",
      options === undefined ? [name, input] : [name, input, options],
    );
    this.#workerActive = Math.max(this.#workerActive, 1);
    // The first durable start asks the browser to keep the origin's storage (a page-only API).
    if ((this.registration || this.#tabs) && (result as StartResult).created) void requestPersistentStorage();
    // Control calls arrive on a MessagePort, which extends no event: this message event, sent now
    // that the fiber runs, is held open by the host until its work is done (capped), so closing
    // the tab right after a start does not leave the run to Chromium's 30 s idle timeout.
    this.#keepWorkerAwake();
    return result as StartResult<OutputOf<F[N]>>;
  }

  /** The fiber's record, or `undefined`. */
  get(id: string): Promise<FiberRecord | undefined> {
    return this.#channel.call("get", [id]);
  }

  /** Fibers matching `query`, oldest first. */
  list(query?: FiberQuery): Promise<FiberRecord[]> {
    return this.#channel.call("list", query === undefined ? [] : [query]);
  }

  /** Everything durable about one fiber; rejects with `FiberNotFoundError` for an unknown id. */
  inspect(id: string): Promise<FiberInspection> {
    return this.#channel.call("inspect", [id]);
  }

  /** Sends an event to a fiber (buffered until it waits for it). */
  async sendEvent(id: string, name: string, payload?: unknown): Promise<void> {
    this.#keepWorkerAwake();
    await this.#channel.call("sendEvent", [id, name, payload]);
    // The event may have woken the fiber: extend an event over the run it resumed (see start).
    this.#keepWorkerAwake();
  }

  /**
   * Cancels a fiber; resolves with its final status (`cancelled`, or how it had ended). With
   * continuity: a replicated fiber this browser runs is answered once the edge holds its end
   * (offline, the call's deadline may pass first: the fiber is cancelled here, and the answer
   * comes once the link is back, so cancel again to hear it); one another device runs is
   * cancelled by that device, and if it has not done so within the edge's wait (12 s) this
   * resolves with the fiber's status at that moment while the cancel, held by the edge, goes on.
   */
  cancel(id: string, reason?: string): Promise<FiberStatus> {
    this.#keepWorkerAwake();
    return this.#channel.call("cancel", reason === undefined ? [id] : [id, reason]);
  }

  /** Asks the worker how it is: its instance, and how many fibers it runs. */
  async heartbeat(): Promise<HeartbeatInfo> {
    const info = await this.#channel.call("heartbeat", []);
    this.#workerActive = info.active;
    return info;
  }

  /**
   * Retries now the fibers the worker paused for lack of space (`paused` in the storage health of
   * `watchStorageHealth`), instead of at their next backoff; a "Try again" button calls it.
   * Resolves with the storage health after the retry, which every page also hears: still
   * `quota_exceeded` with the same paused fibers while the origin is full (nothing is lost), `ok`
   * once they could write again. `undefined` when the worker's store is not wrapped by
   * `watchStorage` (and always with `baseUrl`: the edge host pauses nothing).
   *
   * @example
   * const health = await fl.retryPaused();
   * if (health?.state === "quota_exceeded") say("Still no room: delete something first.");
   */
  async retryPaused(): Promise<StorageHealth | undefined> {
    this.#keepWorkerAwake();
    const health = await this.#channel.call("retryPaused", []);
    // The fibers it resumed run now: extend an event over them (see start).
    this.#keepWorkerAwake();
    return health;
  }

  /**
   * The fiber's stream from `after`: every chunk exactly once, in order, ending after `fiber.end`;
   * reconnects by itself when the worker stops or restarts. A page that resumes after a reload
   * passes the `createdAt` it kept (`onCreated`) as `created`, so a fiber started again under
   * the same id meanwhile is refused, not read on from `after`. See `readFiberEvents`.
   */
  async *events(
    id: string,
    options: Pick<EventReaderOptions, "after" | "signal" | "created" | "onCreated"> = {},
  ): AsyncGenerator<FiberEvent> {
    if (this.#closed) throw closedClientError();
    // A reader ends with its caller's signal or with the client, whichever comes first.
    const { signal, dispose } = eitherSignal(options.signal, this.#closing.signal);
    this.#openReaders++;
    this.#keepWorkerAwake();
    try {
      const container = this.#container;
      const channel = this.#channel;
      const extension = this.#extension;
      const tabs = this.#tabs;
      yield* readFiberEvents(id, {
        ...this.#readerOptions,
        prefix: this.#streamRoot,
        ...(this.#fetch ? { fetch: this.#fetch } : {}),
        ...(options.after === undefined ? {} : { after: options.after }),
        ...(options.created === undefined ? {} : { created: options.created }),
        ...(options.onCreated ? { onCreated: options.onCreated } : {}),
        signal,
        ...(container
          ? {
              waitForHost: () =>
                waitForController(container, 2_000).then(
                  () => {},
                  () => {},
                ),
            }
          : {}),
        ...(extension
          ? {
              transport: (fiberId: string, after: number, signal: AbortSignal) =>
                readExtensionStream(extension, fiberId, after, signal),
            }
          : {}),
        ...(tabs
          ? {
              transport: (fiberId: string, after: number, signal: AbortSignal) =>
                tabs.stream(fiberId, after, signal),
            }
          : {}),
        ...(channel instanceof RpcChannel
          ? {
              // The page's fetches do not reach the worker: stream over the control channel.
              fallback: (fiberId: string, after: number, signal: AbortSignal, created?: number) =>
                readPortStream(
                  (port, window) => channel.openStream(fiberId, after, port, created, window),
                  signal,
                ),
            }
          : {}),
      });
    } finally {
      dispose();
      this.#openReaders--;
    }
  }

  /**
   * Resolves with the fiber's result once it completes; rejects with its error (class and `code`
   * kept). Follows the stream, so it survives worker restarts.
   */
  async result<Out = unknown>(
    fiber: StartResult<Out> | string,
    options: { signal?: AbortSignal } = {},
  ): Promise<Out> {
    const id = typeof fiber === "string" ? fiber : fiber.id;
    const record = await this.get(id);
    if (record && isTerminal(record.status))
      return outcome(record.status, record.result, record.error) as Out;
    const after = record ? Math.max(0, record.streamHead - 1) : 0;
    for await (const ev of this.events(id, { after, ...options })) {
      if (ev.type !== "fiber.end") continue;
      const end = ev.data as {
        status: FiberStatus;
        result?: unknown;
        error?: Parameters<typeof deserializeError>[0];
      };
      // The stream's copy went through JSON (a Date became a string, a bigint a string): the
      // result as stored comes from the record, as when the fiber had ended before this call.
      if (end.status === "completed") {
        const ended = await this.get(id).catch(() => undefined);
        if (ended?.status === "completed") return ended.result as Out;
      }
      return outcome(end.status, end.result, end.error) as Out;
    }
    throw new CancelledError(`The stream of fiber ${id} ended without fiber.end.`);
  }

  /**
   * Stops heartbeats and closes the channel; pending calls reject, and open `events()` readers
   * throw `ConnectionError` `client_closed`. The fibers go on in the host.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(closedClientError());
    clearInterval(this.#heartbeat);
    this.#channel.close();
  }

  /** A message to the worker is an event: it starts a stopped worker and extends a running one. */
  #keepWorkerAwake(): void {
    const message: HeartbeatMessage = { type: "fiberline/heartbeat" };
    this.#container?.controller?.postMessage(message);
  }

  #beat(): void {
    if (this.#closed || (this.#openReaders === 0 && this.#workerActive === 0)) return;
    this.#keepWorkerAwake();
    this.heartbeat().catch(() => {
      // A restart or a busy worker: the channel re-handshakes on the next call.
    });
  }
}

function closedClientError(): ConnectionError {
  return new ConnectionError("client_closed", "This Fiberline client was closed; connect() again.");
}

/** The `chrome.runtime` to connect with: the one passed, or the global one. */
function extensionRuntime(option: true | ChromeRuntimeConnector): ChromeRuntimeConnector {
  if (option !== true) return option;
  const runtime = (globalThis as { chrome?: { runtime?: Partial<ChromeRuntimeConnector> } }).chrome?.runtime;
  if (typeof runtime?.connect !== "function") {
    throw new ConnectionError(
      "extension_unavailable",
      "connect({ extension: true }) found no chrome.runtime.connect: call it from a page or content script of the browser extension whose background worker runs createExtensionHost(), or pass { extension: chrome.runtime }.",
    );
  }
  return runtime as ChromeRuntimeConnector;
}

function outcome(
  status: FiberStatus,
  result: unknown,
  error: Parameters<typeof deserializeError>[0] | undefined,
): unknown {
  if (status === "completed") return result;
  throw error ? deserializeError(error) : new CancelledError();
}
