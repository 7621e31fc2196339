/**
 * The fallback fixture page: `connect({ fallback })` with the e2e fixture's fibers, for a browser
 * whose Service Worker API the spec removed. Whichever tab wins the election runs the fibers;
 * `window.tabs` lets the specs start fibers, read streams (kept in memory, in the order this
 * page saw them), ask who leads and count the step executions the effects fiber recorded.
 */

import { connect, type FiberlineClient } from "../../src/client/index";
import type { FiberEvent } from "../../src/core/records";
import { createRuntime } from "../../src/core/runtime";
import { IdbStore } from "../../src/store/idb-store";
import { executions } from "../fixture/effects-db";
import { effects, setRunner, ticker } from "../fixture/fibers";

type Fibers = { ticker: typeof ticker; effects: typeof effects };

/** This page load, as the runner recorded with each step execution. */
const load = `tab-${Math.random().toString(36).slice(2, 8)}`;
/** The leader instances this page has been connected to, in order. */
const leaders: string[] = [];

const clientPromise: Promise<FiberlineClient<Fibers>> = connect<Fibers>({
  timeoutMs: 10_000,
  onConnect: (worker) => leaders.push(worker.instanceId),
  fallback: {
    runtime: () => {
      setRunner(load);
      return createRuntime({
        store: new IdbStore({ name: "fiberline-e2e-fallback" }),
        fibers: [ticker, effects],
      });
    },
  },
});

const logs: Record<string, FiberEvent[]> = {};
const readers: Record<
  string,
  { status: "reading" | "done" } | { status: "error"; code?: string; error: string }
> = {};

const tabs = {
  load,
  serviceWorkerApi: "serviceWorker" in navigator && navigator.serviceWorker !== undefined,
  async start(name: keyof Fibers, input: Record<string, number>) {
    const client = await clientPromise;
    // biome-ignore lint/suspicious/noExplicitAny: the spec passes the fixture fibers' own inputs
    return await client.start(name, input as any);
  },
  read(id: string): void {
    logs[id] = [];
    readers[id] = { status: "reading" };
    void (async () => {
      try {
        const client = await clientPromise;
        for await (const ev of client.events(id)) logs[id]?.push(ev);
        readers[id] = { status: "done" };
      } catch (error) {
        readers[id] = { status: "error", code: (error as { code?: string }).code, error: String(error) };
      }
    })();
  },
  seen: (id: string) => logs[id] ?? [],
  reader: (id: string) => readers[id],
  leading: async () => (await clientPromise).leading,
  leaders: () => [...leaders],
  executions,
};

declare global {
  interface Window {
    tabs: typeof tabs;
  }
}
window.tabs = tabs;
void clientPromise.then(() => document.body.setAttribute("data-connected", "true"));
