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
  type ErrorCode,
  FencedError,
  FiberFailedError,
  FiberNotFoundError,
  FiberlineError,
  InvalidInputError,
  NonRetryableError,
  RecoveryExhaustedError,
  ReplayDivergedError,
  type SerializedError,
  ServiceWorkerUnavailableError,
  StepFailedError,
  StoreError,
  TimeoutError,
  UnknownFiberError,
  VersionMismatchError,
  deserializeError,
  registerErrorClass,
  serializeError,
} from "./errors";
export { type FiberLocks, type WebLockManager, defaultLocks, localLocks, webLocks } from "./locks";
export {
  type FiberEvent,
  type FiberRecord,
  type FiberStatus,
  type InboxEvent,
  type JournalEntry,
  type JournalKind,
  type RecoveryInfo,
  type SnapshotRecord,
  type StreamChunk,
  TERMINAL_STATUSES,
  isTerminal,
} from "./records";
export {
  type FiberInspection,
  type RecoverySummary,
  Runtime,
  type RuntimeOptions,
  type StartOptions,
  type StartResult,
  createRuntime,
} from "./runtime";
export { estimateSize } from "./validate";
