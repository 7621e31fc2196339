/**
 * `sendShippedEvent`: how a browser host sends an event to a replicated fiber. The event is
 * buffered and delivered locally as `runtime.sendEvent` does, and the sender is answered once
 * the arbiter holds it, so a change of home can never lose an event a sender was told about. If
 * the fiber moves away first, the sender gets `fenced` and sends it to the new home instead
 * (the copy buffered here was dropped with the rest of this home's unshipped tail).
 */

import type { Runtime } from "../core/runtime";
import type { Outbox } from "./outbox";
import type { ReplicatingStore } from "./replicating-store";

/** Where a browser host's replicated events go. */
export interface ShippedEventParts {
  runtime: Runtime;
  store: ReplicatingStore;
  outbox: Outbox;
}

/**
 * Sends event `name` to `fiberId` and resolves once it is shipped.
 *
 * Failure semantics: rejects as `runtime.sendEvent` does, and with `fenced` when the fiber
 * moved to another home before the event reached it (nothing of it counts here). Two sends to
 * one fiber at once each wait for both; a page sends one at a time.
 *
 * @example
 * await sendShippedEvent({ runtime, store, outbox }, fiberId, "approval", { approved: true });
 */
export async function sendShippedEvent(
  { runtime, store, outbox }: ShippedEventParts,
  fiberId: string,
  name: string,
  payload?: unknown,
): Promise<void> {
  const positions = await store.eventPositionsDuring(fiberId, () =>
    runtime.sendEvent(fiberId, name, payload),
  );
  if (positions.length > 0) await outbox.acknowledged(fiberId, Math.max(...positions));
}
