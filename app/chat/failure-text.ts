/**
 * A failed reply's error, explained: a sentence a person can act on (what went wrong and what to
 * do), and the technical details (codes and messages along the cause chain) for a disclosure.
 * Reads the error as `fiber.end` carries it (`serializeError` output), so it works on replayed
 * streams and frozen turns alike. Used by `turn-view.ts`.
 */

/** An error as a stream chunk carries it. */
interface WireError {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  data?: unknown;
  cause?: unknown;
}

/** What a failed reply says. */
export interface FailureText {
  /** Completes "The reply failed: …". */
  sentence: string;
  /** `code: message` of the error and each cause, one per line. */
  detail: string;
}

const text = (value: unknown): string => (typeof value === "string" ? value : "");

/** The error and its causes, outermost first. */
function chain(error: unknown): WireError[] {
  const out: WireError[] = [];
  let current = error;
  while (typeof current === "object" && current !== null && out.length < 6) {
    out.push(current as WireError);
    current = (current as WireError).cause;
  }
  return out;
}

/** Explains the error of a `fiber.end` chunk (or any serialized error). */
export function explainFailure(error: unknown): FailureText {
  const errors = chain(error);
  const detail =
    errors
      .map((e) => [text(e.code) || text(e.name), text(e.message)].filter(Boolean).join(": "))
      .join("\n") || "No error was recorded.";
  return { sentence: sentenceFor(errors), detail };
}

function sentenceFor(errors: WireError[]): string {
  const all = errors.map((e) => text(e.message)).join(" ");
  if (/ISO-8859-1/.test(all))
    return "the API key holds a character that HTTP headers cannot carry. Save the key again in Settings (copy it from your provider), then Ask again.";
  const model = errors.find((e) => e.code === "model_error");
  if (model) return modelSentence(model, attempts(all));
  const code = text(errors[0]?.code);
  switch (code) {
    case "max_turns":
      return "the assistant used all its model calls on tools without reaching an answer. Ask again, perhaps more simply.";
    case "recovery_exhausted":
      return "the worker stopped again and again during this reply, so it was given up rather than re-run forever. Ask again.";
    case "version_mismatch":
      return "this reply was started by an older version of the app and cannot continue under this one. Ask again.";
    case "timeout":
      return "it waited too long (for an approval or a timer) and gave up. Ask again.";
  }
  const message = text(errors.at(-1)?.message) || text(errors[0]?.message);
  return message
    ? `${message.replace(/\.$/, "")}.`
    : "something went wrong in the worker. The details say what.";
}

/** "after 5 attempts", from the step's message, when it says. */
function attempts(message: string): string {
  const match = /failed after (\d+) attempt/.exec(message);
  return match && match[1] !== "1" ? ` after ${match[1]} attempts` : "";
}

function modelSentence(error: WireError, after: string): string {
  const data = (typeof error.data === "object" && error.data !== null ? error.data : {}) as {
    kind?: unknown;
    status?: unknown;
  };
  const status = typeof data.status === "number" ? data.status : undefined;
  switch (data.kind) {
    case "network":
      return `the model could not be reached${after}. Check your connection and the base URL in Settings, then Ask again.`;
    case "stalled":
      return `the model stopped sending${after}. Ask again, or try another model in Settings.`;
    case "malformed_stream":
    case "truncated_stream":
      return "the model's endpoint sent an answer this app cannot read. Check that the base URL in Settings is an OpenAI-compatible API (it usually ends in /v1).";
  }
  if (status === 401 || status === 403)
    return `the model's endpoint refused the API key (HTTP ${status}). Check the key in Settings, then Ask again.`;
  if (status === 404)
    return "the model's endpoint has no such path or model (HTTP 404). Check the base URL and the model id in Settings.";
  if (status === 429)
    return `the model's endpoint is limiting requests (HTTP 429)${after}. Wait a minute, then Ask again.`;
  if (status !== undefined && status >= 500)
    return `the model's endpoint had an error (HTTP ${status})${after}. Ask again later.`;
  if (status !== undefined)
    return `the model's endpoint rejected the request (HTTP ${status}). Check the settings, then Ask again.`;
  return `the model reported an error${after}. The details say what it was.`;
}
