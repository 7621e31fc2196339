/**
 * The typed error for call arguments a channel cannot carry (a function, a DOM node, a class
 * instance with methods; a bigint or a cycle where the channel speaks JSON): the same
 * `not_cloneable` the runtime gives when it is called in the same context. Used by every page
 * channel (the Service Worker's port, the tab fallback, HTTP, extension messaging).
 */

import { InvalidInputError } from "../core/errors";

/**
 * `not_cloneable` for `method()`'s arguments, which could not be sent to `where`; `cause` is what
 * the channel threw.
 *
 * @example
 * throw notCloneable("start", "the Service Worker", error);
 */
export function notCloneable(method: string, where: string, cause: unknown): InvalidInputError {
  const detail = cause instanceof Error ? ` ${cause.message}` : "";
  return new InvalidInputError(
    "not_cloneable",
    `The arguments of ${method}() cannot be sent to ${where}:${detail} Pass plain data (no functions, class instances with methods or DOM nodes).`,
    { cause },
  );
}

/** Whether `error` is the structured clone's refusal of a value (`DataCloneError`). */
export function isDataCloneError(error: unknown): boolean {
  return error instanceof DOMException && error.name === "DataCloneError";
}
