/**
 * `fiberline/client`: connect a page to the fibers running in its Service Worker: typed control
 * calls with deadlines, and a resumable reader of each fiber's event stream. The same client
 * reaches the edge host (`connect({ baseUrl })`) and a browser extension's background worker
 * (`connect({ extension: true })`), and where no Service Worker can run, one tab of the origin
 * runs the fibers for all (`connect({ fallback: { runtime } })`).
 */

export type { TabFallbackOptions } from "../tabs/tab-host";
export { type ConnectOptions, connect, FiberlineClient, type FiberMap } from "./client";
export { type EventReaderOptions, type RawChunk, readFiberEvents } from "./event-reader";
export { ExtensionChannel, type ExtensionChannelOptions } from "./extension-channel";
export { readExtensionStream } from "./extension-stream";
export { type ControlChannel, HttpChannel, type HttpChannelOptions } from "./http-channel";
export { type ChannelHost, RpcChannel, type RpcChannelOptions, type WorkerTarget } from "./rpc-channel";
export { requestPersistentStorage, watchStorageHealth } from "./storage-health";
export { findRegistration, serviceWorkerContainer, waitForController } from "./worker-registration";
