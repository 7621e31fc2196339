/**
 * The wire protocol between pages (`fiberline/client`) and the Service Worker host
 * (`fiberline/sw`), in one place: the messages a page posts to the worker, the handshake reply,
 * the control RPC (comlink on a `MessageChannel`), the event-stream route and the JSON error body.
 * Both sides import this file; another host (the edge) speaking the same route reuses its shapes.
 */

import { type SerializedError, serializeError } from "../core/errors";
import type { FiberRecord, FiberStatus } from "../core/records";
import type { FiberInspection, StartOptions, StartResult } from "../core/runtime";
import type { FiberQuery } from "../core/store";

/** Bumped on any incompatible change below; a mismatch fails the handshake with `protocol_error`. */
export const PROTOCOL_VERSION = 1;

/** Where the host serves its routes unless configured otherwise. */
export const DEFAULT_PREFIX = "/__fiberline";

// ---- page -> worker messages ------------------------------------------------------------------
//
// Posted with `ServiceWorker.postMessage`, so each one is an `ExtendableMessageEvent` in the
// worker: it starts a stopped worker and lets the host extend the worker's lifetime. Messages on
// an already-open MessagePort do neither, which is why reconnecting always goes through here.

/** Opens a control channel: `ports[0]` of the message is the worker's end of a `MessageChannel`. */
export interface ConnectMessage {
  type: "fiberline/connect";
  protocol: number;
  /** The route prefix the page expects; a mismatch fails the handshake with `protocol_error`. */
  prefix: string;
}

/** Keeps the worker alive while the page has fibers running or a stream open (no reply). */
export interface HeartbeatMessage {
  type: "fiberline/heartbeat";
}

/** Asks an active worker that does not control the page (after a hard reload) to claim it. */
export interface ClaimMessage {
  type: "fiberline/claim";
}

/** Every message a page posts to the worker. */
export type ClientMessage = ConnectMessage | HeartbeatMessage | ClaimMessage;

/** Whether a `message` event's data belongs to Fiberline (the app's own messages are left alone). */
export function isClientMessage(data: unknown): data is ClientMessage {
  const type = (data as { type?: unknown } | null)?.type;
  return type === "fiberline/connect" || type === "fiberline/heartbeat" || type === "fiberline/claim";
}

// ---- worker -> page handshake reply (first message on the transferred port) -------------------

/** Who answered: one running instance of the worker script. */
export interface WorkerInfo {
  /** Random per worker start: a new id means the worker was restarted or replaced. */
  instanceId: string;
  /** The worker script URL (its query distinguishes versions in tests). */
  scriptUrl: string;
  /** When this instance started (ms since the epoch). */
  startedAt: number;
  protocol: number;
  prefix: string;
}

/** The handshake answer, posted on the port before any RPC. */
export type HandshakeReply =
  | { type: "fiberline/ready"; worker: WorkerInfo }
  | { type: "fiberline/rejected"; error: SerializedError };

// ---- control RPC (comlink over the port) ------------------------------------------------------

/** A thrown error on the control channel: the value of comlink's "throw" handler message. */
export interface WireThrow {
  fiberline: 1;
  error: SerializedError;
}

/** How a thrown `error` crosses the control channel (`error-transfer.ts`, `control-port.ts`). */
export function wireThrow(error: unknown): WireThrow {
  return { fiberline: 1, error: serializeError(error) };
}

/** What `heartbeat()` reports. */
export interface HeartbeatInfo extends WorkerInfo {
  /** Fibers this worker instance is executing right now. */
  active: number;
  /** Whether the start-up `recover()` of this instance has finished. */
  recovered: boolean;
  /** The store's health (quota, a wiped database, persistence), when it is wrapped by `watchStorage`. */
  storage?: StorageHealth;
}

/**
 * The control API the worker exposes on each port. Every method rejects with a `FiberlineError`
 * subclass that keeps its class and `code` in the page (see `error-transfer.ts`).
 */
export interface ControlApi {
  start(name: string, input: unknown, options?: StartOptions): Promise<StartResult>;
  get(id: string): Promise<FiberRecord | undefined>;
  list(query?: FiberQuery): Promise<FiberRecord[]>;
  inspect(id: string): Promise<FiberInspection>;
  sendEvent(id: string, name: string, payload?: unknown): Promise<void>;
  cancel(id: string, reason?: string): Promise<FiberStatus>;
  heartbeat(): Promise<HeartbeatInfo>;
  /**
   * Retries now the fibers paused for lack of space (`StorageHealth.paused`), instead of at their
   * next backoff: resolves with the storage health after the retry (`undefined` when the host's
   * store is not wrapped by `watchStorage`).
   */
  retryPaused(): Promise<StorageHealth | undefined>;
}

/**
 * The stream fallback on the control port, for when a page's `fetch` does not reach the worker
 * (an uncontrolled page after a hard reload; Chromium routing a page's requests around a newly
 * activated version). `port` carries `PortStreamMessage`s to the page and `PortStreamReply`s back.
 * Rejects with `FiberNotFoundError` / `InvalidInputError` like the route answers 404 / 400.
 */
export interface PortStreamApi {
  /**
   * Streams fiber `id`'s chunks after `after` into `port`. With `created` (the `CREATED_HEADER`
   * of an earlier answer), rejects with `fiber_not_found` when the fiber under the id is another.
   * With `window`, at most that much chunk data (`chunkCost`) is in flight until the page returns
   * `credit` for what its reader took; without, every chunk goes at once.
   */
  openStream(id: string, after: number, port: MessagePort, created?: number, window?: number): Promise<void>;
}

/**
 * What the worker posts on a stream port: chunks as the route sends them (data as JSON text),
 * then `end`; or only `ended` when the fiber ended and the cursor is at its end (the route's 204).
 */
export type PortStreamMessage =
  /** First: which fiber this is (its `createdAt`, as `CREATED_HEADER`). */
  | { type: "opened"; created: number }
  | { type: "chunk"; seq: number; event: string; at: number; data: string }
  | { type: "ping" }
  | { type: "end" }
  | { type: "ended" }
  | { type: "error"; error: SerializedError };

/**
 * What the page posts back: `pong` answers each ping; `credit` returns `cost` of the window its
 * reader has taken; `close` stops the stream.
 */
export type PortStreamReply = { type: "pong" } | { type: "credit"; cost: number } | { type: "close" };

/** The worker pings a stream port this often; either side gives up after three silent periods. */
export const STREAM_PING_MS = 2_000;

/** The RPC method names. */
export type RpcMethod = keyof ControlApi;
/** The arguments of an RPC method. */
export type RpcArgs<M extends RpcMethod> = Parameters<ControlApi[M]>;
/** The resolved value of an RPC method. */
export type RpcResult<M extends RpcMethod> = Awaited<ReturnType<ControlApi[M]>>;

// ---- the event stream route -------------------------------------------------------------------
//
// GET {prefix}/fibers/:id/events?after=N   (or a `Last-Event-ID: N` header, which wins)
// 200 text/event-stream, one block per chunk, replay of seq > N then live, closed after fiber.end:
//
//   id: <seq>
//   event: <type>
//   at: <ms since the epoch>        (ignored by EventSource; read by fiberline/client)
//   data: <JSON of the chunk's data> (undefined is sent as null, bigint as a string)
//
// 400 malformed id or cursor, 404 unknown fiber, 405 other methods: a JSON `ErrorBody`.

/** The route's path below the prefix, `:id` URI-encoded. */
export const EVENTS_PATH = "/fibers/:id/events";

/** The stream URL of a fiber. */
export function eventsUrl(prefix: string, id: string, after?: number, created?: number): string {
  const path = `${prefix}/fibers/${encodeURIComponent(id)}/events`;
  const query = [
    ...(after === undefined ? [] : [`after=${after}`]),
    ...(created === undefined ? [] : [`${CREATED_PARAM}=${encodeURIComponent(String(created))}`]),
  ];
  return query.length === 0 ? path : `${path}?${query.join("&")}`;
}

/**
 * Which fiber a stream belongs to, on the wire: its `createdAt`, sent by the event route in this
 * header of every 200 answer. A reader that reconnects sends it back as the `created` parameter,
 * and the route answers 404 `fiber_not_found` when the fiber under the id now is another one (the
 * one read was collected and a new one started under its id): without it, the reader would go on
 * from its cursor into the new fiber's stream. `createdAt` is kept when a fiber moves between
 * homes (continuity) and when its copy is rebuilt, so it names the fiber, not the copy.
 */
export const CREATED_HEADER = "x-fiberline-created";

/** The query parameter a reconnecting reader sends `CREATED_HEADER`'s value back in. */
export const CREATED_PARAM = "created";

/** The content type of the stream. */
export const EVENT_STREAM_TYPE = "text/event-stream";

/** The extra SSE field that carries a chunk's `at`. */
export const AT_FIELD = "at";

/** Header set on every response of the host, so a client can tell it from a network fallback. */
export const HOST_HEADER = "x-fiberline";

/** The JSON body of every error response of the route. */
export interface ErrorBody {
  error: {
    code: string;
    message: string;
    /** The error's class name (sent by the HTTP control routes), so a client can rebuild the class. */
    name?: string;
  };
}

// ---- HTTP control routes (the edge host; `connect({ baseUrl })`) ------------------------------
//
// A host with no MessageChannel to the page (a Cloudflare Durable Object) answers the control
// calls over HTTP next to the event stream, JSON in and out:
//
// POST {prefix}/fibers                   StartRequest     -> 201 created, 200 joined: StartResult
// GET  {prefix}/fibers?status=a&status=b&name=n&limit=k   -> FiberRecord[]
// GET  {prefix}/fibers/:id                                -> FiberRecord (404 unknown)
// GET  {prefix}/fibers/:id/inspect                        -> FiberInspection
// POST {prefix}/fibers/:id/events        SendEventRequest -> 202, buffered for the fiber
// POST {prefix}/fibers/:id/cancel        CancelRequest    -> 200 CancelReply
//
// Errors are an `ErrorBody` with `name` set, at the status `httpStatusOf(code)`. Values travel as
// JSON, so inputs, events and results round-trip exactly only when they are JSON-safe.

/** Body of `POST {prefix}/fibers`. */
export interface StartRequest {
  name: string;
  input?: unknown;
  id?: string;
  idempotencyKey?: string;
}

/** Body of `POST {prefix}/fibers/:id/events`. */
export interface SendEventRequest {
  name: string;
  payload?: unknown;
  /**
   * Continuity: the id a browser home gave the event (`browser:<deviceId>@<epoch>:<seq>`) when it sends
   * it to the edge after the fiber moved away before the event was acknowledged. The arbiter
   * drops it when the replica holds that home's events of that epoch up to that seq already (the shipment
   * carried it and its answer was lost), so it is consumed once.
   */
  eventId?: string;
}

/** Body of `POST {prefix}/fibers/:id/cancel`. */
export interface CancelRequest {
  reason?: string;
}

/**
 * Answer of `POST {prefix}/fibers/:id/cancel`: the fiber's status after the cancel (`cancelled`,
 * or the status it had ended with before). At an edge host with continuity, a fiber a browser
 * runs is cancelled there: when that did not happen within the host's wait, the answer is `202`
 * with `forwarded: true` and the fiber's status at that moment; the cancel is durable and the
 * fiber's stream ends with `fiber.end` (`cancelled`, unless it ended otherwise first).
 */
export interface CancelReply {
  status: FiberStatus;
  forwarded?: true;
}

/** The URL of a control route: the fiber list, one fiber, or one of its actions. */
export function fibersUrl(prefix: string, id?: string, action?: "inspect" | "events" | "cancel"): string {
  if (id === undefined) return `${prefix}/fibers`;
  const path = `${prefix}/fibers/${encodeURIComponent(id)}`;
  return action === undefined ? path : `${path}/${action}`;
}

/** The HTTP status an error with `code` is answered with. */
export function httpStatusOf(code: string): number {
  switch (code) {
    case "invalid_argument":
    case "invalid_id":
    case "not_cloneable":
    case "unknown_fiber":
      return 400;
    case "unauthorized":
      return 401;
    case "origin_not_allowed":
      return 403;
    case "fiber_not_found":
    case "route_not_found":
      return 404;
    case "fiber_ended":
    case "fenced":
      return 409;
    case "payload_too_large":
      return 413;
    case "too_many_fibers":
      return 429;
    case "quota_exceeded":
      return 507;
    case "store_closed":
      return 503;
    default:
      return 500;
  }
}

// Storage health: a store wrapped by `watchStorage` (in the worker) publishes every change on a
// `BroadcastChannel` named `STORAGE_CHANNEL`; a page may ask for the current state by posting a
// `StorageHealthQuery` there (`watchStorageHealth` in `fiberline/client` does both).

/** The `BroadcastChannel` storage health travels on. */
export const STORAGE_CHANNEL = "fiberline/storage";

/** How the worker's storage is doing. */
export interface StorageHealth {
  /**
   * `ok`; `quota_exceeded` while the origin is out of storage (writes are refused; paused fibers
   * resume by themselves once a retry fits, or when a page calls `retryPaused()`); `store_lost` when the database came back empty
   * although the marker outside it listed fibers (the browser deleted it).
   */
  state: "ok" | "quota_exceeded" | "store_lost";
  /**
   * Fibers whose last write was refused for lack of space: not lost, retried with backoff, or at
   * once by `retryPaused()` of the client.
   */
  paused: string[];
  /** Fibers the marker listed that the database no longer holds (with `store_lost`). */
  lost: string[];
  /** `navigator.storage.persisted()`: whether the browser may evict this origin's data (`false`). */
  persisted: boolean | undefined;
  /** `navigator.storage.estimate()` at the last change, in bytes, where the browser tells. */
  usage?: number;
  quota?: number;
  /** When this state was reached (ms since the epoch). */
  since: number;
}

/** Posted by the worker on `STORAGE_CHANNEL` on every change, and in answer to a query. */
export interface StorageHealthMessage {
  type: "fiberline/storage";
  health: StorageHealth;
}

/** Posted by a page on `STORAGE_CHANNEL` to get the current `StorageHealthMessage`. */
export interface StorageHealthQuery {
  type: "fiberline/storage-query";
}
