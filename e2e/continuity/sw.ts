/**
 * The Service Worker of the continuity e2e: `createReplicatedRuntime` on IndexedDB with the
 * ticker, the agent and the gate replicated to the edge (and the homer, which comes home), hosted by `createServiceWorkerHost`. The edge's
 * base URL, the ledger's and the lease come in the script URL's query (`/sw.js?edge=...&ledger=...
 * &lease=...`), so one build serves any ports.
 */

import { createReplicatedRuntime } from "../../src/continuity/browser-home";
import { IdbStore } from "../../src/store/idb-store";
import { createServiceWorkerHost, type ServiceWorkerScopeLike, watchStorage } from "../../src/sw/index";
import { continuityFibers } from "./fibers";

const scope = globalThis as unknown as ServiceWorkerScopeLike;
const params = new URL(scope.location.href).searchParams;
const ledger = params.get("ledger") ?? "http://localhost:5623";
const fibers = continuityFibers("browser", () => ledger);

const { runtime, continuity } = createReplicatedRuntime({
  // Watched: a database the browser wiped is reported, and the fibers its marker (in Cache
  // Storage, outside IndexedDB) named are restored from the edge at the worker's start.
  store: watchStorage(new IdbStore({ name: "fiberline-continuity-e2e" })),
  fibers: [fibers.ticker, fibers.homer, fibers.agent, fibers.gate],
  edge: {
    baseUrl: params.get("edge") ?? "http://localhost:5621/__fiberline",
    fibers: ["ticker", { name: "homer", comeHome: "at-suspension" }, "agent", "gate"],
    leaseMs: Number(params.get("lease") ?? 5_000),
  },
});
createServiceWorkerHost({ runtime, continuity, skipWaiting: true });
