/**
 * The worker's end of a page's control channel. The page speaks comlink (`wrap` in
 * `rpc-channel.ts`), but the worker does not answer with comlink's `expose`: `expose` walks any
 * property path a message names and honours every message type, so any script of the origin could
 * replace a method for every other page (SET), or reach `Function` through `start.constructor`
 * and run code of its choice inside the worker (CONSTRUCT). This answers exactly what the page
 * client sends: a call (APPLY) of one of the named methods with plain arguments, and the release
 * of the channel. Everything else is refused with `protocol_error`, and nothing else is reachable.
 */

import { ConnectionError, serializeError } from "../core/errors";
import { wireThrow } from "./protocol";

/** comlink 4's message types (`MessageType`), as the page's `wrap` sends them. */
const APPLY = "APPLY";
const RELEASE = "RELEASE";

type Method = (...args: unknown[]) => unknown;

interface PortLike {
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  removeEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  postMessage(message: unknown, transfer?: Transferable[]): void;
  start?(): void;
  close?(): void;
}

/**
 * Answers comlink calls of `methods` (looked up in `api`) on `port` until the page releases it.
 * The table is copied: later changes to `api` are not seen, and no property outside `methods` is
 * ever read.
 */
export function serveControlPort(api: object, methods: readonly string[], port: PortLike): void {
  const table = new Map<string, Method>();
  for (const name of methods) {
    const fn = (api as Record<string, unknown>)[name];
    if (typeof fn === "function") table.set(name, fn as Method);
  }
  const listener = (event: { data: unknown }) => {
    const message = event.data as {
      id?: unknown;
      type?: unknown;
      path?: unknown;
      argumentList?: unknown;
    } | null;
    if (typeof message !== "object" || message === null || typeof message.id !== "string") return;
    const { id } = message;
    if (message.type === RELEASE) {
      port.postMessage({ id, type: "RAW", value: undefined });
      port.removeEventListener("message", listener);
      port.close?.();
      return;
    }
    let call: Promise<unknown>;
    try {
      const fn = methodOf(table, message);
      const args = argumentsOf(message.argumentList);
      call = Promise.resolve(fn(...args));
    } catch (error) {
      call = Promise.reject(error);
    }
    call.then(
      (value) => {
        try {
          port.postMessage({ id, type: "RAW", value });
        } catch (error) {
          // A result the channel cannot carry (a value that is not structured-cloneable).
          answerThrow(port, id, error);
        }
      },
      (error: unknown) => answerThrow(port, id, error),
    );
  };
  port.addEventListener("message", listener);
  port.start?.();
}

function methodOf(table: ReadonlyMap<string, Method>, message: { type?: unknown; path?: unknown }): Method {
  const path = message.path;
  const name = Array.isArray(path) && path.length === 1 && typeof path[0] === "string" ? path[0] : undefined;
  const fn = name === undefined ? undefined : table.get(name);
  if (message.type !== APPLY || fn === undefined) {
    throw new ConnectionError(
      "protocol_error",
      `The Fiberline control channel answers calls of ${[...table.keys()].join(", ")} only, not ${String(message.type)} of ${JSON.stringify(path)}. Use the client from fiberline/client.`,
    );
  }
  return fn;
}

/** comlink wire values: only plain (`RAW`) ones; a proxied callback or another handler is refused. */
function argumentsOf(list: unknown): unknown[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw badArguments();
  return list.map((wire: { type?: unknown; value?: unknown } | null) => {
    if (typeof wire !== "object" || wire === null || wire.type !== "RAW") throw badArguments();
    return wire.value;
  });
}

function badArguments(): ConnectionError {
  return new ConnectionError(
    "protocol_error",
    "The Fiberline control channel takes plain arguments only (no proxied callbacks). Use the client from fiberline/client.",
  );
}

function answerThrow(port: PortLike, id: string, error: unknown): void {
  try {
    port.postMessage({ id, type: "HANDLER", name: "throw", value: wireThrow(error) });
  } catch {
    // The error itself could not be sent (its data not cloneable): send what always can be.
    port.postMessage({
      id,
      type: "HANDLER",
      name: "throw",
      value: wireThrow(new ConnectionError("protocol_error", serializeError(error).message)),
    });
  }
}
