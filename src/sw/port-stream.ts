/**
 * The worker's end of the port stream (see `PortStreamApi` in `protocol.ts`): a fiber's events
 * pushed over a MessagePort, pinged so both sides notice when the other is gone (Chromium fires
 * no `close` event on a port whose peer died). Used by the host when a page's fetch cannot reach it.
 */

import type { FiberName, StreamItem } from "../client/event-reader";
import { FiberNotFoundError, serializeError } from "../core/errors";
import type { Runtime } from "../core/runtime";
import { fiberChunks, streamItemMessage } from "./fiber-chunks";
import { type PortStreamMessage, type PortStreamReply, STREAM_PING_MS } from "./protocol";
import { chunkCost, StreamCredit } from "./stream-credit";

/**
 * Opens the stream of fiber `id` after `after` for `port`: the record and the first chunks in one
 * read of storage ({@link fiberChunks}), so the fiber the port names (its `createdAt`) is the one
 * whose chunks it sends, even when the fiber is collected and started again meanwhile.
 * Throws `FiberNotFoundError` when there is no such fiber, or (with `created`) when it is
 * another fiber than the one the page read; then pushes as {@link pumpEvents}.
 */
export async function openPortStream(
  runtime: Runtime,
  id: string,
  after: number,
  port: MessagePort,
  created?: number,
  options: { pingMs?: number; window?: number } = {},
): Promise<void> {
  const abort = new AbortController();
  const items = fiberChunks(runtime, id, after, abort.signal);
  const name = (await items.next()).value as FiberName; // `fiberChunks` names the fiber first, or throws
  if (created !== undefined && name.created !== created) {
    await items.return(undefined);
    throw new FiberNotFoundError(id);
  }
  try {
    pumpEvents(name.created, items, port, abort, options.pingMs, new StreamCredit(options.window));
  } catch (error) {
    await items.return(undefined); // the port refused to be used: release the subscription
    throw error;
  }
}

/**
 * Pushes `items` (what {@link fiberChunks} yields after the fiber's name `created`) to `port` until
 * `fiber.end`, an error, a `close` from the page, or three ping periods without a word from the
 * page (which abort `abort`, the items' signal); a chunk only once `credit` allows it (a page
 * that stops reading stops the pump, and with it the reading of the fiber's chunks).
 */
function pumpEvents(
  created: number,
  items: AsyncGenerator<StreamItem>,
  port: MessagePort,
  abort: AbortController,
  pingMs = STREAM_PING_MS,
  credit: StreamCredit,
): void {
  let lastHeard = Date.now();
  const post = (message: PortStreamMessage) => port.postMessage(message);
  port.addEventListener("message", (event: MessageEvent<PortStreamReply>) => {
    lastHeard = Date.now();
    if (event.data?.type === "close") abort.abort();
    else if (event.data?.type === "credit" && Number.isFinite(event.data.cost)) credit.grant(event.data.cost);
  });
  port.start();
  const pinger = setInterval(() => {
    if (Date.now() - lastHeard > pingMs * 3)
      abort.abort(); // the page is gone
    else post({ type: "ping" });
  }, pingMs);
  void (async () => {
    try {
      post({ type: "opened", created });
      // At the end of an ended fiber, `ended` (as the route's 204) and nothing after it: a bare
      // `end` would read as a stream cut short, and the page would retry it until its deadline.
      let ended = false;
      for await (const item of items) {
        ended = item === "ended";
        const message = streamItemMessage(item);
        if (message.type === "chunk") await credit.reserve(chunkCost(message.data), abort.signal);
        if (abort.signal.aborted) break;
        post(message);
      }
      if (!ended && !abort.signal.aborted) post({ type: "end" });
    } catch (error) {
      if (!abort.signal.aborted) post({ type: "error", error: serializeError(error) });
    } finally {
      clearInterval(pinger);
      await items.return(undefined); // releases the fiber's subscription when the loop never ran
      port.close();
    }
  })();
}
