/**
 * The wire protocol between an extension's pages (side panel, popup, options, content scripts:
 * `connect({ extension: true })` of `fiberline/client`) and the extension host in its background
 * worker (`fiberline/extension`), over `chrome.runtime.connect` ports. Both sides import this
 * file. The control calls and the stream chunks are the Service Worker host's (`src/sw/protocol.ts`);
 * only the transport differs: Chrome JSON-serializes every port message, so values travel as JSON.
 *
 * Control port (name `CONTROL_PORT`), one per client, reopened after the worker stopped:
 *
 *   page -> worker  { type: "hello", protocol }
 *   worker -> page  { type: "ready", worker } | { type: "rejected", error }
 *   page -> worker  { type: "call", call, method, args }
 *   worker -> page  { type: "result", call, value } | { type: "failed", call, error }
 *
 * Stream port (name `STREAM_PORT`), one per reader attempt, resumed from a cursor on a new port:
 *
 *   page -> worker  { type: "subscribe", fiber, after, window? }
 *   worker -> page  { type: "chunk", seq, event, at, data }* then { type: "end" } | { type: "error", error }
 *                   or only { type: "ended" } when the fiber ended and the cursor is at its end
 *   page -> worker  { type: "credit", cost }* as its reader takes chunks (with a `window`: the
 *                   worker sends at most that much chunk data ahead of the credit returned)
 *
 * The worker disconnects a stream port after `end` or `error`; the page disconnects it to stop.
 * A port whose worker stopped is disconnected by Chrome (the page sees `onDisconnect`), which
 * the client answers by reconnecting: `chrome.runtime.connect` starts the worker again.
 */

import type { SerializedError } from "../core/errors";
import type { RpcMethod, WorkerInfo } from "../sw/protocol";

/** Bumped on any incompatible change below; a mismatch fails the handshake with `protocol_error`. */
export const EXTENSION_PROTOCOL_VERSION = 1;

/** The name of a control port. */
export const CONTROL_PORT = "fiberline/control";

/** The name of a stream port. */
export const STREAM_PORT = "fiberline/stream";

/** What a page posts on a control port. */
export type ControlRequest =
  | { type: "hello"; protocol: number }
  | { type: "call"; call: number; method: RpcMethod; args: unknown[] };

/** What the worker posts on a control port. */
export type ControlReply =
  | { type: "ready"; worker: WorkerInfo }
  | { type: "rejected"; error: SerializedError }
  | { type: "result"; call: number; value: unknown }
  | { type: "failed"; call: number; error: SerializedError };

/** What a page posts on a stream port (once, right after connecting). */
export interface StreamRequest {
  type: "subscribe";
  fiber: string;
  /** Send the chunks with `seq > after`. */
  after: number;
  /** Flow control: at most this much chunk data (`chunkCost`) ahead of the credit returned. */
  window?: number;
}

/** What a page that subscribed with a `window` posts as its reader takes chunks. */
export interface StreamCreditMessage {
  type: "credit";
  cost: number;
}

/** What the worker posts on a stream port: chunks as the SSE route sends them (data as JSON text). */
export type StreamReply =
  /** First: which fiber this is (its `createdAt`, as the web host's `x-fiberline-created`). */
  | { type: "opened"; created: number }
  | { type: "chunk"; seq: number; event: string; at: number; data: string }
  | { type: "end" }
  /** The fiber ended and the cursor is at (or past) its end: nothing will follow (the route's 204). */
  | { type: "ended" }
  | { type: "error"; error: SerializedError };

/** Whether `message` is a control request (anything else on the port is ignored). */
export function isControlRequest(message: unknown): message is ControlRequest {
  const m = message as Partial<ControlRequest> | null;
  if (m?.type === "hello") return typeof m.protocol === "number";
  return (
    m?.type === "call" && typeof m.call === "number" && typeof m.method === "string" && Array.isArray(m.args)
  );
}

/** Whether `message` is a stream request. */
export function isStreamRequest(message: unknown): message is StreamRequest {
  const m = message as Partial<StreamRequest> | null;
  return (
    m?.type === "subscribe" &&
    typeof m.fiber === "string" &&
    typeof m.after === "number" &&
    (m.window === undefined || (Number.isSafeInteger(m.window) && m.window > 0))
  );
}

/** Whether `message` returns stream credit. */
export function isStreamCredit(message: unknown): message is StreamCreditMessage {
  const m = message as Partial<StreamCreditMessage> | null;
  return m?.type === "credit" && typeof m.cost === "number" && Number.isFinite(m.cost);
}
