/**
 * The event-stream route of the Service Worker host: `GET {prefix}/fibers/:id/events` answered
 * from `runtime.eventBatches()` as `text/event-stream`. A plain `Request -> Response` function, so it
 * runs (and is tested) anywhere `Request`, `Response` and `ReadableStream` exist.
 */

import { FiberlineError, FiberNotFoundError, serializeError } from "../core/errors";
import { type FiberEvent, type FiberRecord, pastTheEnd } from "../core/records";
import type { Runtime } from "../core/runtime";
import { assertValidId } from "../core/validate";
import {
  AT_FIELD,
  CREATED_HEADER,
  CREATED_PARAM,
  type ErrorBody,
  EVENT_STREAM_TYPE,
  HOST_HEADER,
} from "./protocol";

/** What the route needs. */
export interface EventRouteOptions {
  runtime: Runtime;
  /** The route prefix, e.g. "/__fiberline" (no trailing slash). */
  prefix: string;
  /** Only requests to this origin are served (the worker's own); default: any. */
  origin?: string;
  /** Called with a promise that settles when a stream response ends (the host extends its lifetime). */
  onStream?(ended: Promise<void>): void;
  /**
   * A comment line (`: keep-alive`) goes out after this long with no chunk (default 15 s), so a
   * reader can tell a quiet stream from a dead connection (the client reader's `idleTimeoutMs`).
   */
  heartbeatMs?: number;
}

/** How long a stream stays silent before a keep-alive comment, unless the options say. */
export const DEFAULT_HEARTBEAT_MS = 15_000;

const encoder = new TextEncoder();

/**
 * Answers a request for the event-stream route, or returns `null` when the request is not for
 * `prefix` (the caller leaves it alone).
 *
 * Failure semantics: a malformed id or cursor answers `400`, an unknown fiber `404`, any other
 * method than GET/HEAD `405`, an unknown path under the prefix `404`, a storage failure before
 * the stream starts `500`, each with an `ErrorBody`. A failure after the stream started errors
 * the body, which a reader sees as a network error and answers by reconnecting.
 *
 * @example
 * self.addEventListener("fetch", (event) => {
 *   const url = new URL(event.request.url);
 *   if (url.pathname.startsWith("/__fiberline/")) event.respondWith(handleEventsRequest(event.request, { runtime, prefix: "/__fiberline" }).then((r) => r ?? fetch(event.request)));
 * });
 */
export async function handleEventsRequest(
  request: Request,
  options: EventRouteOptions,
): Promise<Response | null> {
  const url = new URL(request.url);
  if (!ownsRequest(url, options)) return null;
  const segments = url.pathname.slice(options.prefix.length).split("/");
  // ["", "fibers", "<id>", "events"]
  if (segments.length !== 4 || segments[1] !== "fibers" || segments[3] !== "events") {
    return errorResponse(
      404,
      "route_not_found",
      `No Fiberline route at ${url.pathname}; the event stream is ${options.prefix}/fibers/<id>/events.`,
    );
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return errorResponse(
      405,
      "invalid_argument",
      `${url.pathname} only answers GET (got ${request.method}).`,
      {
        allow: "GET, HEAD",
      },
    );
  }
  let id: string;
  try {
    id = decodeURIComponent(segments[2] ?? "");
    assertValidId(id);
  } catch (error) {
    return errorResponse(400, "invalid_id", describe(error, `Malformed fiber id in ${url.pathname}.`));
  }
  const cursor = readCursor(url, request.headers);
  if (typeof cursor === "string") return errorResponse(400, "invalid_argument", cursor);
  const created = readCreated(url);
  if (typeof created === "string") return errorResponse(400, "invalid_argument", created);

  const { runtime } = options;
  const abort = new AbortController();
  let batches: AsyncGenerator<FiberEvent[]>;
  let createdAt: number;
  try {
    // HEAD reads the record alone.
    if (request.method === "HEAD") {
      const record = await runtime.get(id);
      return (
        answerWithoutBody(id, record, cursor, created) ??
        new Response(null, { status: 200, headers: streamHeaders(record?.createdAt) })
      );
    }
    const inMemory = runtime.streamsFromMemory(id, cursor) ? runtime.streamCreatedAt(id) : undefined;
    if (inMemory !== undefined && (created === undefined || created === inMemory)) {
      // A fiber this runtime started and runs, with chunks in memory after the cursor, exists and
      // has something to send: its reader starts from them, and a read here would only queue
      // behind the fiber's own first commits.
      batches = runtime.eventBatches(id, { after: cursor, signal: abort.signal });
      createdAt = inMemory;
    } else {
      // The reader reads the record with the first chunks: one read before the first chunk.
      const opened = await runtime.openEventBatches(id, { after: cursor, signal: abort.signal });
      const answer = answerWithoutBody(id, opened.record, cursor, created);
      if (answer !== undefined) {
        opened.close();
        return answer;
      }
      batches = opened.batches;
      createdAt = (opened.record as FiberRecord).createdAt;
    }
  } catch (error) {
    const code = error instanceof FiberlineError ? error.code : "store_error";
    return errorResponse(500, code, describe(error, "Reading the fiber failed."));
  }
  const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  return new Response(streamBody(batches, abort, options.onStream, heartbeatMs), {
    status: 200,
    headers: streamHeaders(createdAt),
  });
}

/** The headers of a stream answer; `createdAt` names the fiber (`CREATED_HEADER`). */
function streamHeaders(createdAt: number | undefined): Record<string, string> {
  return {
    "content-type": `${EVENT_STREAM_TYPE}; charset=utf-8`,
    "cache-control": "no-store",
    [HOST_HEADER]: "1",
    ...(createdAt === undefined ? {} : { [CREATED_HEADER]: String(createdAt) }),
  };
}

/**
 * 404 for no such fiber (or, with `created`, for another fiber than the one a reconnecting reader
 * read), 204 for a cursor at or past an ended fiber's end; else `undefined`.
 */
function answerWithoutBody(
  id: string,
  record: FiberRecord | undefined,
  cursor: number,
  created: number | undefined,
): Response | undefined {
  if (!record) {
    const missing = new FiberNotFoundError(id);
    return errorResponse(404, missing.code, missing.message);
  }
  if (created !== undefined && record.createdAt !== created) {
    return errorResponse(
      404,
      "fiber_not_found",
      `The fiber ${JSON.stringify(id)} this reader was reading (created at ${created}) is gone: it was collected, and the fiber under its id now is another one (created at ${record.createdAt}). Read the new one from the start (after 0) if you mean it.`,
    );
  }
  // Nothing will ever follow: 204 is what makes a WHATWG EventSource stop reconnecting.
  if (pastTheEnd(record, cursor)) {
    return new Response(null, {
      status: 204,
      headers: { "cache-control": "no-store", [HOST_HEADER]: "1" },
    });
  }
  return undefined;
}

/** Whether `url` falls under the host's prefix (and origin). */
export function ownsRequest(url: URL, options: Pick<EventRouteOptions, "prefix" | "origin">): boolean {
  if (options.origin !== undefined && url.origin !== options.origin) return false;
  return url.pathname === options.prefix || url.pathname.startsWith(`${options.prefix}/`);
}

/** The `created` parameter of a reconnecting reader (see `CREATED_HEADER`); a string is an error. */
function readCreated(url: URL): number | undefined | string {
  const raw = url.searchParams.get(CREATED_PARAM);
  if (raw === null) return undefined;
  if (raw.trim() === "" || !Number.isFinite(Number(raw))) {
    return `The ${CREATED_PARAM} parameter must be the ${CREATED_HEADER} header of an earlier answer of this route (a number); got ${JSON.stringify(raw)}.`;
  }
  return Number(raw);
}

/** The resume cursor: `Last-Event-ID` when sent (a reconnecting `EventSource`), else `?after`, else 0; a string is an error. */
function readCursor(url: URL, headers: Headers): number | string {
  const header = headers.get("last-event-id");
  const query = url.searchParams.get("after");
  const [raw, source] =
    header !== null ? [header.trim(), "Last-Event-ID header"] : [query, "after parameter"];
  if (raw === null) return 0;
  if (!/^[0-9]{1,16}$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    return `The ${source} must be a non-negative integer (the last seq you saw, 0 for the whole stream); got ${JSON.stringify(raw)}.`;
  }
  return Number(raw);
}

/** The response body: every chunk available at once goes out in one encode and one enqueue. */
function streamBody(
  batches: AsyncGenerator<FiberEvent[]>,
  abort: AbortController,
  onStream: EventRouteOptions["onStream"],
  heartbeatMs: number,
): ReadableStream<Uint8Array> {
  let finish!: () => void;
  const ended = new Promise<void>((resolve) => {
    finish = resolve;
  });
  onStream?.(ended);
  // The next batch, kept across a heartbeat: a quiet pull sends a comment and waits on it again.
  let pending: Promise<IteratorResult<FiberEvent[]>> | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        pending ??= batches.next();
        const next = await quietFor(pending, heartbeatMs);
        if (next === QUIET) {
          controller.enqueue(KEEP_ALIVE);
          return;
        }
        pending = null;
        if (next.done) {
          controller.close();
          finish();
          return;
        }
        controller.enqueue(encoder.encode(next.value.map(frame).join("")));
      } catch (error) {
        controller.error(error);
        finish();
      }
    },
    cancel() {
      // The reader went away (page closed, reader aborted, reconnect).
      abort.abort();
      batches.return(undefined).catch(() => {});
      finish();
    },
  });
}

const QUIET = Symbol("quiet");
const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");

/** `promise`'s value, or `QUIET` once `ms` pass first (0 or less: never quiet). */
function quietFor<T>(promise: Promise<T>, ms: number): Promise<T | typeof QUIET> {
  if (!(ms > 0)) return promise;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const quiet = new Promise<typeof QUIET>((resolve) => {
    timer = setTimeout(() => resolve(QUIET), ms);
  });
  return Promise.race([promise, quiet]).finally(() => clearTimeout(timer));
}

/**
 * One SSE block for one chunk: exactly what `formatSse` writes for its id, type, `at` and data,
 * built in one template because it runs for every chunk of every stream. None of `formatSse`'s
 * checks can fail here: `seq` and `at` are numbers, the type's line breaks are replaced, and
 * JSON text never holds a CR or LF (JSON.stringify escapes them inside strings).
 */
export function frame(event: FiberEvent): string {
  const type = LINE_BREAK.test(event.type) ? event.type.replace(LINE_BREAKS, " ") : event.type;
  return `id: ${event.seq}\nevent: ${type}\n${AT_FIELD}: ${event.at}\ndata: ${toJson(event.data)}\n\n`;
}

const LINE_BREAK = /[\r\n]/;
const LINE_BREAKS = /[\r\n]/g;

/** JSON text of a chunk's data as the stream sends it (undefined as null, bigint as a string). */
export function toJson(data: unknown): string {
  try {
    // Plain JSON first: a replacer function costs a call per value, and only a bigint needs one.
    return JSON.stringify(data === undefined ? null : data);
  } catch {
    try {
      return JSON.stringify(data, (_key, value) => (typeof value === "bigint" ? value.toString() : value));
    } catch (error) {
      // Structured-cloneable but not JSON (a cycle): say so rather than break the stream.
      return JSON.stringify({ unserializable: describe(error, "not JSON-serializable") });
    }
  }
}

/** The class a client rebuilds from each code the route answers with (`ErrorBody.name`). */
const ERROR_CLASSES: Record<string, string> = {
  fiber_not_found: "FiberNotFoundError",
  invalid_id: "InvalidInputError",
  invalid_argument: "InvalidInputError",
  route_not_found: "FiberlineError",
};

/** A JSON error response. */
export function errorResponse(
  status: number,
  code: string,
  message: string,
  extra?: Record<string, string>,
): Response {
  const body: ErrorBody = { error: { code, message, name: ERROR_CLASSES[code] ?? "FiberlineError" } };
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      [HOST_HEADER]: "1",
      ...extra,
    },
  });
}

function describe(error: unknown, fallback: string): string {
  return serializeError(error).message || fallback;
}
