/**
 * The page's end of an extension stream port (see `src/extension/protocol.ts`): one attempt of
 * the resumable reader, reading a fiber's chunks after a cursor from the extension's background
 * worker. `readFiberEvents` drives it (`transport`), so the cursor, the gap check and the
 * reconnect backoff are the Service Worker client's.
 */

import { ConnectionError, deserializeError } from "../core/errors";
import type { ChromeRuntimeConnector } from "../extension/chrome-types";
import {
  STREAM_PORT,
  type StreamCreditMessage,
  type StreamReply,
  type StreamRequest,
} from "../extension/protocol";
import { CreditReturn, STREAM_WINDOW } from "../sw/stream-credit";
import type { StreamItem } from "./event-reader";
import { pullQueue } from "./pull-queue";

/**
 * Connects a stream port and yields its chunks until the worker sends `end`, or "ended" when the
 * fiber ended and `after` is at its end.
 *
 * Failure semantics: throws the worker's error (class and `code` kept) on `error`, a
 * `ConnectionError` `worker_restarted` when the port is disconnected first (the worker stopped:
 * the reader reconnects from its cursor, which starts the worker again), and the signal's reason
 * on abort. Always disconnects the port.
 */
export async function* readExtensionStream(
  runtime: ChromeRuntimeConnector,
  fiber: string,
  after: number,
  signal: AbortSignal,
): AsyncGenerator<StreamItem> {
  signal.throwIfAborted();
  const queue = pullQueue<StreamReply | { type: "gone" }>(signal);
  const port = runtime.connect({ name: STREAM_PORT });
  port.onMessage.addListener((message) => queue.push(message as StreamReply));
  port.onDisconnect.addListener(() => queue.push({ type: "gone" }));
  // Flow control: the worker sends at most a window ahead of what this reader took.
  const credit = new CreditReturn((cost) => {
    const message: StreamCreditMessage = { type: "credit", cost };
    try {
      port.postMessage(message);
    } catch {
      // Disconnected: `onDisconnect` ends this attempt.
    }
  });
  try {
    const request: StreamRequest = { type: "subscribe", fiber, after, window: STREAM_WINDOW };
    port.postMessage(request);
    for (;;) {
      const next = await queue.next();
      switch (next.type) {
        case "opened":
          yield { created: next.created };
          break;
        case "chunk":
          yield { seq: next.seq, event: next.event, at: next.at, data: next.data };
          credit.took(next.data);
          break;
        case "end":
          return;
        case "ended":
          yield "ended";
          return;
        case "error":
          throw deserializeError(next.error);
        case "gone":
          throw new ConnectionError(
            "worker_restarted",
            "The extension's background worker closed the event stream (it stopped); resuming from the last chunk.",
          );
      }
    }
  } finally {
    queue.close();
    try {
      port.disconnect();
    } catch {
      // Disconnected already.
    }
  }
}
