/**
 * The processes of the continuity e2e, each started and ended by the spec: the ledger (an HTTP
 * server in this process that counts every side effect either home reports), the edge
 * (`wrangler dev` on `wrangler.toml` here, real workerd with SQLite Durable Objects persisted to a
 * directory, in its own process group so it can be killed whole), and the page (this directory
 * built by Vite and served by `vite preview`).
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer, request as httpRequest, type Server, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { bundleForWrangler } from "../support/edge";
import type { Effect } from "./fibers";

const ROOT = resolve(import.meta.dirname, "../..");

/** The ledger outside both homes. */
export interface LedgerServer {
  readonly url: string;
  readonly effects: Effect[];
  /**
   * The next effect `match` accepts is recorded and never answered (its step stays cut off in
   * the middle, its effect done, until the home that reported it dies); resolves with it.
   */
  holdNext(match: (effect: Effect) => boolean): Promise<Effect>;
  close(): Promise<void>;
}

export async function startLedger(port: number): Promise<LedgerServer> {
  const effects: Effect[] = [];
  const holds: Array<{ match: (effect: Effect) => boolean; caught(effect: Effect): void }> = [];
  const held = new Set<ServerResponse>();
  const server: Server = createServer((request, response) => {
    response.setHeader("access-control-allow-origin", "*");
    response.setHeader("access-control-allow-methods", "POST, GET, OPTIONS");
    response.setHeader("access-control-allow-headers", "content-type");
    if (request.method === "OPTIONS") return void response.writeHead(204).end();
    let body = "";
    request.on("data", (data: Buffer) => {
      body += data.toString();
    });
    request.on("end", () => {
      if (request.method === "POST" && request.url === "/effect") {
        const effect = JSON.parse(body) as Effect;
        effects.push(effect);
        const hold = holds.findIndex((h) => h.match(effect));
        if (hold >= 0) {
          holds.splice(hold, 1)[0]?.caught(effect);
          held.add(response);
          response.on("close", () => held.delete(response));
          return;
        }
        response.writeHead(200, { "content-type": "text/plain" }).end("ok");
        return;
      }
      response.writeHead(404).end();
    });
  });
  await new Promise<void>((done) => server.listen(port, "localhost", done));
  return {
    url: `http://localhost:${port}`,
    effects,
    holdNext: (match) => new Promise<Effect>((caught) => holds.push({ match, caught })),
    close: () =>
      new Promise<void>((done) => {
        for (const response of held) response.destroy();
        server.close(() => done());
      }),
  };
}

/** A process group this module started. */
export interface Started {
  readonly url: string;
  output(): string;
  /** SIGKILL of the whole group; resolves once the leader exited. */
  kill(): Promise<void>;
}

function startGroup(
  command: string,
  args: string[],
  url: string,
  env: Record<string, string> = {},
): {
  child: ChildProcess;
  started: Started;
} {
  const child = spawn(command, args, {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", WRANGLER_SEND_METRICS: "false", ...env },
  });
  let output = "";
  const append = (data: Buffer) => {
    output = (output + data.toString()).slice(-20_000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  return {
    child,
    started: {
      url,
      output: () => output,
      async kill() {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          // already gone
        }
        await exited;
      },
    },
  };
}

async function waitForAnswer(url: string, what: Started, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  await what.kill();
  throw new Error(`${url} did not answer within ${timeoutMs} ms:\n${what.output().slice(-3_000)}`);
}

/**
 * `wrangler dev` on the e2e's edge Worker, continuity on with `leaseMs`. The Worker is bundled
 * here first and run with `--no-bundle` from a directory of its own: wrangler watches what it
 * bundles and restarts the Worker (and every Durable Object) when a source file changes, which
 * other work in this repository does at any time, and a restart mid-test is a crash of the edge.
 */
export async function startEdgeWorker(options: {
  port: number;
  leaseMs: number;
  ledgerUrl: string;
  persistTo?: string;
  /** Turns on the Worker's test-only `/__test/` fault hooks (see edge-worker.ts); off by default. */
  faultHooks?: boolean;
}): Promise<Started & { persistTo: string }> {
  const persistTo = options.persistTo ?? mkdtempSync(join(tmpdir(), "fiberline-continuity-edge-"));
  const config = await bundleForWrangler({
    entry: "e2e/continuity/edge-worker.ts",
    wranglerToml: "e2e/continuity/wrangler.toml",
    toml: (text, main) => text.replace('main = "edge-worker.ts"', `main = "${main}"`),
  });
  const { started } = startGroup(
    join(ROOT, "node_modules/.bin/wrangler"),
    [
      "dev",
      "-c",
      config,
      "--no-bundle",
      "--port",
      String(options.port),
      "--inspector-port",
      String(options.port + 1),
      "--persist-to",
      persistTo,
      "--show-interactive-dev-session=false",
      "--var",
      `LEASE_MS:${options.leaseMs}`,
      "--var",
      `LEDGER_URL:${options.ledgerUrl}`,
      ...(options.faultHooks ? ["--var", "FAULT_HOOKS:1"] : []),
    ],
    `http://localhost:${options.port}`,
  );
  await waitForAnswer(`${started.url}/__fiberline/fibers/probe/replica?after=0`, started, 90_000);
  return { ...started, persistTo };
}

/**
 * Builds this directory with Vite and serves it with `vite preview` on `port`. `outDir` (default
 * the config's `dist/e2e-continuity`) keeps one spec's build from emptying another's that is
 * being served.
 */
export async function startPage(port: number, outDir?: string): Promise<Started> {
  const env = { FIBERLINE_CONTINUITY_PORT: String(port) };
  const out = outDir ? ["--outDir", outDir] : [];
  await promisify(execFile)("npx", ["vite", "build", "-c", "e2e/continuity/vite.config.ts", ...out], {
    cwd: ROOT,
    env: { ...process.env, ...env },
  });
  const { started } = startGroup(
    "npx",
    [
      "vite",
      "preview",
      "-c",
      "e2e/continuity/vite.config.ts",
      ...out,
      "--port",
      String(port),
      "--strictPort",
    ],
    `http://localhost:${port}`,
    env,
  );
  await waitForAnswer(`${started.url}/index.html`, started, 60_000);
  return started;
}

/** An HTTP proxy to `target` that the spec can cut (every request refused, as a dead network) and heal. */
export interface CuttableLink {
  readonly url: string;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startLink(port: number, target: string): Promise<CuttableLink> {
  let cut = false;
  const sockets = new Set<import("node:net").Socket>();
  const server = createServer((request, response) => {
    if (cut) {
      request.socket.destroy();
      return;
    }
    const upstream = httpRequest(
      `${target}${request.url ?? "/"}`,
      { method: request.method, headers: { ...request.headers, host: new URL(target).host } },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    upstream.on("error", () => response.destroy());
    request.pipe(upstream);
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((done) => server.listen(port, "localhost", done));
  return {
    url: `http://localhost:${port}`,
    cut() {
      cut = true;
      // Open connections die too (a stream the worker keeps open, a request in flight).
      for (const socket of sockets) socket.destroy();
    },
    heal() {
      cut = false;
    },
    close: () =>
      new Promise<void>((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => done());
      }),
  };
}
