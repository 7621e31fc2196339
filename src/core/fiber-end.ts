/**
 * The one write that ends a fiber: its terminal status, outcome and `fiber.end` chunk (always the
 * last chunk), with the runner's claim released. Used by a run that finishes and by the runtime
 * when it ends a fiber that has no run (cancel, failed recovery).
 */

import type { SerializedError } from "./errors";
import type { StreamChunk } from "./records";
import type { WriteGroup } from "./store";

/** The reason a cancel gives when its caller names none. */
export const DEFAULT_CANCEL_REASON = "Cancelled by request.";

/** How a fiber ended. */
export type EndStatus = "completed" | "failed" | "cancelled";

/** What the `fiber.end` chunk and the record carry besides the status. */
export interface EndOutcome {
  result?: unknown;
  error?: SerializedError;
}

/**
 * The write group that ends fiber `fiberId` under `generation`, appending `fiber.end` at `seq`.
 */
export function endGroup(
  fiber: { fiberId: string; generation: number; seq: number },
  status: EndStatus,
  outcome: EndOutcome,
  at: number,
): WriteGroup {
  const end: StreamChunk = {
    fiberId: fiber.fiberId,
    seq: fiber.seq,
    type: "fiber.end",
    data: { status, ...outcome },
    at,
  };
  return {
    fiberId: fiber.fiberId,
    generation: fiber.generation,
    fiber: {
      status,
      ...outcome,
      endedAt: at,
      updatedAt: at,
      streamHead: fiber.seq,
      owner: undefined,
      leaseUntil: undefined,
      wakeAt: undefined,
      waitingFor: undefined,
    },
    chunks: [end],
  };
}
