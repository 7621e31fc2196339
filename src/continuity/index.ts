/**
 * Continuity (issue #18, docs/design/continuity.md): one fiber, one journal, two homes, one
 * runner at a time. The browser's `ReplicatingStore` feeds an `Outbox` that a `Shipper` sends to
 * the fiber's `Arbiter` at the edge, which keeps the replica and decides who may run the fiber.
 * Not an entry of the package yet: the hosts wire it in a later step.
 */

export { Arbiter, type ArbiterOptions } from "./arbiter";
export { ArbitratedStore } from "./arbitrated-store";
export {
  BrowserContinuity,
  createReplicatedRuntime,
  type EdgeOptions,
  type FiberHome,
  type OnlineScopeLike,
  type ReplicatedRuntimeOptions,
} from "./browser-home";
export { EdgeLink, type EdgeLinkOptions } from "./edge-link";
export { changedHomeError, LeaseLapsedError, OutOfOrderError } from "./errors";
export { ForwardingStore } from "./forwarding-store";
export { Mirror, type MirrorOptions, type MirrorSync, type ReplicaSource } from "./mirror";
export { type EntryBody, type HomeStatus, Outbox, type OutboxOptions } from "./outbox";
export {
  type AwayFrom,
  type OutboxLog,
  type OutboxProgress,
  type OutboxStore,
  type OutboxWrite,
  type SavedOutbox,
  writesOutbox,
} from "./outbox-log";
export {
  browserHome,
  DEFAULT_LEASE_MS,
  DEFAULT_OUTBOX_BYTES,
  EDGE_HOME,
  leaseDeadline,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  type Shipment,
  type ShipmentAnswer,
  type ShippedEntry,
} from "./protocol";
export { ReplicatingStore, type ReplicatingStoreOptions } from "./replicating-store";
export { type ShippedEventParts, sendShippedEvent } from "./send-event";
export { Shipper, type ShipperOptions, type ShipperStats } from "./shipper";
