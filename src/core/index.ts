/**
 * The platform-free engine: fiber definitions, the runtime, records and errors. Imports no DOM,
 * Service Worker or React globals.
 */

export {
  defineFiber,
  type FiberContext,
  type FiberDefinition,
  type FiberOptions,
  type InputOf,
  type OutputOf,
  type RecoveryContext,
  type RecoveryDecision,
  type RetryPolicy,
  type StepContext,
  type StepOptions,
} from "./define";
export {
  CancelledError,
  ConnectionError,
  deserializeError,
  type ErrorCode,
  FencedError,
  FiberFailedError,
  FiberlineError,
  FiberNotFoundError,
  InvalidInputError,
  LimitExceededError,
  NonRetryableError,
  RecoveryExhaustedError,
  ReplayDivergedError,
  registerErrorClass,
  type SerializedError,
  ServiceWorkerUnavailableError,
  StepFailedError,
  StoreError,
  serializeError,
  TimeoutError,
  UnauthorizedError,
  UnknownFiberError,
  VersionMismatchError,
} from "./errors";
export { defaultLocks, type FiberLocks, localLocks, type WebLockManager, webLocks } from "./locks";
export {
  type FiberEvent,
  type FiberRecord,
  type FiberStatus,
  type HomeLease,
  type InboxEvent,
  isTerminal,
  type JournalEntry,
  type JournalKind,
  type RecoveryInfo,
  type ResumePoint,
  type SnapshotRecord,
  type StreamChunk,
  TERMINAL_STATUSES,
} from "./records";
export type { Replication } from "./replication";
export {
  createRuntime,
  type FiberInspection,
  type OpenedEventBatches,
  type RecoverySummary,
  Runtime,
  type RuntimeOptions,
  type StartOptions,
  type StartResult,
} from "./runtime";
export { estimateSize } from "./validate";
