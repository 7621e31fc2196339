/**
 * A `Store` wrapper that counts calls and the time they took, per method: how the bench explains
 * where a workload's time goes (e.g. how many transactions `recover()` issues and of which kind).
 */

import type { Store } from "../../src/index";

export interface MethodStats {
  calls: number;
  /** Sum of each call's duration (calls overlap, so this can exceed the wall time). */
  ms: number;
  /** When the first call began and the last one ended, in ms since `timedStore` was called. */
  firstAt: number;
  lastEnd: number;
}

/** Wraps `store`; `stats` fills in as methods are called. */
export function timedStore(store: Store): { store: Store; stats: Record<string, MethodStats> } {
  const stats: Record<string, MethodStats> = {};
  const origin = performance.now();
  const wrapped = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function" || typeof property !== "string") return value;
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const entry = stats[property] ?? { calls: 0, ms: 0, firstAt: t0 - origin, lastEnd: 0 };
        stats[property] = entry;
        entry.calls++;
        const result = value.apply(target, args);
        if (result instanceof Promise) {
          return result.finally(() => {
            const end = performance.now();
            entry.ms += end - t0;
            entry.lastEnd = end - origin;
          });
        }
        const end = performance.now();
        entry.ms += end - t0;
        entry.lastEnd = end - origin;
        return result;
      };
    },
  });
  return { store: wrapped, stats };
}
