/**
 * A `Store` wrapper that counts calls and the time they took, per method: how the bench explains
 * where a workload's time goes (e.g. how many transactions `recover()` issues and of which kind).
 */

import type { Store } from "../../src/index";

export interface MethodStats {
  calls: number;
  /** Sum of each call's duration (calls overlap, so this can exceed the wall time). */
  ms: number;
}

/** Wraps `store`; `stats` fills in as methods are called. */
export function timedStore(store: Store): { store: Store; stats: Record<string, MethodStats> } {
  const stats: Record<string, MethodStats> = {};
  const wrapped = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function" || typeof property !== "string") return value;
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const entry = stats[property] ?? { calls: 0, ms: 0 };
        stats[property] = entry;
        entry.calls++;
        const result = value.apply(target, args);
        if (result instanceof Promise) {
          return result.finally(() => {
            entry.ms += performance.now() - t0;
          });
        }
        entry.ms += performance.now() - t0;
        return result;
      };
    },
  });
  return { store: wrapped, stats };
}
