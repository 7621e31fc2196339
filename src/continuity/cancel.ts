/**
 * `cancelReplicated`: a cancel that reaches the edge host (`POST .../cancel`) of a fiber that may
 * be replicated. The arbiter decides where it is carried out: at the edge when the edge holds the
 * fiber (or it is no replica), by the browser that holds it otherwise (the cancel rides on that
 * browser's next shipment answer, or the takeover carries it out if the browser is gone). The
 * caller hears the fiber's status after the cancel, as from `runtime.cancel`, once the fiber has
 * ended or the wait is over (then with `forwarded: true`). `cancelShipped` is the browser's side: a
 * cancel of a fiber the browser runs is answered once the arbiter holds its end.
 */

import { FencedError } from "../core/errors";
import { DEFAULT_CANCEL_REASON } from "../core/fiber-end";
import type { FiberStatus } from "../core/records";
import type { Runtime } from "../core/runtime";
import type { CancelReply } from "../sw/protocol";
import type { Arbiter } from "./arbiter";
import type { Outbox } from "./outbox";

/** What `cancelReplicated` needs. */
export interface ReplicatedCancel {
  /** The edge runtime (over the `ArbitratedStore`). */
  runtime: Runtime;
  arbiter: Arbiter;
  /**
   * After a cancel was forwarded to a browser: resolves with the fiber's terminal status once it
   * ended, or `undefined` when it had not within the host's wait. Without it the answer is the
   * forwarded one at once.
   */
  waitForEnd?(fiberId: string): Promise<FiberStatus | undefined>;
}

/** How often a cancel is decided again when the fiber changed home between decision and claim. */
const ATTEMPTS = 4;

/**
 * Cancels `fiberId` where it runs and answers like the cancel route.
 *
 * Failure semantics: rejects with what `runtime.cancel` rejects with (`fiber_not_found`...), or
 * with `fenced` when the fiber kept changing home; nothing was cancelled then. A `forwarded`
 * answer is durable: the arbiter committed the cancel before it was given.
 */
export async function cancelReplicated(
  { runtime, arbiter, waitForEnd }: ReplicatedCancel,
  fiberId: string,
  reason: string = DEFAULT_CANCEL_REASON,
): Promise<CancelReply> {
  for (let attempt = 1; ; attempt++) {
    const decision = await arbiter.cancel(fiberId, reason);
    if (decision.status === "ended") return { status: decision.fiberStatus };
    if (decision.status === "forwarded") {
      const ended = await waitForEnd?.(fiberId);
      return ended === undefined ? { status: decision.fiberStatus, forwarded: true } : { status: ended };
    }
    try {
      return { status: await runtime.cancel(fiberId, reason) };
    } catch (error) {
      // A browser was handed the fiber between the decision and the claim (`comeHome`): decide
      // again, which forwards it there.
      if (!(error instanceof FencedError) || attempt >= ATTEMPTS) throw error;
    }
  }
}

/**
 * Cancels `fiberId`, which this browser runs, and resolves once the replica holds the end: a
 * cancel the page was told about can never be undone by a change of home (the edge taking over
 * a tail of this home that was never shipped, the end included).
 *
 * Failure semantics: rejects as `runtime.cancel` does, and with `fenced` when the fiber moved to
 * another home before its end reached the replica (nothing of it counts; cancel it there).
 */
export async function cancelShipped(
  { runtime, outbox }: { runtime: Runtime; outbox: Outbox },
  fiberId: string,
  reason?: string,
): Promise<FiberStatus> {
  const status = await runtime.cancel(fiberId, reason);
  await outbox.acknowledged(fiberId);
  return status;
}
