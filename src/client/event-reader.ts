/**
 * The page's resumable reader of a fiber's event stream: `fetch` + the SSE parser of
 * `src/core/sse.ts`, reconnecting with `after = last seq seen` whenever the stream breaks (the
 * worker stopped, restarted or was replaced). Not `EventSource`: Chromium does not pass
 * `Last-Event-ID` to a Service Worker and does not reconnect after the worker stops.
 */

import {
  ConnectionError,
  deserializeError,
  FiberlineError,
  FiberNotFoundError,
  InvalidInputError,
  StoreError,
} from "../core/errors";
import type { FiberEvent } from "../core/records";
import { sleep } from "../core/sleep";
import { readSse } from "../core/sse";
import {
  AT_FIELD,
  CREATED_HEADER,
  type ErrorBody,
  EVENT_STREAM_TYPE,
  eventsUrl,
  HOST_HEADER,
} from "../sw/protocol";

/** Options of {@link readFiberEvents}. */
export interface EventReaderOptions {
  /** The host's route prefix. */
  prefix: string;
  /** Yield chunks with `seq > after` (default 0: the whole stream). */
  after?: number;
  /**
   * The fiber this reader continues, by its `createdAt` (from `onCreated` of the reader before a
   * reload, kept with `after`; or `FiberRecord.createdAt`): a fiber collected and started again
   * under the same id since is refused with `FiberNotFoundError` instead of read on from `after`.
   * Without it the reader pins the fiber the host names in its first answer.
   */
  created?: number;
  /** Told the `createdAt` of the fiber read, once the host names it: keep it with your cursor. */
  onCreated?(created: number): void;
  /** Stops reading; the iterator then throws the signal's reason. */
  signal?: AbortSignal;
  /** The fetch to use (default `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Delay before the first reconnect (default 100 ms); doubles per failure, with jitter. */
  initialDelayMs?: number;
  /** Largest delay between reconnects (default 2 s). */
  maxDelayMs?: number;
  /** Failed attempts in a row, with no chunk in between, before giving up (default 30). */
  maxAttempts?: number;
  /**
   * A connection that delivers nothing at all (not even the host's keep-alive comments, sent
   * every 15 s) for this long is taken for dead and replaced, resuming after the last seq
   * (default 45 s; 0 turns it off).
   */
  idleTimeoutMs?: number;
  /** Told about every reconnect (for logs and tests). */
  onReconnect?(info: { attempt: number; after: number; error: unknown }): void;
  /** Awaited before retrying a response that did not come from the host (the page is not controlled yet). */
  waitForHost?(): Promise<void>;
  /**
   * Another way to the host, used for an attempt whose `fetch` was not answered by it: the port
   * stream over the control channel (`FiberlineClient` passes it). Chunks carry data as JSON text.
   * An attempt that yields nothing within `idleTimeoutMs` is replaced, and counts toward
   * `maxAttempts` as any attempt the host did not answer.
   */
  fallback?(id: string, after: number, signal: AbortSignal, created?: number): AsyncIterable<StreamItem>;
  /**
   * Reads every attempt from this source instead of `fetch` (the extension client's stream
   * ports). It ends after the last chunk it has, yields "ended" when the fiber ended and the
   * cursor is at its end (as the route's 204), and throws a `ConnectionError` when the host went
   * away (retried from the cursor) or the host's error (thrown at once).
   */
  transport?(id: string, after: number, signal: AbortSignal): AsyncIterable<StreamItem>;
}

/** How long a connection may deliver nothing before it is replaced, unless the options say. */
export const DEFAULT_IDLE_TIMEOUT_MS = 45_000;

/**
 * `body`, passed through, with a watchdog: when a read waits `ms` for bytes, `attempt` is aborted
 * with a `ConnectionError`, which the reader answers by reconnecting from its cursor. A half-open
 * connection (a proxy that went away, a laptop that slept) otherwise waits forever. Only a read
 * in progress is timed: a consumer that takes its time between chunks is not a dead connection.
 */
function watchIdle(
  body: ReadableStream<Uint8Array>,
  ms: number,
  attempt: AbortController,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const error = new ConnectionError(
        "deadline_exceeded",
        `The event stream delivered nothing for ${ms} ms (not even a keep-alive); reconnecting.`,
      );
      attempt.abort(error);
      reader.cancel(error).catch(() => {});
    }, ms);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        arm();
        try {
          const next = await reader.read();
          clearTimeout(timer);
          if (next.done) {
            controller.close();
            return;
          }
          controller.enqueue(next.value);
        } catch (error) {
          clearTimeout(timer);
          controller.error(attempt.signal.aborted ? attempt.signal.reason : error);
        }
      },
      cancel(reason) {
        clearTimeout(timer);
        return reader.cancel(reason);
      },
    },
    // Pull only when the consumer asks: a read ahead of it would run the watchdog meanwhile.
    { highWaterMark: 0 },
  );
}

/**
 * What a transport says first: which fiber it reads (its `createdAt`, as the route's
 * `CREATED_HEADER`). The reader refuses a later attempt that names another fiber.
 */
export interface FiberName {
  created: number;
}

/** What a transport yields: chunks, "ended" (the fiber ended at the cursor), or the fiber's name. */
export type StreamItem = RawChunk | "ended" | FiberName;

/** A chunk before parsing, from either transport. */
export interface RawChunk {
  seq: number;
  event: string;
  /** JSON text. */
  data: string;
  at: number;
}

/**
 * Reads a fiber's stream from `after`: every chunk exactly once, in order, ending after
 * `fiber.end`, across any number of broken connections.
 *
 * Failure semantics: network errors, a stopped or replaced worker, a stream cut before
 * `fiber.end` and 5xx answers are retried from the last seq yielded, with exponential backoff
 * capped at `maxDelayMs`; after `maxAttempts` failures in a row it throws `ConnectionError`
 * `deadline_exceeded` with the last failure as `cause`. An unknown fiber throws
 * `FiberNotFoundError` and a malformed id or cursor `InvalidInputError`, at once. Aborting
 * `signal` throws its reason. Data arrives as JSON (see the route in `protocol.ts`). When a
 * fetch is answered by something else than the host (an uncontrolled page, or Chromium routing
 * the page's requests around a newly activated worker), that attempt uses `fallback`.
 *
 * @example
 * for await (const ev of readFiberEvents(id, { prefix: "/__fiberline", after: lastSeq })) render(ev);
 */
export async function* readFiberEvents(id: string, options: EventReaderOptions): AsyncGenerator<FiberEvent> {
  const { signal, prefix } = options;
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const initialDelay = options.initialDelayMs ?? 100;
  const maxDelay = options.maxDelayMs ?? 2_000;
  const maxAttempts = options.maxAttempts ?? 30;
  let cursor = options.after ?? 0;
  if (!Number.isSafeInteger(cursor) || cursor < 0) {
    throw new InvalidInputError(
      "invalid_argument",
      `events(id, { after }) needs an integer >= 0, got ${cursor}.`,
    );
  }
  // Which fiber this reader reads (`CREATED_HEADER`), from the first answer that says: every
  // reconnect sends it back, so that a fiber collected and started again under the same id
  // while the reader was away is refused (`fiber_not_found`), not read on from the cursor.
  let created: number | undefined = options.created;
  if (created !== undefined && !Number.isFinite(created)) {
    throw new InvalidInputError(
      "invalid_argument",
      `events(id, { created }) needs the fiber's createdAt (a number), got ${String(created)}.`,
    );
  }
  let told = false;
  /** Pins the fiber the host named (the one `created` named, if given), and tells the caller once. */
  const pin = (named: number): void => {
    created = named;
    if (told) return;
    told = true;
    options.onCreated?.(named);
  };
  /**
   * One attempt over `fetch`: the chunks (`host`: the Service Worker's own answer, its headers
   * already in), the failure to retry after, or "ended" (HTTP 204).
   */
  const fetchChunks = async (
    fiberId: string,
    after: number,
    attempt: AbortController,
  ): Promise<Answer | Error | "ended"> => {
    // The answer's headers are held to the same deadline as its body's silences: a route that
    // never answers (a stuck read in the worker) is replaced like a half-open connection.
    const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    const unanswered =
      idleMs > 0
        ? setTimeout(
            () =>
              attempt.abort(
                new ConnectionError(
                  "deadline_exceeded",
                  `The event route did not answer within ${idleMs} ms.`,
                ),
              ),
            idleMs,
          )
        : undefined;
    let response: Response;
    try {
      response = await doFetch(eventsUrl(prefix, fiberId, after, created), {
        headers: { accept: EVENT_STREAM_TYPE },
        cache: "no-store",
        signal: attempt.signal,
      });
    } finally {
      clearTimeout(unanswered);
    }
    if (response.headers.get(HOST_HEADER) !== "1") {
      await response.body?.cancel().catch(() => {});
      if (options.fallback)
        return {
          items: answeredWithin(options.fallback(fiberId, after, attempt.signal, created), idleMs, attempt),
        };
      await options.waitForHost?.();
      return new ConnectionError(
        "protocol_error",
        `${eventsUrl(prefix, fiberId)} was not answered by the Fiberline Service Worker (HTTP ${response.status}): the page is not controlled by it (a hard reload bypasses Service Workers) or the prefix differs from createServiceWorkerHost()'s.`,
      );
    }
    // The fiber ended and the cursor is at (or past) its end: nothing more will come.
    if (response.status === 204) return "ended";
    if (!response.ok) {
      const error = await errorFromResponse(response, fiberId);
      if (response.status < 500) throw error;
      return error;
    }
    const named = Number(response.headers.get(CREATED_HEADER) ?? Number.NaN);
    if (Number.isFinite(named)) {
      if (created !== undefined && named !== created) {
        // A host that does not check the parameter itself.
        await response.body?.cancel().catch(() => {});
        throw new FiberNotFoundError(fiberId);
      }
      pin(named);
    }
    if (!response.body)
      return new ConnectionError("protocol_error", "The event stream response has no body.");
    const body = idleMs > 0 ? watchIdle(response.body, idleMs, attempt) : response.body;
    return { items: sseChunks(body, attempt.signal), host: true };
  };
  let failures = 0;
  for (;;) {
    signal?.throwIfAborted();
    const attempt = new AbortController();
    const stop = () => attempt.abort(signal?.reason);
    signal?.addEventListener("abort", stop, { once: true });
    let failure: unknown;
    // When the host answered this attempt: a connection it kept a while and then lost (a worker
    // stopped while its fiber waits quietly) is not a failure to reach it.
    let answeredAt: number | undefined;
    try {
      const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
      const answer = options.transport
        ? { items: answeredWithin(options.transport(id, cursor, attempt.signal), idleMs, attempt) }
        : await fetchChunks(id, cursor, attempt);
      if (answer === "ended") return;
      if (answer instanceof Error) failure = answer;
      else {
        // The route answered with its headers; a transport or a fallback, with its first item.
        if (answer.host) answeredAt = Date.now();
        for await (const chunk of answer.items) {
          // What a transport handed over in one batch is not the reader's any more once it aborts.
          signal?.throwIfAborted();
          answeredAt ??= Date.now();
          if (chunk === "ended") return;
          if ("created" in chunk) {
            // Another fiber under this id than the one read so far: it was collected and started again.
            if (created !== undefined && chunk.created !== created) throw new FiberNotFoundError(id);
            pin(chunk.created);
            continue;
          }
          const { seq } = chunk;
          if (!Number.isSafeInteger(seq) || seq <= cursor) continue; // seen already: never yield twice
          if (seq !== cursor + 1) {
            failure = new ConnectionError(
              "protocol_error",
              `The stream jumped from seq ${cursor} to ${seq}.`,
            );
            break; // reconnect from the cursor to fill the gap
          }
          cursor = seq;
          failures = 0;
          const event: FiberEvent = { seq, type: chunk.event, data: parseData(chunk.data), at: chunk.at };
          yield event;
          if (event.type === "fiber.end") return;
        }
        failure ??= new ConnectionError(
          "protocol_error",
          `The stream closed after seq ${cursor}, before fiber.end.`,
        );
      }
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      // A host's storage failing (its own message says retry) is retried, as the route's 500 is.
      const retried = error instanceof ConnectionError || error instanceof StoreError;
      if (error instanceof FiberlineError && !retried) throw error;
      failure = error; // a network error: the worker stopped or restarted mid-stream
    } finally {
      signal?.removeEventListener("abort", stop);
      attempt.abort();
    }
    if (answeredAt !== undefined && Date.now() - answeredAt >= maxDelay) failures = 0;
    failures++;
    if (failures >= maxAttempts) {
      throw new ConnectionError(
        "deadline_exceeded",
        `Gave up reading the events of fiber ${id} after ${failures} failed attempts in a row (last seq seen: ${cursor}): ${describe(failure)}`,
        { cause: failure },
      );
    }
    options.onReconnect?.({ attempt: failures, after: cursor, error: failure });
    await sleep(backoff(failures, initialDelay, maxDelay), signal);
  }
}

/** One attempt's chunks; `host` when the Service Worker's route answered (not a fallback). */
interface Answer {
  items: AsyncIterable<StreamItem>;
  host?: boolean;
}

/**
 * `source`, passed through, with a deadline on its first item: a transport whose host never
 * answers (a stuck read in the worker, a leader tab that dropped the request) aborts `attempt`
 * with a `ConnectionError` after `ms`, which the reader answers by reconnecting (0: no deadline).
 */
async function* answeredWithin<T>(
  source: AsyncIterable<T>,
  ms: number,
  attempt: AbortController,
): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const unanswered = new Promise<never>((_, reject) => {
      if (!(ms > 0)) return;
      timer = setTimeout(() => {
        const error = new ConnectionError(
          "deadline_exceeded",
          `The host did not answer the stream within ${ms} ms.`,
        );
        attempt.abort(error);
        reject(error);
      }, ms);
    });
    const first = await Promise.race([iterator.next(), unanswered]);
    clearTimeout(timer);
    if (first.done) return;
    yield first.value;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  } finally {
    clearTimeout(timer);
    // The attempt's signal, aborted by the caller after each attempt, ends a pending read first.
    void iterator.return?.()?.catch(() => {});
  }
}

/** The chunks of an SSE body. */
async function* sseChunks(body: ReadableStream<Uint8Array>, signal: AbortSignal): AsyncGenerator<RawChunk> {
  for await (const message of readSse(body, signal, { fields: [AT_FIELD] })) {
    yield {
      seq: Number(message.id),
      event: message.event,
      data: message.data,
      at: parseAt(message.fields?.[AT_FIELD]),
    };
  }
}

/** The typed error of a non-2xx answer of the route. */
async function errorFromResponse(response: Response, id: string): Promise<Error> {
  const body = (await response.json().catch(() => null)) as ErrorBody | null;
  const code = body?.error?.code;
  const message = body?.error?.message ?? `The event stream of ${id} answered HTTP ${response.status}.`;
  if (code === "fiber_not_found") return deserializeError({ name: "FiberNotFoundError", message, code });
  if (response.status === 404) return new FiberNotFoundError(id);
  if (response.status === 400 || response.status === 405)
    return new InvalidInputError(code ?? "invalid_argument", message);
  return new ConnectionError(code ?? "protocol_error", message);
}

function parseData(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function parseAt(raw: string | undefined): number {
  const at = Number(raw);
  // A host that sends no time: the time of receipt is the best estimate.
  return raw !== undefined && Number.isFinite(at) ? at : Date.now();
}

function backoff(failures: number, initial: number, max: number): number {
  const base = Math.min(max, initial * 2 ** (failures - 1));
  return Math.round(base / 2 + (Math.random() * base) / 2);
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
