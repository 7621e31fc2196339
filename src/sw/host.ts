/**
 * `createServiceWorkerHost`: runs a Fiberline runtime inside a Service Worker. Wires `install`,
 * `activate`, `fetch` (the event-stream route) and `message` (the comlink control channel), runs
 * `runtime.recover()` on every worker start and keeps the worker alive while fibers run.
 *
 * What wakes a stopped worker (and so resumes its fibers): any fetch from a page it controls
 * (navigations, assets, a reader reconnecting to the event stream), a `postMessage` to the worker
 * (the client's handshake and heartbeats), and push / sync / periodicsync events the app
 * registers. What does not: a message on an already-open MessageChannel port (it goes nowhere once
 * the worker stopped, hence the client's re-handshake) and timers (a sleeping fiber due while the
 * worker is stopped fires at the next start).
 */

import type { BrowserContinuity } from "../continuity/browser-home";
import { ConnectionError, serializeError } from "../core/errors";
import type { RecoverySummary, Runtime } from "../core/runtime";
import { assertArgument, assertCancelReason, assertEventName, assertValidId } from "../core/validate";
import { CONTROL_METHODS, createControlApi } from "./control-api";
import { serveControlPort } from "./control-port";
import { errorResponse, handleEventsRequest, ownsRequest } from "./event-route";
import { type ExtendableEventLike, WorkerLifetime } from "./lifetime";
import { openPortStream } from "./port-stream";
import {
  type ClientMessage,
  type ControlApi,
  DEFAULT_PREFIX,
  type HandshakeReply,
  isClientMessage,
  type PortStreamApi,
  PROTOCOL_VERSION,
  type StorageHealth,
  type WorkerInfo,
} from "./protocol";
import type { WatchedStore } from "./storage-watch";

/** The part of a `FetchEvent` the host uses. */
export interface FetchEventLike extends ExtendableEventLike {
  readonly request: Request;
  respondWith(response: Response | Promise<Response>): void;
}

/** The part of an `ExtendableMessageEvent` the host uses. */
export interface MessageEventLike extends ExtendableEventLike {
  readonly data: unknown;
  readonly ports: readonly MessagePort[];
}

/** The part of `ServiceWorkerGlobalScope` the host uses (so tests can pass a fake). */
export interface ServiceWorkerScopeLike {
  addEventListener(type: string, listener: (event: never) => void): void;
  removeEventListener(type: string, listener: (event: never) => void): void;
  skipWaiting(): Promise<void>;
  readonly clients: { claim(): Promise<void> };
  readonly location: { readonly href: string; readonly origin: string };
}

/** Options of `createServiceWorkerHost`. */
export interface ServiceWorkerHostOptions {
  /** The runtime to host; create it at the top level of the worker script. */
  runtime: Runtime;
  /** Route prefix of the event stream (default "/__fiberline"); the client must use the same. */
  prefix?: string;
  /** The worker's global scope (default `self`). */
  scope?: ServiceWorkerScopeLike;
  /**
   * Activate a new version of the worker as soon as it is installed instead of waiting for every
   * tab to close (default false). Safe with running fibers: Web Locks and fencing hand each fiber
   * over without running it twice.
   */
  skipWaiting?: boolean;
  /** Take control of open pages on activation, so the first page load can use the host (default true). */
  claimClients?: boolean;
  /** Longest one event is held open for running fibers (default 4 min, under Chromium's 5-min limit). */
  maxExtensionMs?: number;
  /** Where unexpected failures are reported (default `console.error`). */
  onError?(error: unknown, doing: string): void;
  /**
   * Continuity (issue #18): the `continuity` that `createReplicatedRuntime` returned with
   * `runtime`. The host starts it before `recover()` at every worker start (shipping, the `online`
   * event, deciding where each fiber runs), keeps the worker alive while it ships, sends the
   * pages' `sendEvent` and `cancel` of a fiber the edge runs to the edge, and makes every call
   * and stream that names a fiber wait until its local copy is decided (restored from the edge
   * when only the edge has it, brought up to the edge's copy when it is away).
   */
  continuity?: BrowserContinuity;
}

/** A running host. */
export interface ServiceWorkerHost {
  readonly runtime: Runtime;
  readonly prefix: string;
  /** This worker instance, as clients see it in the handshake and `heartbeat()`. */
  readonly info: WorkerInfo;
  /** Settles after the start-up `recover()` (undefined until the first event started it). */
  readonly recovery: Promise<RecoverySummary | undefined> | undefined;
  /** Fiber runs and keep-alives currently holding the worker open. */
  readonly pendingWork: number;
  /** Removes the host's listeners (for tests and hot reload). */
  dispose(): void;
}

/**
 * Hosts `runtime` in this Service Worker. Call it synchronously at the top level of the worker
 * script, before your own `fetch` listener, so its listeners are registered at evaluation.
 *
 * Failure semantics: `runtime.recover()` runs once per worker start, inside `waitUntil` of the
 * first event of that start; a failure is reported to `onError` and retried at the next start.
 * A fiber the browser stops mid-run resumes at the next start (see the module header for what
 * wakes the worker). A new worker version never runs a fiber the old one still runs: the Web Lock
 * of the fiber is held by the old one, and the new one picks the fiber up when it is released.
 *
 * @example
 * // sw.ts (built as an ES module worker, registered with { type: "module" })
 * import { createRuntime, IdbStore } from "fiberline";
 * import { createServiceWorkerHost } from "fiberline/sw";
 * import { research } from "./fibers";
 *
 * const runtime = createRuntime({ store: new IdbStore(), fibers: [research] });
 * createServiceWorkerHost({ runtime, skipWaiting: true });
 */
export function createServiceWorkerHost(options: ServiceWorkerHostOptions): ServiceWorkerHost {
  return new Host(options);
}

class Host implements ServiceWorkerHost {
  readonly runtime: Runtime;
  readonly prefix: string;
  readonly info: WorkerInfo;
  readonly #scope: ServiceWorkerScopeLike;
  readonly #lifetime: WorkerLifetime;
  readonly #skipWaiting: boolean;
  readonly #claimClients: boolean;
  readonly #report: (error: unknown, doing: string) => void;
  readonly #api: ControlApi & PortStreamApi;
  readonly #listeners: Array<[string, (event: never) => void]>;
  readonly #stopKeepAlive: () => void;
  readonly #continuity: BrowserContinuity | undefined;
  #recovery: Promise<RecoverySummary | undefined> | undefined;
  #recovered = false;

  constructor(options: ServiceWorkerHostOptions) {
    this.runtime = options.runtime;
    this.prefix = (options.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, "");
    this.#scope = options.scope ?? (globalThis as unknown as ServiceWorkerScopeLike);
    this.#lifetime = new WorkerLifetime(
      options.maxExtensionMs === undefined ? {} : { maxExtensionMs: options.maxExtensionMs },
    );
    this.#skipWaiting = options.skipWaiting ?? false;
    this.#claimClients = options.claimClients ?? true;
    this.#report =
      options.onError ?? ((error, doing) => console.error(`[fiberline/sw] ${doing} failed:`, error));
    this.info = {
      instanceId: randomId(),
      scriptUrl: this.#scope.location.href,
      startedAt: Date.now(),
      protocol: PROTOCOL_VERSION,
      prefix: this.prefix,
    };
    this.#continuity = options.continuity;
    this.#api = this.#controlApi();
    const stopRuntime = this.runtime.onKeepAlive((work) => this.#lifetime.track(work));
    const stopContinuity = this.#continuity?.onKeepAlive((work) => this.#lifetime.track(work));
    this.#stopKeepAlive = () => {
      stopRuntime();
      stopContinuity?.();
    };
    this.#listeners = [
      ["install", (event: ExtendableEventLike) => this.#onInstall(event)],
      ["activate", (event: ExtendableEventLike) => this.#onActivate(event)],
      ["fetch", (event: FetchEventLike) => this.#onFetch(event)],
      ["message", (event: MessageEventLike) => this.#onMessage(event)],
      ["sync", (event: ExtendableEventLike) => this.#begin(event)],
      ["periodicsync", (event: ExtendableEventLike) => this.#begin(event)],
      ["push", (event: ExtendableEventLike) => this.#begin(event)],
    ] as Array<[string, (event: never) => void]>;
    for (const [type, listener] of this.#listeners) this.#scope.addEventListener(type, listener);
  }

  get recovery(): Promise<RecoverySummary | undefined> | undefined {
    return this.#recovery;
  }

  get pendingWork(): number {
    return this.#lifetime.pending;
  }

  dispose(): void {
    for (const [type, listener] of this.#listeners) this.#scope.removeEventListener(type, listener);
    this.#stopKeepAlive();
    this.#continuity?.stop();
  }

  /** Every event: the first one of this worker start runs recovery; each is held open while fibers run. */
  #begin(event: ExtendableEventLike): void {
    if (!this.#recovery) {
      // Continuity first: no runner may pick up a replicated fiber before the edge was asked.
      const continuity = this.#continuity;
      const recovered = continuity
        ? continuity
            .start(this.#scope)
            .catch((error: unknown) => this.#report(error, "starting continuity at worker start"))
            .then(() => this.runtime.recover())
        : this.runtime.recover();
      this.#recovery = recovered.then(
        (summary) => {
          this.#recovered = true;
          return summary;
        },
        (error: unknown) => {
          this.#report(error, "recovering fibers at worker start");
          this.#recovery = undefined; // retried by the next event
          return undefined;
        },
      );
    }
    if (this.#recovered) this.#lifetime.extend(event);
    else this.#lifetime.extend(event, this.#recovery);
  }

  #onInstall(event: ExtendableEventLike): void {
    this.#begin(event);
    if (this.#skipWaiting) event.waitUntil(this.#scope.skipWaiting());
  }

  #onActivate(event: ExtendableEventLike): void {
    this.#begin(event);
    // Fibers an older version created after this one loaded the outbox: shipped from here now.
    const continuity = this.#continuity;
    if (continuity)
      event.waitUntil(
        continuity
          .activated()
          .catch((error: unknown) => this.#report(error, "taking over the outbox at activation")),
      );
    if (this.#claimClients) event.waitUntil(this.#scope.clients.claim());
  }

  #onFetch(event: FetchEventLike): void {
    this.#begin(event);
    const { request } = event;
    const origin = this.#scope.location.origin;
    if (!ownsRequest(new URL(request.url), { prefix: this.prefix, origin })) return; // the app's request
    // The open response keeps Chromium's worker alive by itself (and counts as in-flight work that
    // defers a new version's activation until the stream ends). The stream is deliberately not
    // passed to waitUntil: measured in Chromium 156, a fetch event extended by its stream made the
    // page's later fetches bypass the next worker version after the old one was stopped.
    const response = this.#settleStream(request)
      .then(() => handleEventsRequest(request, { runtime: this.runtime, prefix: this.prefix, origin }))
      .then(
        (res) => res ?? fetch(request),
        (error: unknown) => {
          this.#report(error, `answering ${request.url}`);
          return errorResponse(500, "store_error", serializeError(error).message);
        },
      );
    event.respondWith(response);
  }

  /**
   * With continuity, a stream of a fiber waits until its local copy is decided (restored from the
   * edge, or brought up to it when the edge runs the fiber); a failure to ask the edge is
   * reported and the stream served from what is here.
   */
  async #settleStream(request: Request): Promise<void> {
    const continuity = this.#continuity;
    if (continuity === undefined) return;
    const match = /^\/fibers\/([^/]+)\/events$/.exec(new URL(request.url).pathname.slice(this.prefix.length));
    if (!match) return;
    let id: string;
    try {
      id = decodeURIComponent(match[1] ?? "");
    } catch {
      return; // the route answers 400
    }
    await continuity
      .settle(id)
      .catch((error: unknown) => this.#report(error, `deciding where fiber ${id} runs`));
  }

  #onMessage(event: MessageEventLike): void {
    const message = event.data;
    if (!isClientMessage(message)) return; // the app's own message
    this.#begin(event);
    switch (message.type) {
      case "fiberline/connect":
        this.#connect(message, event.ports[0]);
        break;
      case "fiberline/claim":
        event.waitUntil(this.#scope.clients.claim());
        break;
      case "fiberline/heartbeat":
        // Being an event is the point: #begin() held the worker open for the running fibers.
        break;
    }
  }

  #connect(
    message: Extract<ClientMessage, { type: "fiberline/connect" }>,
    port: MessagePort | undefined,
  ): void {
    if (!port) return; // nowhere to answer
    if (message.protocol !== PROTOCOL_VERSION || message.prefix !== this.prefix) {
      const error = new ConnectionError(
        "protocol_error",
        `The page speaks Fiberline protocol ${message.protocol} with prefix "${message.prefix}" but this Service Worker speaks protocol ${PROTOCOL_VERSION} with prefix "${this.prefix}". Deploy the page and the worker from the same build, and pass the same prefix to connect() and createServiceWorkerHost().`,
      );
      port.postMessage({ type: "fiberline/rejected", error: serializeError(error) } satisfies HandshakeReply);
      port.close();
      return;
    }
    serveControlPort(this.#api, [...CONTROL_METHODS, "openStream"], port);
    port.postMessage({ type: "fiberline/ready", worker: this.info } satisfies HandshakeReply);
  }

  #controlApi(): ControlApi & PortStreamApi {
    const runtime = this.runtime;
    const continuity = this.#continuity;
    const api = createControlApi(runtime, () => ({
      ...this.info,
      active: runtime.activeCount,
      recovered: this.#recovered,
      ...storageHealthOf(runtime.store),
    }));
    /** Decides where `id` runs first (see `continuity`); a failure to ask the edge answers from here. */
    const settled = async (id: unknown): Promise<void> => {
      if (continuity === undefined || typeof id !== "string") return;
      await continuity
        .settle(id)
        .catch((error: unknown) => this.#report(error, `deciding where fiber ${id} runs`));
    };
    return {
      ...api,
      ...(continuity
        ? {
            // Under an id the edge may hold (another device of the user started it, or this
            // browser's database was wiped): the fiber is restored first, so the start finds it
            // (`created: false`) instead of starting another fiber under its id.
            start: async (name, input, options) => {
              await settled((options as { id?: unknown } | undefined)?.id);
              return api.start(name, input, options);
            },
            get: async (id: string) => {
              await settled(id);
              return api.get(id);
            },
            inspect: async (id: string) => {
              await settled(id);
              return api.inspect(id);
            },
            sendEvent: async (id: string, name: string, payload?: unknown) => {
              assertValidId(id);
              assertEventName(name);
              return continuity.sendEvent(id, name, payload);
            },
            cancel: async (id: string, reason?: string) => {
              assertValidId(id);
              if (reason !== undefined) assertCancelReason(reason);
              return continuity.cancel(id, reason);
            },
          }
        : {}),
      openStream: async (id, after, port, created, window) => {
        assertValidId(id);
        assertArgument(
          Number.isSafeInteger(after) && after >= 0,
          `openStream(id, after) needs an integer >= 0, got ${after}.`,
        );
        assertArgument(
          isMessagePort(port),
          "openStream(id, after, port) needs a MessagePort to push the stream to (transfer one end of a MessageChannel).",
        );
        assertArgument(
          created === undefined || Number.isFinite(created),
          `openStream(id, after, port, created) needs created to be a number, got ${String(created)}.`,
        );
        assertArgument(
          window === undefined || (Number.isSafeInteger(window) && window > 0),
          `openStream(id, after, port, created, window) needs window to be an integer > 0, got ${String(window)}.`,
        );
        await settled(id);
        // A reader that read another fiber under this id (collected and started again since) is
        // refused there; the record and the first chunks come from one read.
        await openPortStream(runtime, id, after, port, created, window === undefined ? {} : { window });
      },
    };
  }
}

/** Whether `value` can carry a port stream (what a page transfers; anything else is refused first). */
function isMessagePort(value: unknown): value is MessagePort {
  const port = value as Partial<MessagePort> | null;
  return (
    typeof port === "object" &&
    port !== null &&
    typeof port.postMessage === "function" &&
    typeof port.addEventListener === "function" &&
    typeof port.start === "function" &&
    typeof port.close === "function"
  );
}

/** The health of a store wrapped by `watchStorage`, for `heartbeat()`. */
function storageHealthOf(store: object): { storage?: StorageHealth } {
  const health = (store as Partial<WatchedStore>).health;
  return health ? { storage: health } : {};
}

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
