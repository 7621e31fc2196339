/**
 * The processes of the continuity torture run, started and ended by `continuity.spec.ts`: the
 * ledger (an HTTP server in this process recording every side effect either home reports, with
 * when it arrived), the edge (`wrangler dev` on `e2e/continuity/edge-worker.ts`, bundled once and
 * restarted on the same persisted state after each SIGKILL), the cuttable link between the homes
 * (`startLink` of `e2e/continuity/servers.ts`) and the page (`e2e/continuity` built into a
 * directory of this run's own, so a continuity spec running meanwhile never empties it).
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { decodeValue } from "../../src/edge/value-codec";
import type { Effect } from "../continuity/fibers";
import { bundleForWrangler } from "../support/edge";

const ROOT = resolve(import.meta.dirname, "../..");

/** A side effect as the ledger recorded it, with its arrival time (ms since the epoch). */
export interface LedgerEntry extends Effect {
  at: number;
}

/** The ledger outside both homes. */
export interface Ledger {
  readonly url: string;
  readonly entries: readonly LedgerEntry[];
  close(): Promise<void>;
}

/** Starts the ledger on `port`: `POST /effect` with an `Effect` records it. */
export async function startLedger(port: number): Promise<Ledger> {
  const entries: LedgerEntry[] = [];
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
        entries.push({ ...(JSON.parse(body) as Effect), at: Date.now() });
        response.writeHead(200, { "content-type": "text/plain" }).end("ok");
        return;
      }
      response.writeHead(404).end();
    });
  });
  await new Promise<void>((done) => server.listen(port, "localhost", done));
  return {
    url: `http://localhost:${port}`,
    entries,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** A process group this module started. */
interface Group {
  output(): string;
  /** SIGKILL of the whole group; resolves once the leader exited. */
  kill(): Promise<void>;
}

function startGroup(command: string, args: string[], env: Record<string, string> = {}): Group {
  const child: ChildProcess = spawn(command, args, {
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
    output: () => output,
    async kill() {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
      await exited;
    },
  };
}

async function waitForAnswer(url: string, what: Group, timeoutMs: number): Promise<void> {
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

/** The page of `e2e/continuity` (its `window.cx` and Service Worker), served on `port`. */
export interface ServedPage {
  readonly url: string;
  kill(): Promise<void>;
}

/** Builds `e2e/continuity` with its Vite config into `dist/torture-continuity-<port>` and serves it. */
export async function startPage(port: number): Promise<ServedPage> {
  // Per port: two runs on one tree (5640 and 5645) must not empty each other's build.
  const outDir = join(ROOT, `dist/torture-continuity-${port}`);
  const config = "e2e/continuity/vite.config.ts";
  const env = { FIBERLINE_CONTINUITY_PORT: String(port) };
  await promisify(execFile)("npx", ["vite", "build", "-c", config, "--outDir", outDir, "--emptyOutDir"], {
    cwd: ROOT,
    env: { ...process.env, ...env },
  });
  const group = startGroup(
    "npx",
    ["vite", "preview", "-c", config, "--outDir", outDir, "--port", String(port), "--strictPort"],
    env,
  );
  const url = `http://localhost:${port}`;
  await waitForAnswer(`${url}/index.html`, group, 60_000);
  return { url, kill: () => group.kill() };
}

/** What the edge holds of a fiber: its record's status and home, and its stream. */
export interface Replica {
  status: string;
  home?: string;
  /** The home epoch: 1 the browser that started it, 2 the edge after a takeover, 3 home again... */
  epoch?: number;
  chunks: Array<{ seq: number; type: string; data: unknown }>;
}

/**
 * The edge of the run: `wrangler dev` on the continuity e2e's Worker with `leaseMs`, persisted to
 * one directory for the whole run, SIGKILLable (`kill`) and restartable on that state (`start`).
 */
export class RestartableEdge {
  readonly url: string;
  readonly persistTo = mkdtempSync(join(tmpdir(), "fiberline-torture-edge-"));
  #config: string | undefined;
  #group: Group | undefined;

  constructor(
    readonly port: number,
    readonly leaseMs: number,
    readonly ledgerUrl: string,
  ) {
    this.url = `http://localhost:${port}`;
  }

  /** Whether the edge is running. */
  get running(): boolean {
    return this.#group !== undefined;
  }

  /**
   * Starts wrangler (the Worker bundled at the first start only: a restart runs the same code,
   * whatever else changed in the tree meanwhile) and resolves once it answers.
   */
  async start(): Promise<void> {
    this.#config ??= await bundleForWrangler({
      entry: "e2e/continuity/edge-worker.ts",
      wranglerToml: "e2e/continuity/wrangler.toml",
      toml: (text, main) => text.replace('main = "edge-worker.ts"', `main = "${main}"`),
    });
    const group = startGroup(join(ROOT, "node_modules/.bin/wrangler"), [
      "dev",
      "-c",
      this.#config,
      "--no-bundle",
      "--port",
      String(this.port),
      "--inspector-port",
      String(this.port + 1),
      "--persist-to",
      this.persistTo,
      "--show-interactive-dev-session=false",
      "--var",
      `LEASE_MS:${this.leaseMs}`,
      "--var",
      `LEDGER_URL:${this.ledgerUrl}`,
    ]);
    await waitForAnswer(`${this.url}/__fiberline/fibers/probe/replica?after=0`, group, 120_000);
    this.#group = group;
  }

  /** SIGKILL of wrangler and workerd: what SQLite committed is what a restart finds. */
  async kill(): Promise<void> {
    const group = this.#group;
    this.#group = undefined;
    await group?.kill();
  }

  /** What wrangler and workerd printed last. */
  output(): string {
    return this.#group?.output() ?? "";
  }

  /** The replica of `id` read over HTTP (not through the link), or undefined when it has none. */
  async replica(id: string): Promise<Replica | undefined> {
    const response = await fetch(`${this.url}/__fiberline/fibers/${id}/replica?after=0`, {
      signal: AbortSignal.timeout(10_000),
    });
    if (response.status === 404) {
      await response.arrayBuffer();
      return undefined;
    }
    if (!response.ok) throw new Error(`replica of ${id}: ${response.status} ${await response.text()}`);
    const body = decodeValue(await response.text()) as {
      record: { status: string; home?: { home: string; epoch: number } };
      chunks: Replica["chunks"];
    };
    return {
      status: body.record.status,
      ...(body.record.home ? { home: body.record.home.home, epoch: body.record.home.epoch } : {}),
      chunks: body.chunks,
    };
  }
}

/** One request the link carried, as the run's diagnosis prints it. */
export interface LinkRecord {
  at: number;
  what: string;
}

/** The link between the homes: a proxy the run can cut, with what it carried per fiber. */
export interface TappedLink {
  readonly url: string;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
  /** The shipments and replica reads of `fiberId` the link carried (or refused), oldest first. */
  traffic(fiberId: string): readonly LinkRecord[];
}

/**
 * `startLink` of `e2e/continuity/servers.ts` with a tap: an HTTP proxy to `target` that refuses
 * everything while cut (open connections die too) and records, per fiber, each shipment's epoch,
 * positions and highest chunk seq with the arbiter's answer, and each replica read.
 */
export async function startTappedLink(port: number, target: string): Promise<TappedLink> {
  let cut = false;
  const log = new Map<string, LinkRecord[]>();
  const note = (fiberId: string, what: string) => {
    const records = log.get(fiberId) ?? [];
    records.push({ at: Date.now(), what });
    log.set(fiberId, records.slice(-200));
  };
  const sockets = new Set<import("node:net").Socket>();
  const server = createServer((request, response) => {
    const match = /\/fibers\/([^/]+)\/(replicate|replica)/.exec(request.url ?? "");
    const fiberId = match?.[1] ? decodeURIComponent(match[1]) : undefined;
    if (cut) {
      if (fiberId) note(fiberId, `${request.method} ${match?.[2]}: cut`);
      request.socket.destroy();
      return;
    }
    const body: Buffer[] = [];
    request.on("data", (data: Buffer) => body.push(data));
    request.on("end", () => {
      const sent = Buffer.concat(body);
      const upstream = httpRequest(
        `${target}${request.url ?? "/"}`,
        { method: request.method, headers: { ...request.headers, host: new URL(target).host } },
        (answer) => {
          const back: Buffer[] = [];
          answer.on("data", (data: Buffer) => back.push(data));
          answer.on("end", () => {
            const received = Buffer.concat(back);
            if (fiberId && request.method !== "OPTIONS")
              note(fiberId, linkLine(match?.[2], request.url ?? "", sent, answer.statusCode, received));
            response.writeHead(answer.statusCode ?? 502, answer.headers);
            response.end(received);
          });
          answer.on("error", () => response.destroy());
        },
      );
      upstream.on("error", (error) => {
        if (fiberId) note(fiberId, `${request.method} ${match?.[2]}: ${error.message}`);
        response.destroy();
      });
      upstream.end(sent);
    });
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
    traffic: (fiberId) => log.get(fiberId) ?? [],
  };
}

/** One line for a shipment or a replica read and its answer. */
function linkLine(
  route: string | undefined,
  url: string,
  sent: Buffer,
  status: number | undefined,
  received: Buffer,
): string {
  try {
    if (route === "replicate") {
      const shipment = decodeValue(sent.toString()) as {
        epoch: number;
        from: number;
        entries: Array<{
          type: string;
          chunks?: Array<{ seq: number }>;
          group?: { chunks?: Array<{ seq: number }> };
        }>;
      };
      const seqs = shipment.entries.flatMap((e) => (e.chunks ?? e.group?.chunks ?? []).map((c) => c.seq));
      const answer = decodeValue(received.toString()) as Record<string, unknown>;
      const last = shipment.from + shipment.entries.length - 1;
      return `ship e${shipment.epoch} pos ${shipment.from}..${last}${seqs.length ? ` seqs ${Math.min(...seqs)}..${Math.max(...seqs)}` : ""} -> ${status} ${JSON.stringify({ ...answer, events: undefined })}`;
    }
    const after = new URL(url, "http://x").searchParams.get("after");
    if (status !== 200) return `read replica after ${after} -> ${status}`;
    const replica = decodeValue(received.toString()) as {
      record: { status: string; home?: { home: string; epoch: number } };
      chunks: Array<{ seq: number; type: string }>;
    };
    const home = replica.record.home;
    return `read replica after ${after} -> ${replica.record.status} ${home ? `${home.home.split(":")[0]} e${home.epoch}` : ""} chunks ${replica.chunks.map((c) => `${c.seq}:${c.type}`).join(" ")}`;
  } catch (error) {
    return `${route} ${url} -> ${status} (${String(error)})`;
  }
}
