/**
 * A fiber's stream after a cursor, straight from a runtime, in the shape the client's resumable
 * reader takes as a `transport` (`RawChunk`s, or "ended"): what the leader tab reads for itself
 * and pushes to the other tabs, and what the port stream and the extension's stream port push.
 */

import type { StreamItem } from "../client/event-reader";
import { FiberNotFoundError } from "../core/errors";
import { pastTheEnd } from "../core/records";
import type { Runtime } from "../core/runtime";
import { assertValidId } from "../core/validate";
import { toJson } from "./event-route";

/**
 * The chunks of fiber `id` with `seq > after`, replay then live, ending after `fiber.end`; only
 * "ended" when the fiber ended and `after` is at its end (the event route's 204). First of all,
 * the fiber's name (`{ created }`).
 *
 * Failure semantics: a malformed id throws `InvalidInputError` (`invalid_id`), a malformed cursor
 * `invalid_argument`, an unknown fiber `FiberNotFoundError`, all before anything is yielded; a
 * closed runtime or a failing store throws its error (the reader retries from its cursor).
 */
export async function* fiberChunks(
  runtime: Runtime,
  id: string,
  after: number,
  signal: AbortSignal,
): AsyncGenerator<StreamItem> {
  assertValidId(id);
  // The record and the first chunks in one read: the fiber named is the one whose chunks follow,
  // even when it is collected and started again meanwhile.
  const opened = await runtime.openEventBatches(id, { after, signal });
  try {
    const { record } = opened;
    if (!record) throw new FiberNotFoundError(id);
    // Which fiber this is: a reader refuses another one that took the id since (`FiberName`).
    yield { created: record.createdAt };
    if (pastTheEnd(record, after)) {
      yield "ended";
      return;
    }
    for await (const batch of opened.batches)
      for (const ev of batch) yield { seq: ev.seq, event: ev.type, at: ev.at, data: toJson(ev.data) };
  } finally {
    opened.close(); // the batches' own end releases it too; unread, only this does
  }
}

/** What the port stream and the extension's stream port post for one item of {@link fiberChunks}. */
export type StreamItemMessage =
  | { type: "opened"; created: number }
  | { type: "chunk"; seq: number; event: string; at: number; data: string }
  | { type: "ended" };

/** `item` as the message the port stream and the extension's stream port post for it. */
export function streamItemMessage(item: StreamItem): StreamItemMessage {
  if (item === "ended") return { type: "ended" };
  if ("created" in item) return { type: "opened", created: item.created };
  return { type: "chunk", seq: item.seq, event: item.event, at: item.at, data: item.data };
}
