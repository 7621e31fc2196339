/**
 * The pure state of `useFiberEvents`: one fiber's chunks, appended only in seq order, so a chunk
 * delivered twice (React StrictMode runs effects twice; a reconnect may overlap) is kept once.
 */

import type { FiberEvent } from "../core/records";

/** Where a hook's stream is. */
export type StreamStatus = "idle" | "connecting" | "streaming" | "ended" | "error";

/** The chunks of one fiber as a hook holds them. */
export interface EventLog {
  /** The fiber these chunks belong to (`null` before any). */
  id: string | null;
  /** The cursor the log started after. */
  after: number;
  events: readonly FiberEvent[];
  status: StreamStatus;
  error: unknown;
}

/** What changes an `EventLog`. */
export type EventLogAction =
  | { type: "reset"; id: string | null; after: number }
  | { type: "connecting"; id: string }
  | { type: "events"; id: string; events: readonly FiberEvent[] }
  | { type: "ended"; id: string }
  | { type: "failed"; id: string; error: unknown };

/** An empty log for `id`, starting after `after`. */
export function emptyLog(id: string | null, after = 0): EventLog {
  return { id, after, events: [], status: "idle", error: undefined };
}

/** The last seq the log holds (its resume cursor). */
export function lastSeq(log: EventLog): number {
  return log.events.at(-1)?.seq ?? log.after;
}

/**
 * Applies `action`; actions for another fiber than the log's are ignored (a late chunk from a
 * reader of the previous id). Chunks at or below the cursor are dropped, and so is any chunk that
 * would leave a gap, so the log is always `after + 1, after + 2, ...` with no repeats.
 */
export function eventLogReducer(log: EventLog, action: EventLogAction): EventLog {
  if (action.type === "reset") return emptyLog(action.id, action.after);
  if (action.id !== log.id) return log;
  switch (action.type) {
    case "connecting":
      return log.status === "ended" ? log : { ...log, status: "connecting", error: undefined };
    case "events": {
      let cursor = lastSeq(log);
      const fresh: FiberEvent[] = [];
      for (const event of action.events) {
        if (event.seq !== cursor + 1) continue;
        fresh.push(event);
        cursor = event.seq;
      }
      if (fresh.length === 0) return log;
      const ended = fresh.at(-1)?.type === "fiber.end";
      return {
        ...log,
        events: [...log.events, ...fresh],
        status: ended ? "ended" : "streaming",
        error: undefined,
      };
    }
    case "ended":
      return { ...log, status: "ended" };
    case "failed":
      return log.status === "ended" ? log : { ...log, status: "error", error: action.error };
  }
}
