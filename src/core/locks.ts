/**
 * Per-fiber exclusive locks. Where `navigator.locks` exists (pages and Service Workers of one
 * origin share it) a held Web Lock proves its holder is alive, and a lock released by a dead
 * context proves the previous runner is gone. Elsewhere the lease on the fiber record decides.
 */

/** A lock manager as the runtime uses it. */
export interface FiberLocks {
  /** True when a granted lock proves any previous holder is gone (Web Locks). */
  readonly exclusive: boolean;
  /** Takes the fiber's lock if free; returns its release function, or `null` when it is held. */
  acquire(fiberId: string): Promise<(() => void) | null>;
  /**
   * Resolves once the fiber's lock is free (its holder released it or died). Optional: a runtime
   * that found a fiber held elsewhere uses it to pick the fiber up when the holder lets go, e.g. a
   * new Service Worker version waiting for the old one.
   */
  released?(fiberId: string): Promise<void>;
}

/** The subset of the Web Locks API used here. */
export interface WebLockManager {
  request(
    name: string,
    options: { ifAvailable?: boolean; mode?: "exclusive" | "shared" },
    callback: (lock: unknown) => Promise<unknown> | unknown,
  ): Promise<unknown>;
}

/** Locks backed by the Web Locks API. */
export function webLocks(manager: WebLockManager, prefix = "fiberline:fiber:"): FiberLocks {
  return {
    exclusive: true,
    acquire(fiberId) {
      return new Promise((resolve, reject) => {
        manager
          .request(`${prefix}${fiberId}`, { ifAvailable: true }, (lock) => {
            if (!lock) {
              resolve(null);
              return undefined;
            }
            // Hold the lock until the runner releases it.
            return new Promise<void>((release) => resolve(release));
          })
          .catch(reject);
      });
    },
    async released(fiberId) {
      // Granted only once every holder is gone; released at once so a runner can take it.
      await manager.request(`${prefix}${fiberId}`, { mode: "exclusive" }, () => undefined);
    },
  };
}

/** In-process locks for hosts without Web Locks (Node, tests): the lease covers other processes. */
export function localLocks(): FiberLocks {
  const held = new Set<string>();
  return {
    exclusive: false,
    async acquire(fiberId) {
      if (held.has(fiberId)) return null;
      held.add(fiberId);
      return () => held.delete(fiberId);
    },
  };
}

/** Web Locks when the global `navigator.locks` exists, else in-process locks. */
export function defaultLocks(): FiberLocks {
  const nav = (globalThis as { navigator?: { locks?: WebLockManager } }).navigator;
  return nav?.locks ? webLocks(nav.locks) : localLocks();
}
