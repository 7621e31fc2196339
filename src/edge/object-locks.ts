/**
 * Fiber locks inside a Durable Object. Cloudflare runs at most one live instance of an object,
 * and a new instance starts only once the previous one is gone (evicted, crashed or redeployed;
 * a straggler's storage writes are refused by the platform). So a lock taken in this instance
 * proves any previous runner of the fiber is gone, as a Web Lock does in the browser: recovery
 * can take a fiber at once instead of waiting out the dead runner's lease.
 */

import type { FiberLocks } from "../core/locks";

/**
 * In-memory locks that claim exclusivity (`exclusive: true`): the host's default.
 *
 * Failure semantics: exclusivity comes from the single-instance guarantee of a Durable Object;
 * do not use these locks where two processes share one store.
 */
export function objectLocks(): FiberLocks {
  const held = new Set<string>();
  return {
    exclusive: true,
    async acquire(fiberId) {
      if (held.has(fiberId)) return null;
      held.add(fiberId);
      return () => held.delete(fiberId);
    },
  };
}
