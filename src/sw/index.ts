/**
 * `fiberline/sw`: host a Fiberline runtime in a Service Worker (lifecycle, event-stream route,
 * control channel, keep-alive), plus the wire protocol shared with `fiberline/client`.
 */

export {
  BrowserContinuity,
  createReplicatedRuntime,
  type EdgeOptions,
  type ReplicatedRuntimeOptions,
} from "../continuity/browser-home";
export { installErrorTransfer } from "./error-transfer";
export { type EventRouteOptions, handleEventsRequest } from "./event-route";
export {
  createServiceWorkerHost,
  type FetchEventLike,
  type MessageEventLike,
  type ServiceWorkerHost,
  type ServiceWorkerHostOptions,
  type ServiceWorkerScopeLike,
} from "./host";
export { type ExtendableEventLike, WorkerLifetime, type WorkerLifetimeOptions } from "./lifetime";
export {
  AT_FIELD,
  type ClaimMessage,
  type ClientMessage,
  type ConnectMessage,
  type ControlApi,
  DEFAULT_PREFIX,
  type ErrorBody,
  EVENT_STREAM_TYPE,
  EVENTS_PATH,
  eventsUrl,
  type HandshakeReply,
  type HeartbeatInfo,
  type HeartbeatMessage,
  HOST_HEADER,
  isClientMessage,
  PROTOCOL_VERSION,
  type RpcArgs,
  type RpcMethod,
  type RpcResult,
  STORAGE_CHANNEL,
  type StorageHealth,
  type StorageHealthMessage,
  type StorageHealthQuery,
  type WorkerInfo,
} from "./protocol";
export {
  type PausedFibersRuntime,
  type WatchedStore,
  type WatchStorageOptions,
  watchStorage,
} from "./storage-watch";
