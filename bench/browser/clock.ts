/**
 * What the bench page shares with the workers' fibers, in a module of its own: importing it from
 * `fibers.ts` made the page load and evaluate every bench fiber (the agent, its JSON Schema
 * validator, the raw IndexedDB baselines), 113 KB the page never runs, on B5's critical path.
 */

/** Absolute time in ms with sub-ms precision, comparable across the page and its workers. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

/** Where the bench server answers as the mock model (`bench/run.mjs`). */
export const MOCK_MODEL_BASE = "/mock-model/v1";
