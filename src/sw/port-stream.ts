/**
 * The worker's end of the port stream (see `PortStreamApi` in `protocol.ts`): a fiber's events
 * pushed over a MessagePort, pinged so both sides notice when the other is gone (Chromium fires
 * no `close` event on a port whose peer died). Used by the host when a page's fetch cannot reach it.
 */

import { FiberNotFoundError, serializeError } from "../core/errors";
import { type FiberRecord, pastTheEnd } from "../core/records";
import type { Runtime } from "../core/runtime";
import type { OpenedEventBatches } from "../core/runtime-types";
import { toJson } from "./event-route";
import { type PortStreamMessage, type PortStreamReply, STREAM_PING_MS } from "./protocol";

/**
 * Opens the stream of fiber `id` after `after` for `port`: the record and the first chunks in one
 * read of storage, as the event route does, so the fiber the port names (its `createdAt`) is the
 * one whose chunks it sends, even when the fiber is collected and started again meanwhile.
 * Throws `FiberNotFoundError` when there is no such fiber, or (with `created`) when it is
 * another fiber than the one the page read; then pushes as {@link pumpEvents}.
 */
export async function openPortStream(
  runtime: Runtime,
  id: string,
  after: number,
  port: MessagePort,
  created?: number,
  pingMs = STREAM_PING_MS,
): Promise<void> {
  const abort = new AbortController();
  const opened = await runtime.openEventBatches(id, { after, signal: abort.signal });
  const { record } = opened;
  if (record === undefined || (created !== undefined && record.createdAt !== created)) {
    opened.close();
    throw new FiberNotFoundError(id);
  }
  pumpEvents(record, opened, after, port, abort, pingMs);
}

/**
 * Pushes `batches` (the events of `record`'s fiber after `after`) to `port` until `fiber.end`,
 * an error, a `close` from the page, or three ping periods without a word from the page (which
 * abort `abort`, the batches' signal); only `ended` when `record` ended and the cursor is at its end.
 */
export function pumpEvents(
  record: FiberRecord,
  opened: Pick<OpenedEventBatches, "batches" | "close">,
  after: number,
  port: MessagePort,
  abort: AbortController,
  pingMs = STREAM_PING_MS,
): void {
  let lastHeard = Date.now();
  const post = (message: PortStreamMessage) => port.postMessage(message);
  port.addEventListener("message", (event: MessageEvent<PortStreamReply>) => {
    lastHeard = Date.now();
    if (event.data?.type === "close") abort.abort();
  });
  port.start();
  const pinger = setInterval(() => {
    if (Date.now() - lastHeard > pingMs * 3)
      abort.abort(); // the page is gone
    else post({ type: "ping" });
  }, pingMs);
  void (async () => {
    try {
      post({ type: "opened", created: record.createdAt });
      // At the end of an ended fiber: say so, as the route's 204 does (a bare `end` would read
      // as a stream cut short, and the page would retry it until its deadline).
      if (pastTheEnd(record, after)) {
        post({ type: "ended" });
        return;
      }
      for await (const batch of opened.batches)
        for (const ev of batch)
          post({ type: "chunk", seq: ev.seq, event: ev.type, at: ev.at, data: toJson(ev.data) });
      if (!abort.signal.aborted) post({ type: "end" });
    } catch (error) {
      if (!abort.signal.aborted) post({ type: "error", error: serializeError(error) });
    } finally {
      clearInterval(pinger);
      opened.close(); // the batches' own end releases it too; unread (at the end), only this does
      port.close();
    }
  })();
}
