/**
 * The page's reader of a fiber's event stream through the Service Worker: `fetch` the SSE route
 * from `after`, and on a network error (the worker stopped, the browser restarted it)
 * reconnect at once with `after = last seq seen`, as `fiberline/client` does. It records when each
 * connection starts and when each chunk arrives, which is what B3, B4 and B5 measure.
 */

import { readSse } from "../../src/core/sse";
import { now } from "./fibers";

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
  /** Called for each chunk; return true to stop reading. */
  onChunk?(chunk: Received): boolean | undefined;
  signal?: AbortSignal;
}

/** What a read did. */
export interface ReadLog {
  chunks: Received[];
  /** Absolute start time of each connection attempt. */
  connects: number[];
  /** Absolute time each connection failed. */
  failures: number[];
  lastSeq: number;
}

/** Reads `id`'s stream until `fiber.end`, `onChunk` says stop, or `signal` aborts. */
export async function readStream(id: string, options: ReadOptions = {}): Promise<ReadLog> {
  const log: ReadLog = { chunks: [], connects: [], failures: [], lastSeq: options.after ?? 0 };
  for (;;) {
    if (options.signal?.aborted) return log;
    const connection = log.connects.length;
    log.connects.push(now());
    try {
      const response = await fetch(
        `/__fiberline/fibers/${encodeURIComponent(id)}/events?after=${log.lastSeq}`,
        {
          headers: { accept: "text/event-stream" },
          signal: options.signal ?? null,
        },
      );
      if (!response.ok || !response.body) {
        const from = response.headers.has("x-fiberline")
          ? "the Service Worker"
          : "the network (no Service Worker)";
        throw new Error(`stream answered ${response.status} from ${from}: ${await response.text()}`);
      }
      for await (const message of readSse(response.body, options.signal)) {
        const chunk: Received = {
          seq: Number(message.id),
          type: message.event,
          data: JSON.parse(message.data),
          at: now(),
          connection,
        };
        if (chunk.seq <= log.lastSeq) continue;
        log.lastSeq = chunk.seq;
        log.chunks.push(chunk);
        if (options.onChunk?.(chunk) === true || chunk.type === "fiber.end") return log;
      }
    } catch (error) {
      if (options.signal?.aborted) return log;
      if (!(error instanceof TypeError)) throw error;
      // A network error: the worker was stopped. Reconnect at once from the last seq.
      log.failures.push(now());
    }
  }
}
