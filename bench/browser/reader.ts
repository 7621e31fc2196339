/**
 * The page's reader of a fiber's event stream through the Service Worker: `fiberline/client`'s
 * `readFiberEvents` (fetch + SSE, reconnecting with `after = last seq seen` and its own backoff),
 * instrumented to record when each connection starts, when each failure is noticed and when
 * each chunk arrives, which is what B3, B4 and B5 measure.
 */

import { readFiberEvents } from "../../src/client/index";
import { now } from "./clock";

/** One chunk as the page received it. */
export interface Received {
  seq: number;
  type: string;
  data: { i?: number; t?: number } | null;
  /** Absolute arrival time (ms, sub-ms precision). */
  at: number;
  /** Index of the connection that delivered it (0 = first). */
  connection: number;
}

export interface ReadOptions {
  after?: number;
  /** Where the stream is served (default `/__fiberline`, the host's routes). */
  prefix?: string;
  /** Called for each chunk; return true to stop reading. */
  onChunk?(chunk: Received): boolean | undefined;
  signal?: AbortSignal;
}

/** What a read did. */
export interface ReadLog {
  chunks: Received[];
  /** Absolute start time of each connection attempt (each `fetch` of the stream). */
  connects: number[];
  /** Absolute time each broken connection was noticed. */
  failures: number[];
  lastSeq: number;
}

/** Reads `id`'s stream until `fiber.end`, `onChunk` says stop, or `signal` aborts. */
export async function readStream(id: string, options: ReadOptions = {}): Promise<ReadLog> {
  const log: ReadLog = { chunks: [], connects: [], failures: [], lastSeq: options.after ?? 0 };
  const timedFetch: typeof fetch = (input, init) => {
    log.connects.push(now());
    return fetch(input, init);
  };
  const events = readFiberEvents(id, {
    prefix: options.prefix ?? "/__fiberline",
    after: log.lastSeq,
    fetch: timedFetch,
    onReconnect: () => {
      log.failures.push(now());
    },
    ...(options.signal ? { signal: options.signal } : {}),
  });
  try {
    for await (const event of events) {
      const chunk: Received = {
        seq: event.seq,
        type: event.type,
        data: event.data as Received["data"],
        at: now(),
        connection: log.connects.length - 1,
      };
      log.lastSeq = chunk.seq;
      log.chunks.push(chunk);
      if (options.onChunk?.(chunk) === true) break;
    }
  } catch (error) {
    if (!options.signal?.aborted) throw error;
  }
  return log;
}
