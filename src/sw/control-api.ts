/**
 * The control calls every worker-side host answers (`ControlApi` of `protocol.ts`) on top of a
 * runtime: the Service Worker host exposes them with comlink, the extension host over a
 * `chrome.runtime` port. One implementation, so both answer alike.
 */

import type { Runtime } from "../core/runtime";
import type { ControlApi, HeartbeatInfo } from "./protocol";

/** The names of the control calls, for a host that dispatches them by name. */
export const CONTROL_METHODS: readonly (keyof ControlApi)[] = Object.freeze([
  "start",
  "get",
  "list",
  "inspect",
  "sendEvent",
  "cancel",
  "heartbeat",
]);

/**
 * The control API of `runtime`. `heartbeat` says who answers (the host's instance and whether its
 * start-up recovery finished).
 */
export function createControlApi(runtime: Runtime, heartbeat: () => HeartbeatInfo): ControlApi {
  return {
    start: async (name, input, options) => {
      const { id, name: fiberName, status, created } = await runtime.start(name, input, options);
      return { id, name: fiberName, status, created };
    },
    get: (id) => runtime.get(id),
    list: (query) => runtime.list(query),
    inspect: (id) => runtime.inspect(id),
    sendEvent: (id, name, payload) => runtime.sendEvent(id, name, payload),
    cancel: (id, reason) => runtime.cancel(id, reason),
    heartbeat: async () => heartbeat(),
  };
}
