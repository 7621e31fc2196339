/**
 * Keeps errors' class and `code` across the comlink boundary. comlink's own "throw" handler sends
 * only name, message and stack, so a `FiberNotFoundError` thrown in the worker would arrive as a
 * plain `Error`. Both the Service Worker host and the page client install this handler.
 */

import { type TransferHandler, transferHandlers } from "comlink";
import { deserializeError } from "../core/errors";
import { type WireThrow, wireThrow } from "./protocol";

let installed = false;

/**
 * Replaces comlink's global "throw" transfer handler with one that serializes errors with
 * `serializeError` and rebuilds them with `deserializeError`. Idempotent. Thrown non-errors and
 * errors of other classes still arrive (as plain errors with their name and message), so other
 * comlink users in the same app are not affected.
 */
export function installErrorTransfer(): void {
  if (installed) return;
  const base = transferHandlers.get("throw") as TransferHandler<unknown, unknown> | undefined;
  if (!base) throw new Error("comlink has no built-in 'throw' transfer handler; is this comlink 4?");
  const handler: TransferHandler<{ value: unknown }, WireThrow | unknown> = {
    canHandle: (value): value is { value: unknown } => base.canHandle(value),
    serialize({ value }) {
      return [wireThrow(value), []];
    },
    deserialize(wire) {
      if (isWireThrow(wire)) throw deserializeError(wire.error);
      return base.deserialize(wire) as { value: unknown };
    },
  };
  transferHandlers.set("throw", handler as TransferHandler<unknown, unknown>);
  installed = true;
}

function isWireThrow(value: unknown): value is WireThrow {
  return (value as WireThrow | null)?.fiberline === 1 && typeof (value as WireThrow).error === "object";
}
