/**
 * `sendShippedEvent`: how a browser host sends an event to a replicated fiber. The event is
 * buffered and delivered locally as `runtime.sendEvent` does, and the sender is answered once
 * the arbiter holds it, so a change of home can never lose an event a sender was told about. If
 * the fiber moves away first, the sender gets `fenced` and sends it to the new home instead
 * (the copy buffered here was dropped with the rest of this home's unshipped tail).
 */

import { FiberlineError } from "../core/errors";
import type { Runtime } from "../core/runtime";
import type { Outbox } from "./outbox";
import type { PushedEvent } from "./protocol";
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
 * moved to another home before the event reached it (nothing of it counts here); that error
 * carries the id the event had here (`bufferedEventId`), to send it on under. Each send waits
 * for its own event only, whatever else is sent to the fiber meanwhile.
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
  const buffered = await store.bufferedDuring((token) =>
    runtime.sendEvent(fiberId, name, payload, { eventId: token }),
  );
  if (buffered === undefined) return;
  try {
    await outbox.acknowledged(fiberId, buffered.pos, buffered.epoch);
  } catch (error) {
    // Sent again to the new home under this id: the arbiter drops it if the replica has it.
    if (error instanceof FiberlineError) throw withEventId(error, buffered.eventId);
    throw error;
  }
}

/**
 * A copy of `error` (same class, code, message and data) that carries `eventId`. A fence rejects
 * every send waiting on the fiber with one error object, so each sender needs its own: marking
 * the shared one would send every event on under the last sender's id, and the edge would keep
 * one of them.
 */
function withEventId(error: FiberlineError, eventId: string): FiberlineError {
  const copy = Object.create(Object.getPrototypeOf(error) as object) as FiberlineError;
  Object.defineProperties(copy, Object.getOwnPropertyDescriptors(error));
  (copy as { eventId?: string }).eventId = eventId;
  return copy;
}

/** The id `sendShippedEvent` gave the event it could not see acknowledged, if it buffered one. */
export function bufferedEventId(error: unknown): string | undefined {
  const eventId = (error as { eventId?: unknown } | null)?.eventId;
  return typeof eventId === "string" ? eventId : undefined;
}

/**
 * The `onEvents` of a browser's `Shipper`: enqueues each event the arbiter pushed (a webhook that
 * reached the edge while this browser holds the fiber) through `runtime.sendEvent` with its
 * `eventId`, so the fiber gets it as it gets a page's event, and the replicating store ships it
 * back as part of the history, where the arbiter knows it by that id. An event the local inbox
 * already holds (pushed again after a restart, before it was shipped back) is skipped, so each is
 * buffered here once.
 *
 * Failure semantics: an event for a fiber that already ended here is skipped (the arbiter keeps it
 * in the replica's inbox, unconsumed, when the end is shipped); any other failure rejects, and
 * the next answer pushes the event again (a takeover moves it into the edge's inbox). The local store must keep `InboxEvent.eventId` (`MemoryStore` does).
 *
 * @example
 * const shipper = new Shipper({ outbox, home, send, onEvents: enqueuePushedEvents(runtime) });
 */
export function enqueuePushedEvents(
  runtime: Runtime,
): (fiberId: string, events: readonly PushedEvent[]) => Promise<void> {
  return async (fiberId, events) => {
    const held = new Set((await runtime.store.readInbox(fiberId)).map((e) => e.eventId));
    for (const event of events) {
      if (held.has(event.eventId)) continue;
      try {
        await runtime.sendEvent(fiberId, event.name, event.payload, { eventId: event.eventId });
      } catch (error) {
        // Ended here: the arbiter keeps the event in the replica's inbox, unconsumed.
        if (error instanceof FiberlineError && error.code === "fiber_ended") continue;
        throw error;
      }
      held.add(event.eventId);
    }
  };
}
