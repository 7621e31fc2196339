/**
 * Errors of the agent layer. Each is a `FiberlineError` registered with `registerErrorClass`, so
 * it keeps its class, `code` and fields through the journal and across the page/Service Worker
 * boundary.
 */

import { FiberlineError, registerErrorClass } from "../core/errors";

/** What went wrong with a model call, for code that branches finer than `code`. */
export type ModelErrorKind =
  /** The endpoint answered with a non-2xx status. */
  | "http_status"
  /** The request or the response body failed at the transport level. */
  | "network"
  /** No byte arrived for longer than the idle timeout. */
  | "stalled"
  /** The body was not a valid event stream of Chat Completions chunks. */
  | "malformed_stream"
  /** The stream ended before the model finished (cut JSON, or no finish reason / `[DONE]`). */
  | "truncated_stream"
  /** The provider reported an error inside an otherwise valid stream. */
  | "provider_error";

/** The plain fields of a `ModelError` (kept in `data` so they survive serialization). */
export interface ModelErrorData {
  kind: ModelErrorKind;
  /** True when the same call may succeed if tried again. */
  retryable: boolean;
  /** The HTTP status, for `http_status` errors. */
  status?: number;
  /** How long the endpoint asked the caller to wait before trying again, in ms. */
  retryAfterMs?: number;
  /** The provider's own error code (e.g. `invalid_api_key`), when it sent one. */
  providerCode?: string;
}

/**
 * A model call failed (`model_error`). Branch on `retryable`, `status` and `kind`; the message is
 * for people and never contains the API key.
 */
export class ModelError extends FiberlineError {
  override name = "ModelError";
  /** The error's fields as plain, structured-cloneable data. */
  readonly data: ModelErrorData;

  constructor(message: string, data: ModelErrorData, options?: { cause?: unknown }) {
    super("model_error", message, options);
    this.data = { ...data };
  }

  /** What went wrong, finer than `code`. */
  get kind(): ModelErrorKind {
    return this.data.kind;
  }

  /** True when the same call may succeed if tried again. */
  get retryable(): boolean {
    return this.data.retryable;
  }

  /** The HTTP status, for `http_status` errors. */
  get status(): number | undefined {
    return this.data.status;
  }

  /** How long the endpoint asked the caller to wait before trying again, in ms. */
  get retryAfterMs(): number | undefined {
    return this.data.retryAfterMs;
  }
}

registerErrorClass("ModelError", (serialized, options) => {
  const data = isModelErrorData(serialized.data)
    ? serialized.data
    : { kind: "provider_error" as const, retryable: false };
  return new ModelError(serialized.message, data, options);
});

function isModelErrorData(value: unknown): value is ModelErrorData {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  return typeof record.kind === "string" && typeof record.retryable === "boolean";
}
