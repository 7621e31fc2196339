/**
 * The edge for e2e specs: `examples/edge` under `wrangler dev` (real workerd, SQLite-backed
 * Durable Objects, state persisted to a directory), with continuity on and a short home lease,
 * on a port the spec chooses, killable with SIGKILL and restartable on the same state.
 *
 *   const edge = await startEdge({ port: 8850, leaseMs: 3_000, allowedOrigins: ["http://localhost:5287"] });
 *   const token = await edge.token("alice");           // Authorization: Bearer <token>
 *   // a Service Worker ships to `${edge.url}/__fiberline/fibers/<id>/replicate` (edge.prefixUrl)
 *   await edge.kill();                                  // SIGKILL of wrangler and workerd
 *   const again = await startEdge({ port: 8850, persistTo: edge.persistTo, leaseMs: 3_000 });
 *   await again.stop();
 *
 * What runs: the example Worker (`examples/edge/src/worker.ts`), one Durable Object per user
 * (`group: "principal"`), every route behind an HS256 bearer token (`token(user)` signs one with
 * the secret this helper hands the Worker), CORS for `allowedOrigins` exactly (preflights answered,
 * other origins `403`). Replicated kinds, defined in `examples/edge/src/continuity-fibers.ts` (a
 * browser fixture imports the same module: `continuityFibers("browser", defineFiber)`):
 *   - `steps` `{ steps, stepMs }`: `steps` journaled steps, a `progress` chunk `{ i, where,
 *     interrupted }` after each; returns `{ ran: [where...] }`.
 *   - `approval`: waits for an `approval` event; emits `approved` `{ answer, where }`, returns it.
 * `where` is "edge" for what the edge ran. Also `assistant` (mock model) and `ticker`.
 *
 * The Worker is bundled by this helper and run with `wrangler dev --no-bundle` from a directory of
 * its own, so edits to the repository's sources during a spec never restart it (see
 * `bundleExample`); each start bundles the sources as they are then.
 *
 * Ports: `port` serves HTTP; wrangler's inspector gets `port + 1` unless `inspectorPort` is given
 * (keep both in 8840-8859 for this repository's specs). `wrangler dev` works offline; it prints a
 * DNS error for `Request.cf` and goes on.
 *
 * `kill()` sends SIGKILL to the process group this helper started (wrangler and its workerd), so
 * nothing is flushed or closed: the persisted SQLite files are what a crash leaves. `stop()` ends
 * it politely (SIGTERM, then SIGKILL after 5 s). Both resolve once the process has exited.
 */

import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, extname, join, resolve } from "node:path";
import { build } from "esbuild";
import { signToken } from "../../examples/edge/src/token";
import { type ProcessGroup, startGroup, waitForAnswer } from "./process-group";

/** Options of `startEdge`. */
export interface StartEdgeOptions {
  /** The HTTP port (the edge is `http://localhost:<port>`). */
  port: number;
  /** The home lease in ms (default 3000); `0` leaves continuity off. */
  leaseMs?: number;
  /** Where Durable Object state is persisted (default: a new temp directory). Reuse it to restart. */
  persistTo?: string;
  /** Origins whose pages may call the edge (CORS); default none. */
  allowedOrigins?: readonly string[];
  /** The inspector port (default `port + 1`). */
  inspectorPort?: number;
  /** Unfinished fibers per user (default 100, so specs are not limited). */
  maxUnfinishedFibers?: number;
  /** Further Worker vars (`--var NAME:value`). */
  vars?: Record<string, string>;
  /** How long to wait for the edge to answer (default 90 s: the first start bundles the example). */
  readyTimeoutMs?: number;
}

/** A running edge. */
export interface StartedEdge {
  /** `http://localhost:<port>`. */
  readonly url: string;
  /** `url` and the Fiberline prefix: `http://localhost:<port>/__fiberline` (a `shipOverHttp` base). */
  readonly prefixUrl: string;
  /** The persisted state's directory (pass it to `startEdge` again to restart on it). */
  readonly persistTo: string;
  /** The id of the process group (wrangler's pid). */
  readonly pid: number;
  /** An HS256 bearer token for `user` (its principal), valid `ttlSeconds` (default 1 h). */
  token(user: string, ttlSeconds?: number): Promise<string>;
  /** What wrangler and workerd printed so far (for a failing spec's message). */
  output(): string;
  /** Ends wrangler and workerd (SIGTERM, SIGKILL after 5 s); resolves once they have exited. */
  stop(): Promise<void>;
  /** SIGKILL of wrangler and workerd at once, as a crash; resolves once they have exited. */
  kill(): Promise<void>;
}

/** The secret the helper signs tokens with; a test value, never a real one. */
const AUTH_SECRET = "fiberline-e2e-edge-secret";
const ROOT = resolve(import.meta.dirname, "../..");

/**
 * Starts `wrangler dev` on `examples/edge` and resolves once it answers HTTP.
 *
 * Failure semantics: rejects (with wrangler's output) when it exits first or does not answer
 * within `readyTimeoutMs`; the process group is killed before rejecting, so nothing is left on
 * the port.
 */
export async function startEdge(options: StartEdgeOptions): Promise<StartedEdge> {
  const persistTo = options.persistTo ?? mkdtempSync(join(tmpdir(), "fiberline-edge-e2e-"));
  const vars: Record<string, string> = {
    AUTH_SECRET,
    ALLOWED_ORIGINS: (options.allowedOrigins ?? []).join(","),
    CONTINUITY_LEASE_MS: options.leaseMs === 0 ? "" : String(options.leaseMs ?? 3_000),
    MAX_UNFINISHED_FIBERS: String(options.maxUnfinishedFibers ?? 100),
    ...options.vars,
  };
  const group = await startWrangler({
    config: await bundleExample(),
    port: options.port,
    ...(options.inspectorPort === undefined ? {} : { inspectorPort: options.inspectorPort }),
    persistTo,
    vars,
    ready: { path: "/", ok: true, timeoutMs: options.readyTimeoutMs ?? 90_000 },
  });
  const url = `http://localhost:${options.port}`;
  return {
    url,
    prefixUrl: `${url}/__fiberline`,
    persistTo,
    pid: group.pid,
    token: (user, ttlSeconds = 3600) =>
      signToken({ sub: user, exp: Math.floor(Date.now() / 1000) + ttlSeconds }, AUTH_SECRET),
    output: () => group.output(),
    stop: () => group.stop(),
    kill: () => group.kill(),
  };
}

/**
 * `wrangler dev -c <config> --no-bundle` on `port` (its inspector on `inspectorPort`, default
 * `port + 1`), Durable Object state persisted to `persistTo`, each of `vars` as `--var`, in a
 * process group of its own; resolves once `ready.path` answers (any status, or a 2xx with
 * `ok`). `config` is a `bundleForWrangler` result.
 *
 * Failure semantics: rejects with wrangler's output when it exits first or does not answer
 * within `ready.timeoutMs`; the group is killed first, so nothing is left on the port.
 */
export async function startWrangler(options: {
  config: string;
  port: number;
  inspectorPort?: number;
  persistTo: string;
  vars: Record<string, string>;
  ready: { path: string; ok?: boolean; timeoutMs: number };
}): Promise<ProcessGroup> {
  const group = startGroup(join(ROOT, "node_modules/.bin/wrangler"), [
    "dev",
    "-c",
    options.config,
    "--no-bundle",
    "--port",
    String(options.port),
    "--inspector-port",
    String(options.inspectorPort ?? options.port + 1),
    "--persist-to",
    options.persistTo,
    "--show-interactive-dev-session=false",
    ...Object.entries(options.vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
  ]);
  try {
    await waitForAnswer(`http://localhost:${options.port}${options.ready.path}`, group, {
      timeoutMs: options.ready.timeoutMs,
      ...(options.ready.ok ? { ok: true } : {}),
    });
  } catch (error) {
    throw new Error(`wrangler dev on port ${options.port} did not start: ${(error as Error).message}`);
  }
  return group;
}

/**
 * Bundles the example Worker (with `fiberline` resolved to this repository's sources, as its
 * `wrangler.toml` aliases it) into a directory of its own, beside a copy of its `wrangler.toml`
 * that runs the bundle, and returns that config's path. Run with `--no-bundle`, wrangler then
 * watches nothing of the repository: it would restart the Worker, and every Durable Object with
 * it, whenever someone edits a source file, which in a spec is an unplanned crash of the edge.
 */
async function bundleExample(): Promise<string> {
  return bundleForWrangler({
    entry: "examples/edge/src/worker.ts",
    wranglerToml: "examples/edge/wrangler.toml",
    alias: {
      fiberline: join(ROOT, "src/index.ts"),
      "fiberline/agent": join(ROOT, "src/agent/index.ts"),
      "fiberline/edge": join(ROOT, "src/edge/index.ts"),
    },
    // The aliases are for wrangler's own bundling, which is off.
    toml: (text, main) =>
      text.replace('main = "src/worker.ts"', `main = "${main}"`).replace(/\[alias\][^[]*/, ""),
  });
}

/**
 * Bundles a Worker `entry` (a path from the repository's root) with esbuild as wrangler would,
 * into a temporary directory of its own, beside its `wranglerToml` rewritten by `toml` to run the
 * bundle (`main` is the bundle's file name); returns that config's path, for `wrangler dev -c
 * <config> --no-bundle` (see `bundleExample` for why the sources must not be wrangler's to watch).
 */
export async function bundleForWrangler(options: {
  entry: string;
  wranglerToml: string;
  alias?: Record<string, string>;
  toml(text: string, main: string): string;
}): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "fiberline-edge-worker-"));
  const main = `${basename(options.entry, extname(options.entry))}.js`;
  await build({
    entryPoints: [join(ROOT, options.entry)],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    outfile: join(dir, main),
    external: ["cloudflare:*"],
    ...(options.alias ? { alias: options.alias } : {}),
    logLevel: "silent",
  });
  const config = join(dir, "wrangler.toml");
  writeFileSync(config, options.toml(readFileSync(join(ROOT, options.wranglerToml), "utf8"), main));
  return config;
}
