/**
 * The worker's end of a stream port (see `protocol.ts`): pushes a fiber's events after a cursor
 * to an extension page over a `chrome.runtime` port, replay first, then live, until `fiber.end`.
 * Used by the extension host; the page's end is `readExtensionStream` in `fiberline/client`.
 */

import { FiberNotFoundError, InvalidInputError, serializeError } from "../core/errors";
import type { Runtime } from "../core/runtime";
import { fiberChunks, streamItemMessage } from "../sw/fiber-chunks";
import { chunkCost, StreamCredit } from "../sw/stream-credit";
import type { ChromePort } from "./chrome-types";
import { isStreamCredit, isStreamRequest, type StreamReply } from "./protocol";

/**
 * Serves one stream port: waits for its `subscribe`, then pumps the fiber's chunks.
 *
 * Failure semantics: an unknown fiber, a malformed id or cursor is answered with an `error`
 * reply (`fiber_not_found`, `invalid_id`, `invalid_argument`) that the page rethrows with its
 * class. The page disconnecting stops the pump. When the worker stops mid-stream, Chrome
 * disconnects the port and the page resumes from its last seq on a new port.
 */
export function serveStreamPort(runtime: Runtime, port: ChromePort, onError: (error: unknown) => void): void {
  const abort = new AbortController();
  let subscribed = false;
  const post = (reply: StreamReply) => {
    if (abort.signal.aborted) return;
    try {
      port.postMessage(reply);
    } catch {
      abort.abort(); // the page disconnected before Chrome told us: nobody to send to
    }
  };
  let credit: StreamCredit | undefined;
  port.onDisconnect.addListener(() => abort.abort());
  port.onMessage.addListener((message) => {
    if (subscribed) {
      if (isStreamCredit(message)) credit?.grant(message.cost);
      return;
    }
    if (!isStreamRequest(message)) return;
    subscribed = true;
    credit = new StreamCredit(message.window);
    void pump(runtime, message.fiber, message.after, post, credit, abort.signal)
      .catch((error: unknown) => {
        if (abort.signal.aborted) return;
        // A fiber's own failure travels in fiber.end; an error here is the stream's. The page
        // gets it; one the page did not cause (the store failing) is reported here too.
        if (!(error instanceof FiberNotFoundError || error instanceof InvalidInputError)) onError(error);
        post({ type: "error", error: serializeError(error) });
      })
      .finally(() => {
        if (abort.signal.aborted) return;
        abort.abort();
        port.disconnect();
      });
  });
}

async function pump(
  runtime: Runtime,
  id: string,
  after: number,
  post: (reply: StreamReply) => void,
  credit: StreamCredit,
  signal: AbortSignal,
): Promise<void> {
  // The record and the first chunks in one read (`fiberChunks`): the fiber named is the one whose
  // chunks follow, even when it is collected and started again meanwhile.
  let ended = false;
  for await (const item of fiberChunks(runtime, id, after, signal)) {
    ended = item === "ended";
    const message = streamItemMessage(item);
    // A page that stops reading stops this pump once a window is in flight.
    if (message.type === "chunk") await credit.reserve(chunkCost(message.data), signal);
    if (signal.aborted) return;
    post(message);
  }
  if (!ended) post({ type: "end" });
}
