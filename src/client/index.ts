/**
 * `fiberline/client`: connect a page to the fibers running in its Service Worker: typed control
 * calls with deadlines, and a resumable reader of each fiber's event stream.
 */

export { type ConnectOptions, connect, FiberlineClient, type FiberMap } from "./client";
export { type EventReaderOptions, readFiberEvents } from "./event-reader";
export { type ControlChannel, HttpChannel, type HttpChannelOptions } from "./http-channel";
export { type ChannelHost, RpcChannel, type RpcChannelOptions, type WorkerTarget } from "./rpc-channel";
export { findRegistration, serviceWorkerContainer, waitForController } from "./worker-registration";
