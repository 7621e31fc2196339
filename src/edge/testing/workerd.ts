/**
 * Node-side helpers for the edge tests: bundle a test Worker with esbuild and run it in real
 * workerd through Miniflare, optionally on a persisted storage directory that survives a
 * `restart()` (the process is killed and a new one starts on the same files, as after an
 * eviction or a crash).
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare, type MiniflareOptions } from "miniflare";

const shim = fileURLToPath(new URL("./vitest-shim.ts", import.meta.url));

/** The compatibility date every test Worker (and the example's `wrangler.toml`) uses. */
export const COMPATIBILITY_DATE = "2026-04-01";

/**
 * Bundles `entry` (a path relative to the repository root or absolute) into one ES module, as
 * wrangler would: `cloudflare:*` modules stay external (workerd provides them), `vitest` is the
 * shim, and `alias` maps further specifiers (e.g. `fiberline` to its sources).
 */
export async function bundleWorker(entry: string, alias: Record<string, string> = {}): Promise<string> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    write: false,
    sourcemap: "inline",
    logLevel: "silent",
    external: ["cloudflare:*"],
    alias: { ...alias, vitest: shim },
  });
  const [file] = result.outputFiles;
  if (!file) throw new Error(`esbuild produced no output for ${entry}`);
  return file.text;
}

/** Options of {@link TestWorker}. */
export interface TestWorkerOptions {
  script: string;
  /** Binding name -> Durable Object class name (all SQLite-backed). */
  durableObjects: Record<string, string>;
  /** Keep Durable Object storage on disk, so `restart()` finds it again. */
  persist?: boolean;
  /** Node functions the Worker can call as `env.<NAME>.fetch(...)`. */
  serviceBindings?: Record<string, (request: Request) => Promise<Response> | Response>;
  /** Plain-text bindings (`env.<NAME>`). */
  bindings?: Record<string, string>;
}

/** A Worker running in workerd, restartable on the same storage. */
export class TestWorker {
  readonly #options: TestWorkerOptions;
  readonly #dir: string | undefined;
  #mf: Miniflare;

  constructor(options: TestWorkerOptions) {
    this.#options = options;
    this.#dir = options.persist ? mkdtempSync(join(tmpdir(), "fiberline-edge-")) : undefined;
    this.#mf = this.#create();
  }

  /** Sends a request to the Worker (`path` relative to `http://edge.test`). */
  async fetch(path: string, init?: RequestInit): Promise<Response> {
    const response = await this.#mf.dispatchFetch(`http://edge.test${path}`, init as never);
    return response as unknown as Response;
  }

  /** Kills workerd (nothing in memory survives, storage on disk does) and starts a new one. */
  async restart(): Promise<void> {
    await this.#mf.dispose();
    this.#mf = this.#create();
    await this.#mf.ready;
  }

  /** Kills workerd without starting another (`start()` brings it back). */
  async stop(): Promise<void> {
    await this.#mf.dispose();
  }

  /** Starts workerd again after `stop()`. */
  async start(): Promise<void> {
    this.#mf = this.#create();
    await this.#mf.ready;
  }

  async dispose(): Promise<void> {
    await this.#mf.dispose().catch(() => {});
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true });
  }

  #create(): Miniflare {
    const { script, durableObjects, serviceBindings, bindings } = this.#options;
    const options: MiniflareOptions = {
      modules: true,
      script,
      compatibilityDate: COMPATIBILITY_DATE,
      durableObjects: Object.fromEntries(
        Object.entries(durableObjects).map(([binding, className]) => [
          binding,
          { className, useSQLite: true },
        ]),
      ),
      ...(serviceBindings ? { serviceBindings } : {}),
      ...(bindings ? { bindings } : {}),
      ...(this.#dir ? { durableObjectsPersist: this.#dir } : {}),
    };
    return new Miniflare(options);
  }
}
