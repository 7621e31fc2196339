/**
 * `copyHold`: the `Mirror`'s `hold` of a browser home (docs/design/continuity.md, "Shipping", the
 * two-worker rules). Every write of a mirrored copy, a mirror's or a hand-back's, is made under
 * the fiber's copy lock and after the store's outbox head was read, so that with two Service
 * Worker versions on one store the mirror of the one a fiber did not come home to never writes
 * (or rebuilds) the copy the other runs. Used by `BrowserContinuity` and the simulator's browser
 * workers.
 *
 * The copy lock is not the runner's lock: a runner never writes a copy that is away (the store
 * refuses its writes once the outbox head says so), and the one change that makes a copy a
 * runner's again, a hand-back's adoption, is made under the copy lock. So a run that was fenced
 * while inside a step (its runner keeps the runner's lock until the step returns) holds up no
 * mirror.
 */

import type { FiberLocks } from "../core/locks";
import type { MirrorOptions } from "./mirror";
import type { Outbox } from "./outbox";

/**
 * The hold for writes of copies under `locks` (the runtime's, shared by the origin's workers:
 * the copy lock is its lock named `copyLockName(fiberId)`) and `outbox` (this worker's view):
 * `null` while the fiber's copy lock is held (the other worker's mirror or hand-back) or the
 * outbox cannot be read, so nothing is written now; `{ home: true }` when the
 * store's head names the fiber this browser's again under a newer epoch than the fence this view
 * knows (it came home in another worker: `onHome` hears of it, and the mirror lets it go);
 * otherwise the held lock, released once the copy is written.
 *
 * @example
 * new Mirror({ store, source, hold: copyHold(locks, outbox) });
 */
export function copyHold(
  locks: FiberLocks,
  outbox: Outbox,
  onHome?: (fiberId: string) => void,
): NonNullable<MirrorOptions["hold"]> {
  return async (fiberId) => {
    const release = await locks.acquire(copyLockName(fiberId));
    // Read after the lock was taken: a read begun before it may predate an adoption.
    const known = await outbox.resync(fiberId, true);
    const home = known && outbox.where(fiberId)?.status === "home";
    if (home) onHome?.(fiberId);
    if (release === null) return home ? { home, release: () => {} } : null;
    if (!known) {
      release();
      return null;
    }
    return { home, release };
  };
}

/**
 * The name under which `copyHold` takes a fiber's copy lock from the runtime's `FiberLocks`: no
 * fiber id has a `#`, so it is never a runner's lock.
 */
export function copyLockName(fiberId: string): string {
  return `#copy#${fiberId}`;
}
