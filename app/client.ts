/**
 * The page's connection to the demo worker: `connect()` from `fiberline/client` with the worker's
 * URL, typed with the worker's fiber definitions, shared with the app through
 * `fiberline/react`'s provider and exposed as `window.fiberline` for tests and the console.
 */

import type { AgentInput, AgentOutput } from "../src/agent/agent";
import { connect, type FiberlineClient } from "../src/client/index";
import type { FiberDefinition } from "../src/core/define";
import { useFiberlineClient } from "../src/react/index";
import type { EffectsInput, TickerInput } from "./lab-fibers";

/** The fibers the demo worker registers (types only: the page never loads their code). */
export type DemoFibers = {
  assistant: FiberDefinition<AgentInput, AgentOutput>;
  "lab.ticker": FiberDefinition<TickerInput, { ticks: number }>;
  "lab.effects": FiberDefinition<EffectsInput, { effects: number }>;
};

/** The connected client. */
export type DemoClient = FiberlineClient<DemoFibers>;

declare global {
  interface Window {
    /** The connected Fiberline client (the object `connect()` returns). */
    fiberline?: DemoClient;
  }
}

/** Connects to the demo worker (registering it on the first visit). */
export async function connectDemo(
  onWorker?: (instanceId: string, restarted: boolean) => void,
): Promise<DemoClient> {
  const client = await connect<DemoFibers>({
    // The dev server serves the worker under another URL than the production build.
    scriptUrl: import.meta.env.DEV ? "/dev-sw.js?dev-sw" : "/sw.js",
    registerOptions: { type: "module", scope: "/" },
    ...(onWorker ? { onConnect: (worker, restarted) => onWorker(worker.instanceId, restarted) } : {}),
  });
  window.fiberline = client;
  return client;
}

/** The connected client; the app renders below a `FiberlineProvider` that holds it. */
export function useClient(): DemoClient {
  const client = useFiberlineClient<DemoFibers>();
  if (!client) throw new Error("useClient() needs a <FiberlineProvider client={…}> with a connected client.");
  return client;
}

/**
 * Runs an idempotent read (get, list, inspect, heartbeat) again when the worker restarted while
 * it was pending (`worker_restarted`): the client rejects such calls rather than guess, and a
 * read is safe to repeat.
 */
export async function readAgainOnRestart<T>(read: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      if (code !== "worker_restarted" || attempt >= attempts) throw error;
    }
  }
}
