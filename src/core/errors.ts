/**
 * The error hierarchy every Fiberline layer raises.
 *
 * Each error is a `FiberlineError` subclass with a stable string `code`; branch on `code`, never
 * on message text. Errors survive structured cloning, the page/Service Worker boundary and the
 * journal through `serializeError` / `deserializeError`, which rebuild the class from the code.
 */

/** Every stable error code the runtime raises. */
export type ErrorCode =
  | "invalid_argument"
  | "invalid_id"
  | "not_cloneable"
  | "payload_too_large"
  | "unknown_fiber"
  | "fiber_not_found"
  | "replay_diverged"
  | "recovery_exhausted"
  | "recovery_aborted"
  | "fenced"
  | "version_mismatch"
  | "timeout"
  | "cancelled"
  | "non_retryable"
  | "step_failed"
  | "fiber_failed"
  | "fiber_ended"
  | "store_closed"
  | "store_error"
  | "stream_gap"
  | "deadline_exceeded"
  | "worker_restarted"
  | "service_worker_unavailable"
  | "protocol_error"
  | "max_turns"
  | "model_error"
  | "tool_error"
  | "unauthorized"
  | "too_many_fibers"
  | "quota_exceeded"
  | "store_lost"
  | "origin_not_allowed";

/** Base class of every error Fiberline raises; `code` is stable across releases. */
export class FiberlineError extends Error {
  override name = "FiberlineError";
  readonly code: string;

  constructor(code: ErrorCode | (string & {}), message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Bad input rejected before anything was written: codes `invalid_argument`, `invalid_id`, `not_cloneable`, `payload_too_large`. */
export class InvalidInputError extends FiberlineError {
  override name = "InvalidInputError";
}

/** `start` named a fiber definition the runtime was not created with (`unknown_fiber`). */
export class UnknownFiberError extends FiberlineError {
  override name = "UnknownFiberError";
  constructor(name: string) {
    super(
      "unknown_fiber",
      `No fiber named "${name}" is registered. Pass its definition in createRuntime({ fibers: [...] }).`,
    );
  }
}

/** No fiber with this id exists (never started, or collected after its retention) (`fiber_not_found`). */
export class FiberNotFoundError extends FiberlineError {
  override name = "FiberNotFoundError";
  constructor(id: string) {
    super(
      "fiber_not_found",
      `No fiber with id "${id}" exists; it was never started or has been collected after its retention period.`,
    );
  }
}

/** A replay reached a different operation than the journal recorded at that position (`replay_diverged`). */
export class ReplayDivergedError extends FiberlineError {
  override name = "ReplayDivergedError";
}

/** A fiber kept crashing without progress and was failed instead of re-run again (`recovery_exhausted`). */
export class RecoveryExhaustedError extends FiberlineError {
  override name = "RecoveryExhaustedError";
}

/** A write came from a runner that no longer owns the fiber; that runner stops (`fenced`). */
export class FencedError extends FiberlineError {
  override name = "FencedError";
}

/** A fiber was recovered under a definition with an incompatible `version` (`version_mismatch`). */
export class VersionMismatchError extends FiberlineError {
  override name = "VersionMismatchError";
}

/** A wait, step attempt or call ran past its deadline (`timeout`). */
export class TimeoutError extends FiberlineError {
  override name = "TimeoutError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("timeout", message, options);
  }
}

/** The fiber was cancelled (`cancelled`). */
export class CancelledError extends FiberlineError {
  override name = "CancelledError";
  constructor(message = "The fiber was cancelled.", options?: { cause?: unknown }) {
    super("cancelled", message, options);
  }
}

/**
 * Throw from a step to stop its retries at once (`non_retryable`).
 *
 * @example
 * if (res.status === 400) throw new NonRetryableError("The API rejected the request");
 */
export class NonRetryableError extends FiberlineError {
  override name = "NonRetryableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("non_retryable", message, options);
  }
}

/** A step failed after its retry policy was exhausted (`step_failed`); `cause` holds the last error. */
export class StepFailedError extends FiberlineError {
  override name = "StepFailedError";
}

/** A fiber failed with an error that is not a `FiberlineError` (`fiber_failed`); the original name and message are kept. */
export class FiberFailedError extends FiberlineError {
  override name = "FiberFailedError";
}

/** Storage failed or was closed (`store_error`, `store_closed`). */
export class StoreError extends FiberlineError {
  override name = "StoreError";
}

/** A host refused a request: no credentials, bad or expired ones (`unauthorized`), or an origin it does not serve. */
export class UnauthorizedError extends FiberlineError {
  override name = "UnauthorizedError";
}

/** A per-caller limit refused a request before anything was written (`too_many_fibers`, `payload_too_large`). */
export class LimitExceededError extends FiberlineError {
  override name = "LimitExceededError";
}

/** A call across contexts got no answer in time, or its peer restarted (`deadline_exceeded`, `worker_restarted`, `protocol_error`). */
export class ConnectionError extends FiberlineError {
  override name = "ConnectionError";
}

/** Service Workers cannot run here (insecure origin, private mode, unsupported browser) (`service_worker_unavailable`). */
export class ServiceWorkerUnavailableError extends FiberlineError {
  override name = "ServiceWorkerUnavailableError";
}

/** The plain-data form of an error, as kept in the journal and sent across contexts. */
export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
  data?: unknown;
  cause?: SerializedError;
}

type ErrorFactory = (data: SerializedError, options?: { cause?: unknown }) => Error;

const factories = new Map<string, ErrorFactory>();

/**
 * Registers how `deserializeError` rebuilds errors whose `name` is `name` (layers such as the
 * agent add their own classes this way).
 */
export function registerErrorClass(name: string, factory: ErrorFactory): void {
  factories.set(name, factory);
}

type CodedClass = new (code: string, message: string, options?: { cause?: unknown }) => Error;
for (const cls of [
  FiberlineError,
  InvalidInputError,
  ReplayDivergedError,
  RecoveryExhaustedError,
  FencedError,
  VersionMismatchError,
  StepFailedError,
  FiberFailedError,
  StoreError,
  ConnectionError,
  ServiceWorkerUnavailableError,
  UnauthorizedError,
  LimitExceededError,
] as CodedClass[]) {
  // Keyed by the instance's `name` field, not `cls.name`, which minifiers rename.
  factories.set(new cls("fiber_failed", "").name, (d, o) => new cls(d.code ?? "fiber_failed", d.message, o));
}
for (const cls of [TimeoutError, CancelledError, NonRetryableError]) {
  factories.set(new cls("").name, (d, o) => new cls(d.message, o));
}
factories.set("UnknownFiberError", (d) => withMessage(new UnknownFiberError(""), d));
factories.set("FiberNotFoundError", (d) => withMessage(new FiberNotFoundError(""), d));

function withMessage(error: FiberlineError, data: SerializedError): Error {
  error.message = data.message;
  return error;
}

/** Turns any thrown value into plain, structured-cloneable data. */
export function serializeError(error: unknown, depth = 0): SerializedError {
  if (error instanceof Error) {
    const out: SerializedError = { name: error.name, message: error.message };
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string") out.code = code;
    if (error.stack) out.stack = error.stack;
    const data = (error as { data?: unknown }).data;
    if (data !== undefined) out.data = safeClone(data);
    if (error.cause !== undefined && depth < 4) out.cause = serializeError(error.cause, depth + 1);
    return out;
  }
  return { name: "Error", message: typeof error === "string" ? error : safeDescribe(error) };
}

/** Rebuilds an error from `serializeError` output, keeping its class and `code`. */
export function deserializeError(data: SerializedError): Error {
  const cause = data.cause ? deserializeError(data.cause) : undefined;
  const options = cause ? { cause } : undefined;
  const factory = factories.get(data.name);
  let error: Error;
  if (factory) {
    error = factory(data, options);
  } else if (data.code) {
    // A user error class we cannot rebuild: keep its name, message and code on a FiberFailedError.
    error = new FiberFailedError(data.code, data.message, options);
    Object.defineProperty(error, "name", { value: data.name, configurable: true, writable: true });
  } else {
    error = new Error(data.message, options);
    if (data.name !== "Error")
      Object.defineProperty(error, "name", { value: data.name, configurable: true, writable: true });
  }
  if (data.stack) error.stack = data.stack;
  if (data.data !== undefined) (error as { data?: unknown }).data = data.data;
  return error;
}

function safeClone(value: unknown): unknown {
  try {
    return structuredClone(value);
  } catch {
    return undefined;
  }
}

function safeDescribe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** An error as one line for a message: `Name: message`, or the value as a string. */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
