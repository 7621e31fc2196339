/**
 * Messages between the bench page and its workers (the dedicated bench worker and the bench
 * Service Worker). Bench-only: the Service Worker's own Fiberline traffic uses `src/sw/protocol`.
 */

import type { Durability } from "./raw-idb";

/** Page -> dedicated worker: run job `job`; `reply` answers a `checkpoint`. */
export type ToWorker =
  | { type: "run"; job: string; params: Record<string, unknown> }
  | { type: "reply"; data: unknown };

/** Dedicated worker -> page. */
export type FromWorker =
  | { type: "checkpoint"; name: string; data: unknown }
  | { type: "done"; result: unknown }
  | { type: "error"; message: string };

/** Page -> bench Service Worker (each with a `MessagePort` to answer on). */
export type ToServiceWorker =
  | { type: "bench/start"; name: string; input: unknown }
  /** `bench/start`, answered with the id and how long the worker took: `{ id, inWorkerMs }` (B9). */
  | { type: "bench/start-timed"; name: string; input: unknown }
  | { type: "bench/cancel"; id: string }
  | { type: "bench/raw-batched"; count: number; bytes: number }
  | { type: "bench/raw-single"; count: number; bytes: number }
  | { type: "bench/emit-durable"; n: number; burst: number; text: string }
  /** B3's hand-written floor: answers the id of a stream to fetch at `/bench-raw/fibers/<id>/events`. */
  | { type: "bench/raw-stream-prepare"; n: number; burst: number; text: string }
  | { type: "bench/release-waiters" }
  | { type: "bench/info" }
  | { type: "bench/timeline" };

/** The answer on the port: a value or an error message. */
export type ServiceWorkerReply = { ok: true; value: unknown } | { ok: false; message: string };

/** What every job receives. */
export interface JobContext {
  durability: Durability;
  /** Posts `data` under `name` and waits for the page's (the harness's) reply. */
  checkpoint(name: string, data?: unknown): Promise<unknown>;
}

export function isServiceWorkerMessage(data: unknown): data is ToServiceWorker {
  const type = (data as { type?: unknown } | null)?.type;
  return typeof type === "string" && type.startsWith("bench/");
}
