/**
 * The page's view of the worker's storage: `watchStorageHealth` hears every `StorageHealth` the
 * worker's `watchStorage` store publishes (out of quota and which fibers are paused, a wiped
 * database and which fibers it took, whether storage is persistent), and `requestPersistentStorage`
 * asks the browser not to evict the origin's data, which the client does at the first start.
 */

import {
  STORAGE_CHANNEL,
  type StorageHealth,
  type StorageHealthMessage,
  type StorageHealthQuery,
} from "../sw/protocol";

/**
 * Calls `listener` with the worker's storage health now (if the worker is running) and on every
 * change, until the returned function is called. Needs a worker whose store is wrapped by
 * `watchStorage` (`fiberline/sw`); otherwise the listener is never called.
 *
 * @example
 * watchStorageHealth((health) => {
 *   if (health.state === "quota_exceeded") showBanner(`Out of storage: ${health.paused.length} paused`);
 *   if (health.state === "store_lost") showBanner(`The browser deleted ${health.lost.join(", ")}`);
 * });
 */
export function watchStorageHealth(listener: (health: StorageHealth) => void): () => void {
  if (typeof BroadcastChannel !== "function") return () => {};
  const channel = new BroadcastChannel(STORAGE_CHANNEL);
  channel.addEventListener("message", (event: MessageEvent) => {
    const message = event.data as Partial<StorageHealthMessage> | null;
    if (message?.type === "fiberline/storage" && message.health) listener(message.health);
  });
  channel.postMessage({ type: "fiberline/storage-query" } satisfies StorageHealthQuery);
  return () => channel.close();
}

let requested: Promise<boolean | undefined> | undefined;

/**
 * Asks the browser once per page to keep this origin's storage persistent
 * (`navigator.storage.persist()`, which only a page may call), so fibers are not evicted under
 * storage pressure. Resolves with the answer, or `undefined` where the browser has no such API.
 * Chromium decides by site engagement (an installed app is granted); Firefox may ask the user.
 */
export function requestPersistentStorage(): Promise<boolean | undefined> {
  requested ??= (async () => {
    const storage = (globalThis.navigator as Navigator | undefined)?.storage;
    if (!storage?.persist) return undefined;
    try {
      if (await storage.persisted()) return true;
      return await storage.persist();
    } catch {
      return undefined;
    }
  })();
  return requested;
}
