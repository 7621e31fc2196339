/**
 * The second Service Worker of the continuity e2e: the replicated kinds of `examples/edge`
 * (`steps`, `approval`, from its `continuity-fibers.ts`) against that example's edge, whose
 * routes need a bearer token (`?token=` in this script's URL: a test's stand-in for however an
 * app hands its worker the user's credentials) and keep one Durable Object per user.
 */

import { continuityFibers } from "../../examples/edge/src/continuity-fibers";
import { createReplicatedRuntime } from "../../src/continuity/browser-home";
import { defineFiber } from "../../src/core/define";
import { IdbStore } from "../../src/store/idb-store";
import { createServiceWorkerHost, type ServiceWorkerScopeLike } from "../../src/sw/index";

const scope = globalThis as unknown as ServiceWorkerScopeLike;
const params = new URL(scope.location.href).searchParams;

const { runtime, continuity } = createReplicatedRuntime({
  store: new IdbStore({ name: "fiberline-continuity-example" }),
  // The example takes the `defineFiber` of its caller's copy of the package.
  fibers: continuityFibers("browser", defineFiber),
  edge: {
    baseUrl: params.get("edge") ?? "http://localhost:5630/__fiberline",
    fibers: ["steps", "approval"],
    leaseMs: Number(params.get("lease") ?? 3_000),
    headers: { authorization: `Bearer ${params.get("token") ?? ""}` },
  },
});
createServiceWorkerHost({ runtime, continuity, skipWaiting: true });
