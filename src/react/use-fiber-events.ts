/**
 * `useFiberEvents`: a fiber's stream as React state, resumed after the last seq it holds whenever
 * the reader restarts (React StrictMode's double effects, a new client), never holding a chunk twice.
 */

import { useEffect, useReducer, useRef } from "react";
import type { FiberEvent } from "../core/records";
import { useFiberlineConnection } from "./context";
import { emptyLog, eventLogReducer, lastSeq, type StreamStatus } from "./event-log";

/** Options of {@link useFiberEvents}. */
export interface UseFiberEventsOptions {
  /** Hold chunks with `seq > after` (default 0: the whole stream). */
  after?: number;
}

/** What {@link useFiberEvents} returns. */
export interface FiberEventsState {
  /** The chunks so far, seq `after + 1, after + 2, ...`, each once. */
  events: readonly FiberEvent[];
  /**
   * `idle` (no id, or the client is still connecting), `connecting`, `streaming`, `ended` (saw
   * `fiber.end`), `error` (reading stopped, or the provider could not connect).
   */
  status: StreamStatus;
  /** Why reading stopped, when `status` is `error` (e.g. `FiberNotFoundError`, or the provider's connect error). */
  error: unknown;
  /** The last seq held: where a reader resumes. */
  lastSeq: number;
}

/**
 * Reads fiber `id`'s stream into state. Suspend-free; the reader stops on unmount or when `id`
 * changes; a remount (StrictMode) resumes after the last seq held.
 *
 * @example
 * const { events, status } = useFiberEvents(fiberId);
 * return events.filter((e) => e.type === "text.delta").map((e) => <span key={e.seq}>{e.data.text}</span>);
 */
export function useFiberEvents(
  id: string | null | undefined,
  options: UseFiberEventsOptions = {},
): FiberEventsState {
  const { client, error: connectError } = useFiberlineConnection();
  const after = options.after ?? 0;
  const [log, dispatch] = useReducer(eventLogReducer, emptyLog(id ?? null, after));
  // Survives StrictMode's unmount/remount, so the second reader resumes where the first stopped.
  const cursor = useRef({ id: id ?? null, seq: after });

  useEffect(() => {
    const fiberId = id ?? null;
    if (cursor.current.id !== fiberId) {
      cursor.current = { id: fiberId, seq: after };
      dispatch({ type: "reset", id: fiberId, after });
    }
    if (!client || fiberId === null) return;
    const abort = new AbortController();
    dispatch({ type: "connecting", id: fiberId });
    void (async () => {
      try {
        for await (const event of client.events(fiberId, {
          after: cursor.current.seq,
          signal: abort.signal,
        })) {
          if (cursor.current.id === fiberId && event.seq > cursor.current.seq) cursor.current.seq = event.seq;
          dispatch({ type: "events", id: fiberId, events: [event] });
        }
        dispatch({ type: "ended", id: fiberId });
      } catch (error) {
        if (!abort.signal.aborted) dispatch({ type: "failed", id: fiberId, error });
      }
    })();
    return () => abort.abort();
  }, [client, id, after]);

  const current = log.id === (id ?? null) ? log : emptyLog(id ?? null, after);
  if (!client && connectError !== undefined && id !== null && id !== undefined) {
    // The provider gave up connecting: nothing will ever stream.
    return { events: current.events, status: "error", error: connectError, lastSeq: lastSeq(current) };
  }
  return { events: current.events, status: current.status, error: current.error, lastSeq: lastSeq(current) };
}
