/**
 * `fiberline/edge`: run Fiberline fibers in a Cloudflare Durable Object on its SQLite storage.
 * `createDurableObjectHost` hosts a runtime in an object; `routeToFiberObject` routes a Worker's
 * requests to one object per fiber; `SqliteStore` is the `Store` behind both.
 */

export { type Authorize, type FiberAction, readBodyText } from "./authorize";
export { type OriginPolicy, originPolicy } from "./cors";
export {
  createDurableObjectHost,
  type DurableObjectHost,
  type DurableObjectHostOptions,
  type RuntimeParts,
} from "./durable-object-host";
export {
  type DurableObjectNamespaceLike,
  type FiberRouterOptions,
  routeToFiberObject,
} from "./fiber-router";
export { errorResponse, handleFiberlineRequest, type RouteOptions } from "./http-routes";
export { objectLocks } from "./object-locks";
export type { HostLimits } from "./owned-routes";
export type {
  DurableObjectStateLike,
  DurableObjectStorageLike,
  SqlCursorLike,
  SqlStorageLike,
  SqlValue,
} from "./platform";
export { SqliteStore } from "./sqlite-store";
