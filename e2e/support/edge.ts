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

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, extname, join, resolve } from "node:path";
import { build } from "esbuild";
import { signToken } from "../../examples/edge/src/token";

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
  const config = await bundleExample();
  const args = [
    "dev",
    "-c",
    config,
    "--no-bundle",
    "--port",
    String(options.port),
    "--inspector-port",
    String(options.inspectorPort ?? options.port + 1),
    "--persist-to",
    persistTo,
    "--show-interactive-dev-session=false",
    ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
  ];
  const child = spawn(join(ROOT, "node_modules/.bin/wrangler"), args, {
    cwd: ROOT,
    detached: true, // its own process group: kill() reaches workerd too
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
  });
  let output = "";
  const append = (data: Buffer) => {
    output = (output + data.toString()).slice(-20_000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  const url = `http://localhost:${options.port}`;
  const signal = (name: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, name);
    } catch {
      // already gone
    }
  };
  const edge: StartedEdge = {
    url,
    prefixUrl: `${url}/__fiberline`,
    persistTo,
    pid: child.pid ?? -1,
    token: (user, ttlSeconds = 3600) =>
      signToken({ sub: user, exp: Math.floor(Date.now() / 1000) + ttlSeconds }, AUTH_SECRET),
    output: () => output,
    async stop() {
      signal("SIGTERM");
      const timer = setTimeout(() => signal("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
      signal("SIGKILL"); // a workerd left behind by wrangler's own exit
    },
    async kill() {
      signal("SIGKILL");
      await exited;
    },
  };
  try {
    await waitForAnswer(url, exited, options.readyTimeoutMs ?? 90_000);
  } catch (error) {
    await edge.kill();
    throw new Error(
      `The edge on port ${options.port} did not start: ${String(error)}\n${output.slice(-4_000)}`,
    );
  }
  return edge;
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

async function waitForAnswer(url: string, exited: Promise<void>, timeoutMs: number): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone) throw new Error("wrangler exited");
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`no answer within ${timeoutMs} ms`);
}

/** The child process type, for specs that want to watch it. */
export type { ChildProcess };
