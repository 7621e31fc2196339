/**
 * B10's edge: `bench/edge/worker.ts` bundled as wrangler would (esbuild, `cloudflare:*` external,
 * the settings of `src/edge/testing/workerd.ts`'s `bundleWorker`) and run in real workerd through
 * Miniflare, listening on `http://127.0.0.1:<port>`, with SQLite-backed Durable Objects kept in
 * memory (each run starts empty). The bench page's Chromium reaches it over real HTTP, across
 * origins: `allowedOrigin` is the bench origin.
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** The compatibility date of the repository's test Workers (`COMPATIBILITY_DATE`). */
const COMPATIBILITY_DATE = "2026-04-01";

/** Starts the bench edge; resolves with `{ url, close() }` once it answers. */
export async function startBenchEdge({ port, leaseMs, allowedOrigin }) {
  const bundle = await build({
    entryPoints: [join(root, "bench/edge/worker.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    write: false,
    logLevel: "silent",
    external: ["cloudflare:*"],
  });
  const mf = new Miniflare({
    modules: true,
    script: bundle.outputFiles[0].text,
    compatibilityDate: COMPATIBILITY_DATE,
    durableObjects: { FIBERS: { className: "BenchFiberObject", useSQLite: true } },
    bindings: { LEASE_MS: String(leaseMs), ALLOWED_ORIGIN: allowedOrigin },
    host: "127.0.0.1",
    port,
  });
  const ready = await mf.ready;
  const url = ready.origin;
  return {
    url,
    /** The edge's Fiberline prefix (a `shipOverHttp` / `edge.baseUrl`). */
    prefixUrl: `${url}/__fiberline`,
    close: () => mf.dispose(),
  };
}
