/**
 * The worker's end of the port stream (see `PortStreamApi` in `protocol.ts`): a fiber's events
 * pushed over a MessagePort, pinged so both sides notice when the other is gone (Chromium fires
 * no `close` event on a port whose peer died). Used by the host when a page's fetch cannot reach it.
 */

import { serializeError } from "../core/errors";
import { type FiberRecord, pastTheEnd } from "../core/records";
import type { Runtime } from "../core/runtime";
import { toJson } from "./event-route";
import { type PortStreamMessage, type PortStreamReply, STREAM_PING_MS } from "./protocol";

/**
 * Pushes the events of fiber `id` after `after` to `port` until `fiber.end`, an error, a `close`
 * from the page, or three ping periods without a word from the page; only `ended` when `record`
 * (the fiber as the caller read it) ended and the cursor is at its end.
 */
export function pumpEvents(
  runtime: Runtime,
  record: FiberRecord,
  after: number,
  port: MessagePort,
  pingMs = STREAM_PING_MS,
): void {
  const { id } = record;
  const abort = new AbortController();
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
      for await (const ev of runtime.events(id, { after, signal: abort.signal })) {
        post({ type: "chunk", seq: ev.seq, event: ev.type, at: ev.at, data: toJson(ev.data) });
      }
      if (!abort.signal.aborted) post({ type: "end" });
    } catch (error) {
      if (!abort.signal.aborted) post({ type: "error", error: serializeError(error) });
    } finally {
      clearInterval(pinger);
      port.close();
    }
  })();
}
