/**
 * `fiberline/react`: hooks over `fiberline/client` for React apps: a provider holding the client,
 * `useFiber` (status, snapshot, outcome), `useFiberEvents` (the stream, resumed, deduplicated)
 * and `useStartFiber`.
 */

export {
  type FiberlineConnection,
  FiberlineProvider,
  type FiberlineProviderProps,
  useFiberlineClient,
  useFiberlineConnection,
} from "./context";
export {
  type EventLog,
  type EventLogAction,
  emptyLog,
  eventLogReducer,
  lastSeq,
  type StreamStatus,
} from "./event-log";
export { type FiberState, type UseFiberOptions, useFiber } from "./use-fiber";
export { type FiberEventsState, type UseFiberEventsOptions, useFiberEvents } from "./use-fiber-events";
export { type StartFiberState, useStartFiber } from "./use-start-fiber";
