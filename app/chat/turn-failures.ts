/**
 * Turns that end without their fiber telling how: a start the worker refused (a message over
 * the runtime's `maxPayloadBytes`, an unreachable worker) and a fiber that no longer exists.
 * Each becomes a failed `TurnView` with a sentence a person understands and the technical
 * details behind it, so `use-turn.ts` can freeze the turn instead of leaving it running forever.
 */

import { emptyTurn, type TurnView } from "./turn-view";

/** The runtime's default `maxPayloadBytes`, which the demo's worker keeps. */
const PAYLOAD_LIMIT = 1024 * 1024;

/** The code an error from the client carries, if any. */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function details(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = errorCode(error);
  return code ? `${code}: ${message}` : message;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

/** The failed view of a turn whose fiber start was refused with `error`. */
export function refusedStart(error: unknown, user: string): TurnView {
  const code = errorCode(error);
  let sentence: string;
  if (code === "payload_too_large") {
    const size = new Blob([user]).size;
    sentence = `This message is too large to send (${megabytes(size)}; the assistant accepts up to ${megabytes(PAYLOAD_LIMIT)} per message). Shorten it, or paste only the part that matters.`;
  } else if (
    code === "deadline_exceeded" ||
    code === "worker_restarted" ||
    code === "service_worker_unavailable" ||
    code === "store_error" ||
    code === "store_closed"
  ) {
    sentence = "The app's Service Worker did not take the message, so the reply never started. Ask again.";
  } else {
    sentence = "The assistant could not start a reply to this message.";
  }
  return { ...emptyTurn(), outcome: "failed", error: sentence, detail: details(error), neverStarted: true };
}

/** The failed view of a turn whose fiber is gone (deleted from the worker's storage) before it ended. */
export function lostFiber(view: TurnView, error: unknown): TurnView {
  return {
    ...view,
    outcome: "failed",
    error: "This reply's fiber no longer exists in the worker, so the reply cannot finish.",
    detail: details(error),
  };
}
