/**
 * The page's end of the port stream (see `PortStreamApi` in `protocol.ts`): reads a fiber's
 * events pushed over a MessagePort, answering pings and giving up when the worker goes silent.
 * The resumable reader falls back to it when a `fetch` of the event route does not reach the worker.
 */

import { ConnectionError, deserializeError } from "../core/errors";
import { type PortStreamMessage, type PortStreamReply, STREAM_PING_MS } from "../sw/protocol";
import { CreditReturn, STREAM_WINDOW } from "../sw/stream-credit";
import type { FiberName } from "./event-reader";

/** One chunk as the port stream delivers it (data still JSON text, as on the SSE route). */
export interface PortChunk {
  seq: number;
  event: string;
  at: number;
  data: string;
}

/**
 * Opens a port stream with `open` (which hands the worker its end) and yields its chunks until
 * the worker sends `end`, or "ended" when the fiber ended and the cursor was at its end.
 *
 * Failure semantics: throws the worker's error (class and `code` kept) on `error`, a
 * `ConnectionError` `worker_restarted` after three ping periods of silence (the worker stopped),
 * and the signal's reason on abort. Always tells the worker to stop and closes the port.
 */
export async function* readPortStream(
  open: (port: MessagePort, window: number) => Promise<void>,
  signal?: AbortSignal,
  pingMs = STREAM_PING_MS,
): AsyncGenerator<PortChunk | "ended" | FiberName> {
  signal?.throwIfAborted();
  const { port1, port2 } = new MessageChannel();
  const queue: PortStreamMessage[] = [];
  let wake: (() => void) | null = null;
  let lastHeard = Date.now();
  const reply = (message: PortStreamReply) => port1.postMessage(message);
  // Flow control: the worker sends at most a window ahead of what this reader took.
  const credit = new CreditReturn((cost) => reply({ type: "credit", cost }));
  port1.addEventListener("message", (event: MessageEvent<PortStreamMessage>) => {
    lastHeard = Date.now();
    if (event.data?.type === "ping") reply({ type: "pong" });
    else queue.push(event.data);
    wake?.();
  });
  port1.start();
  const onAbort = () => wake?.();
  signal?.addEventListener("abort", onAbort);
  try {
    await open(port2, STREAM_WINDOW);
    // The worker answered: its first read may have taken longer than the pings allow.
    lastHeard = Date.now();
    for (;;) {
      signal?.throwIfAborted(); // queued items are not the reader's any more once it aborts
      const next = queue.shift();
      if (next) {
        if (next.type === "chunk") {
          yield { seq: next.seq, event: next.event, at: next.at, data: next.data };
          credit.took(next.data);
        } else if (next.type === "opened") yield { created: next.created };
        else if (next.type === "end") return;
        else if (next.type === "ended") {
          yield "ended";
          return;
        } else if (next.type === "error") throw deserializeError(next.error);
        continue;
      }
      if (Date.now() - lastHeard > pingMs * 3) {
        throw new ConnectionError(
          "worker_restarted",
          `The event port went silent for ${pingMs * 3} ms: the worker stopped.`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pingMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    try {
      reply({ type: "close" });
    } catch {
      // Closed already.
    }
    port1.close();
  }
}
