/**
 * The HTTP routes of the edge host: the control calls of `protocol.ts` (start, get, list,
 * inspect, send event, cancel) as JSON, and the event stream through the Service Worker host's
 * own route (`handleEventsRequest`), so both hosts speak one stream protocol byte for byte.
 */

import { FiberlineError, FiberNotFoundError, InvalidInputError, serializeError } from "../core/errors";
import { FIBER_STATUSES, type FiberStatus } from "../core/records";
import type { Runtime } from "../core/runtime";
import type { FiberQuery } from "../core/store";
import { assertCancelReason, assertEventName } from "../core/validate";
import { handleEventsRequest } from "../sw/event-route";
import {
  type CancelReply,
  type CancelRequest,
  type ErrorBody,
  HOST_HEADER,
  httpStatusOf,
  type SendEventRequest,
  type StartRequest,
} from "../sw/protocol";

/** What the routes need. */
export interface RouteOptions {
  runtime: Runtime;
  /** The route prefix, e.g. "/__fiberline" (no trailing slash). */
  prefix: string;
  /** Called with a promise that settles when a stream response ends. */
  onStream?(ended: Promise<void>): void;
  /**
   * How a cancel is carried out (default: `runtime.cancel`). The Durable Object host's continuity
   * forwards a cancel of a fiber a browser runs to that browser (`cancelReplicated`).
   */
  cancel?(id: string, reason: string | undefined): Promise<CancelReply>;
}

const STATUSES = FIBER_STATUSES;

/**
 * Answers a request under `prefix`, or returns `null` for any other path.
 *
 * Failure semantics: every failure is a JSON `ErrorBody` (with the error's class as `name`) at
 * `httpStatusOf(code)`: a malformed body or id `400`, an unknown fiber `404`, an ended fiber
 * `409`; a write either completed before the answer or did not happen.
 */
export async function handleFiberlineRequest(
  request: Request,
  options: RouteOptions,
): Promise<Response | null> {
  const url = new URL(request.url);
  const { prefix, runtime } = options;
  if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) return null;
  // ["", "fibers", id?, action?]
  const segments = url.pathname.slice(prefix.length).split("/");
  const method = request.method;
  try {
    if (segments[1] !== "fibers" || segments.length > 4) return notFound(url, prefix);
    if (segments.length === 2) {
      if (method === "POST") return await start(runtime, request);
      if (method === "GET") return json(await runtime.list(readQuery(url)));
      return notAllowed(url, "GET, POST");
    }
    const id = decodeId(segments[2] ?? "");
    const action = segments[3];
    if (action === undefined) {
      if (method !== "GET") return notAllowed(url, "GET");
      const record = await runtime.get(id);
      return record ? json(record) : errorResponse(new FiberNotFoundError(id));
    }
    if (action === "inspect") {
      if (method !== "GET") return notAllowed(url, "GET");
      return json(await runtime.inspect(id));
    }
    if (action === "cancel") {
      if (method !== "POST") return notAllowed(url, "POST");
      const body = await readBody<CancelRequest>(request, true);
      const reason = body?.reason;
      if (reason !== undefined) assertCancelReason(reason);
      const reply: CancelReply = options.cancel
        ? await options.cancel(id, reason)
        : { status: await runtime.cancel(id, reason) };
      return json(reply, reply.forwarded ? 202 : 200);
    }
    if (action === "events" && method === "POST") {
      const body = await readBody<SendEventRequest>(request);
      if (typeof body.name !== "string") throw invalid("send event: the body needs a string `name`.");
      assertEventName(body.name);
      const { eventId } = body;
      if (eventId !== undefined && (typeof eventId !== "string" || !/^browser:.+:[1-9][0-9]*$/.test(eventId)))
        throw invalid(
          "send event: `eventId`, when sent, is one a browser home gave an event it buffered (`browser:<deviceId>@<epoch>:<seq>`).",
        );
      await runtime.sendEvent(id, body.name, body.payload, eventId === undefined ? undefined : { eventId });
      return new Response(null, { status: 202, headers: { [HOST_HEADER]: "1" } });
    }
    if (action === "events") {
      return await handleEventsRequest(request, {
        runtime,
        prefix,
        ...(options.onStream ? { onStream: options.onStream } : {}),
      });
    }
    return notFound(url, prefix);
  } catch (error) {
    return errorResponse(error);
  }
}

async function start(runtime: Runtime, request: Request): Promise<Response> {
  const body = await readBody<StartRequest>(request);
  if (typeof body.name !== "string")
    throw invalid("start: the body needs a string `name` (a fiber definition).");
  const options = {
    ...(body.id === undefined ? {} : { id: body.id }),
    ...(body.idempotencyKey === undefined ? {} : { idempotencyKey: body.idempotencyKey }),
  };
  const { id, name, status, created } = await runtime.start(body.name, body.input, options);
  return json({ id, name, status, created }, created ? 201 : 200);
}

/** The `FiberQuery` of `GET {prefix}/fibers?status=&name=&limit=`; throws `invalid_argument` on a bad one. */
export function readQuery(url: URL): FiberQuery {
  const query: FiberQuery = {};
  const statuses = url.searchParams.getAll("status").flatMap((s) => s.split(","));
  for (const status of statuses) {
    if (!STATUSES.includes(status as FiberStatus)) {
      throw invalid(`list: unknown status "${status}"; use one of ${STATUSES.join(", ")}.`);
    }
  }
  if (statuses.length > 0) query.status = statuses as FiberStatus[];
  const name = url.searchParams.get("name");
  if (name !== null) query.name = name;
  const limit = url.searchParams.get("limit");
  if (limit !== null) {
    if (!/^[0-9]{1,9}$/.test(limit)) throw invalid(`list: limit must be a whole number, got "${limit}".`);
    query.limit = Number(limit);
  }
  return query;
}

async function readBody<T>(request: Request, optional = false): Promise<T> {
  const text = await request.text();
  if (text.trim() === "" && optional) return {} as T;
  try {
    const body: unknown = JSON.parse(text);
    if (body !== null && typeof body === "object" && !Array.isArray(body)) return body as T;
  } catch {
    // answered below
  }
  throw invalid(`${request.method} ${new URL(request.url).pathname} needs a JSON object body.`);
}

function decodeId(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new InvalidInputError("invalid_id", `Malformed fiber id in the path: "${raw}".`);
  }
}

function invalid(message: string): InvalidInputError {
  return new InvalidInputError("invalid_argument", message);
}

/** A JSON answer with the host header. */
export function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      [HOST_HEADER]: "1",
    },
  });
}

/** A JSON `ErrorBody` for `error`, at the status its code maps to. */
export function errorResponse(
  error: unknown,
  init: { status?: number; headers?: Record<string, string> } = {},
): Response {
  const { name, message, code = "internal_error" } = serializeError(error);
  const body: ErrorBody = { error: { code, message, name } };
  return new Response(JSON.stringify(body), {
    status: init.status ?? httpStatusOf(code),
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      [HOST_HEADER]: "1",
      ...init.headers,
    },
  });
}

function notFound(url: URL, prefix: string): Response {
  return errorResponse(
    new FiberlineError(
      "route_not_found",
      `No Fiberline route at ${url.pathname}; the routes are ${prefix}/fibers, ${prefix}/fibers/<id>, ${prefix}/fibers/<id>/inspect, ${prefix}/fibers/<id>/events and ${prefix}/fibers/<id>/cancel.`,
    ),
  );
}

function notAllowed(url: URL, allow: string): Response {
  return errorResponse(invalid(`${url.pathname} only answers ${allow}.`), {
    status: 405,
    headers: { allow },
  });
}
