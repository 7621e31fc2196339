/**
 * A simulated Web Locks manager shared by the runtimes of one schedule (all Service Workers of
 * one origin share `navigator.locks`). Each runtime gets a `FiberLocks` view with
 * `exclusive: true`; a runtime that crashes loses every lock it held at once, as a dead context
 * does, and a lock can be taken away from a live holder (the "lock lost" fault), after which the
 * holder's release does nothing.
 */

import type { FiberLocks } from "../core/locks";
import type { Trace } from "./trace";

interface Grant {
  owner: string;
  token: number;
}

/** The origin-wide lock table. */
export class SimLockManager {
  readonly #held = new Map<string, Grant>();
  readonly #waiters = new Map<string, Array<() => void>>();
  readonly #trace: Trace;
  #tokens = 0;

  constructor(trace: Trace) {
    this.#trace = trace;
  }

  /** The `FiberLocks` a runtime named `owner` uses. */
  view(owner: string): FiberLocks {
    return {
      exclusive: true,
      acquire: async (fiberId) => {
        if (this.#held.has(fiberId)) return null;
        const grant = { owner, token: ++this.#tokens };
        this.#held.set(fiberId, grant);
        return () => {
          if (this.#held.get(fiberId) === grant) this.#release(fiberId);
        };
      },
      released: (fiberId) =>
        new Promise<void>((resolve) => {
          if (!this.#held.has(fiberId)) {
            resolve();
            return;
          }
          const list = this.#waiters.get(fiberId) ?? [];
          list.push(resolve);
          this.#waiters.set(fiberId, list);
        }),
    };
  }

  /** Releases every lock `owner` holds (its context died). */
  releaseAll(owner: string): void {
    for (const [fiberId, grant] of [...this.#held]) if (grant.owner === owner) this.#release(fiberId);
  }

  /** The fibers whose locks `owner` holds. */
  heldBy(owner: string): string[] {
    return [...this.#held].filter(([, g]) => g.owner === owner).map(([id]) => id);
  }

  /**
   * Per fiber, the owners its lock was ever taken away from: a run that lost its lock goes on
   * (the generation fences its writes), so it no longer holds anyone off.
   */
  readonly stolenFrom = new Map<string, Set<string>>();

  /** Takes fiber `fiberId`'s lock away from its live holder (the "lock lost" fault). */
  steal(fiberId: string): void {
    const grant = this.#held.get(fiberId);
    if (!grant) return;
    const victims = this.stolenFrom.get(fiberId) ?? new Set<string>();
    victims.add(grant.owner);
    this.stolenFrom.set(fiberId, victims);
    this.#trace.add("FAULT", `lock of ${fiberId} lost by live ${grant.owner}`);
    this.#release(fiberId);
  }

  #release(fiberId: string): void {
    this.#held.delete(fiberId);
    const waiters = this.#waiters.get(fiberId);
    this.#waiters.delete(fiberId);
    for (const wake of waiters ?? []) wake();
  }
}
