/**
 * The processes of the continuity e2e, each started and ended by the spec (through `support.ts`)
 * or by the continuity torture run (`e2e/torture/continuity-homes.ts`): the ledger (an HTTP server
 * in this process that records every side effect either home reports), the edge (`wrangler dev`
 * on `wrangler.toml` here, real workerd with SQLite Durable Objects persisted to a directory, in
 * its own process group so it can be killed whole), the page (this directory built by Vite and
 * served by `vite preview`) and a link between the homes that can be cut.
 */

import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { bundleForWrangler, startWrangler } from "../support/edge";
import { startGroup, waitForAnswer } from "../support/process-group";
import type { Effect } from "./fibers";

const ROOT = resolve(import.meta.dirname, "../..");

/** A side effect as the ledger recorded it, with its arrival time (ms since the epoch). */
export interface LedgerEntry extends Effect {
  at: number;
}

/** The ledger outside both homes. */
export interface LedgerServer {
  readonly url: string;
  /** Every effect reported so far, in arrival order. */
  readonly effects: readonly LedgerEntry[];
  /**
   * The next effect `match` accepts is recorded and never answered (its step stays cut off in
   * the middle, its effect done, until the home that reported it dies); resolves with it.
   */
  holdNext(match: (effect: Effect) => boolean): Promise<Effect>;
  close(): Promise<void>;
}

/** Starts the ledger on `port`: `POST /effect` with an `Effect` records it. */
export async function startLedger(port: number): Promise<LedgerServer> {
  const effects: LedgerEntry[] = [];
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
        effects.push({ ...effect, at: Date.now() });
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
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** A server this module started, in a process group of its own. */
export interface Started {
  readonly url: string;
  output(): string;
  /** SIGKILL of the whole group; resolves once the leader exited. */
  kill(): Promise<void>;
}

/** A running edge Worker and the directory its state is persisted to. */
export type EdgeWorker = Started & { readonly persistTo: string };

/**
 * Bundles the e2e's edge Worker (`edge-worker.ts`) for `wrangler dev --no-bundle`; returns the
 * config to run it with (`startEdgeWorker`'s `config`).
 */
export function bundleEdgeWorker(): Promise<string> {
  return bundleForWrangler({
    entry: "e2e/continuity/edge-worker.ts",
    wranglerToml: "e2e/continuity/wrangler.toml",
    toml: (text, main) => text.replace('main = "edge-worker.ts"', `main = "${main}"`),
  });
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
  /** A `bundleEdgeWorker()` result to run (default: the Worker bundled now, as the sources are). */
  config?: string;
  /** How long to wait for it to answer (default 90 s). */
  readyTimeoutMs?: number;
}): Promise<EdgeWorker> {
  const persistTo = options.persistTo ?? mkdtempSync(join(tmpdir(), "fiberline-continuity-edge-"));
  const group = await startWrangler({
    config: options.config ?? (await bundleEdgeWorker()),
    port: options.port,
    persistTo,
    vars: {
      LEASE_MS: String(options.leaseMs),
      LEDGER_URL: options.ledgerUrl,
      ...(options.faultHooks ? { FAULT_HOOKS: "1" } : {}),
    },
    ready: { path: "/__fiberline/fibers/probe/replica?after=0", timeoutMs: options.readyTimeoutMs ?? 90_000 },
  });
  return { url: `http://localhost:${options.port}`, output: group.output, kill: group.kill, persistTo };
}

/**
 * Builds this directory with Vite and serves it with `vite preview` on `port`. `outDir` (default
 * the config's `dist/e2e-continuity`; the config empties it first) keeps one build from emptying
 * another's that is being served.
 */
export async function startPage(port: number, outDir?: string): Promise<Started> {
  const env = { FIBERLINE_CONTINUITY_PORT: String(port) };
  const out = outDir ? ["--outDir", outDir] : [];
  await promisify(execFile)("npx", ["vite", "build", "-c", "e2e/continuity/vite.config.ts", ...out], {
    cwd: ROOT,
    env: { ...process.env, ...env },
  });
  const group = startGroup(
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
    env,
  );
  const url = `http://localhost:${port}`;
  await waitForAnswer(`${url}/index.html`, group, { timeoutMs: 60_000 });
  return { url, output: group.output, kill: group.kill };
}

/** An HTTP proxy to `target` that the spec can cut (every request refused, as a dead network) and heal. */
export interface CuttableLink {
  readonly url: string;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

/** What a tapped link is told of each request it gets (see `startLink`). */
export interface LinkTap {
  /** `request` came while the link was cut, and was refused. */
  refused(request: IncomingMessage): void;
  /** `request`, whose body was `sent`, was carried and answered with `status` and `received`. */
  carried(request: IncomingMessage, sent: Buffer, status: number | undefined, received: Buffer): void;
  /** `request` could not reach the target. */
  failed(request: IncomingMessage, error: Error): void;
}

/**
 * Starts the link on `port`. Untapped, it streams requests and answers through; with `tap`, it
 * reads each request and answer whole before passing it on, and tells `tap` about it.
 */
export async function startLink(port: number, target: string, tap?: LinkTap): Promise<CuttableLink> {
  let cut = false;
  const sockets = new Set<Socket>();
  const forward = (request: IncomingMessage, answered: (answer: IncomingMessage) => void) =>
    httpRequest(
      `${target}${request.url ?? "/"}`,
      { method: request.method, headers: { ...request.headers, host: new URL(target).host } },
      answered,
    );
  const server = createServer((request, response) => {
    if (cut) {
      tap?.refused(request);
      request.socket.destroy();
      return;
    }
    if (!tap) {
      const upstream = forward(request, (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      });
      upstream.on("error", () => response.destroy());
      request.pipe(upstream);
      return;
    }
    const carry = (sent: Buffer) => {
      const upstream = forward(request, (answer) => {
        void readWhole(answer).then(
          (received) => {
            tap.carried(request, sent, answer.statusCode, received);
            response.writeHead(answer.statusCode ?? 502, answer.headers);
            response.end(received);
          },
          () => response.destroy(),
        );
      });
      upstream.on("error", (error) => {
        tap.failed(request, error);
        response.destroy();
      });
      upstream.end(sent);
    };
    void readWhole(request).then(carry, () => response.destroy());
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

/** A request's or an answer's whole body. */
function readWhole(message: IncomingMessage): Promise<Buffer> {
  return new Promise((done, failed) => {
    const parts: Buffer[] = [];
    message.on("data", (data: Buffer) => parts.push(data));
    message.on("end", () => done(Buffer.concat(parts)));
    message.on("error", failed);
  });
}
