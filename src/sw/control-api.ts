/**
 * The control calls every worker-side host answers (`ControlApi` of `protocol.ts`) on top of a
 * runtime: the Service Worker host exposes them with comlink, the extension host over a
 * `chrome.runtime` port. One implementation, so both answer alike.
 */

import { InvalidInputError } from "../core/errors";
import type { Runtime } from "../core/runtime";
import type { ControlApi, HeartbeatInfo } from "./protocol";
import type { WatchedStore } from "./storage-watch";

/** The names of the control calls, for a host that dispatches them by name. */
export const CONTROL_METHODS: readonly (keyof ControlApi)[] = Object.freeze([
  "start",
  "get",
  "list",
  "inspect",
  "sendEvent",
  "cancel",
  "heartbeat",
  "retryPaused",
]);

/**
 * The control API of `runtime`. `heartbeat` says who answers (the host's instance and whether its
 * start-up recovery finished); `retryPaused` retries the fibers a `watchStorage` store paused for
 * lack of space (`undefined` for a store that is not watched).
 */
export function createControlApi(runtime: Runtime, heartbeat: () => HeartbeatInfo): ControlApi {
  return {
    start: async (name, input, options) => {
      assertOptions("start(name, input, options)", options);
      const { id, name: fiberName, status, created } = await runtime.start(name, input, options);
      return { id, name: fiberName, status, created };
    },
    // async, so a call refused by validation rejects like any other instead of throwing at once
    // (a host dispatching by name would otherwise see a throw where it awaits a promise).
    get: async (id) => await runtime.get(id),
    list: async (query) => await runtime.list(query), // the runtime checks the query whole
    inspect: async (id) => await runtime.inspect(id),
    sendEvent: async (id, name, payload) => await runtime.sendEvent(id, name, payload),
    cancel: async (id, reason) => await runtime.cancel(id, reason),
    heartbeat: async () => heartbeat(),
    retryPaused: async () => {
      const store = runtime.store as Partial<WatchedStore>;
      return typeof store.retryPaused === "function" ? await store.retryPaused(runtime) : undefined;
    },
  };
}

/** Options sent from a page are an object or nothing; anything else is refused before any work. */
function assertOptions(call: string, options: unknown): void {
  if (options === undefined) return;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new InvalidInputError(
      "invalid_argument",
      `${call}: pass an object or nothing, not ${options === null ? "null" : typeof options}.`,
    );
  }
}
