/**
 * The processes of the continuity torture run, started and ended by `continuity-engine.ts`: the
 * ledger, the page and the link of the continuity e2e (`e2e/continuity/servers.ts`), here with
 * the page built into a directory of this run's own (so a continuity spec running meanwhile never
 * empties it), the edge restartable on the same persisted state after each SIGKILL, and the link
 * tapped, so that a violation can print what it carried for the fiber.
 */

import { mkdtempSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { decodeValue } from "../../src/edge/value-codec";
import {
  bundleEdgeWorker,
  type CuttableLink,
  type EdgeWorker,
  type Started,
  startEdgeWorker,
  startLink,
  startPage,
} from "../continuity/servers";
import { readShipment } from "../continuity/shipment";
import { type Replica, readReplica } from "../continuity/support";

const ROOT = resolve(import.meta.dirname, "../..");

/** Builds `e2e/continuity` with its Vite config into `dist/torture-continuity-<port>` and serves it. */
export function servePage(port: number): Promise<Started> {
  // Per port: two runs on one tree (5640 and 5645) must not empty each other's build.
  return startPage(port, join(ROOT, `dist/torture-continuity-${port}`));
}

/**
 * The edge of the run: `wrangler dev` on the continuity e2e's Worker with `leaseMs`, persisted to
 * one directory for the whole run, SIGKILLable (`kill`) and restartable on that state (`start`).
 */
export class RestartableEdge {
  readonly url: string;
  readonly persistTo = mkdtempSync(join(tmpdir(), "fiberline-torture-edge-"));
  #config: string | undefined;
  #edge: EdgeWorker | undefined;

  constructor(
    readonly port: number,
    readonly leaseMs: number,
    readonly ledgerUrl: string,
  ) {
    this.url = `http://localhost:${port}`;
  }

  /** Whether the edge is running. */
  get running(): boolean {
    return this.#edge !== undefined;
  }

  /**
   * Starts wrangler (the Worker bundled at the first start only: a restart runs the same code,
   * whatever else changed in the tree meanwhile) and resolves once it answers.
   */
  async start(): Promise<void> {
    this.#config ??= await bundleEdgeWorker();
    this.#edge = await startEdgeWorker({
      port: this.port,
      leaseMs: this.leaseMs,
      ledgerUrl: this.ledgerUrl,
      persistTo: this.persistTo,
      config: this.#config,
      readyTimeoutMs: 120_000,
    });
  }

  /** SIGKILL of wrangler and workerd: what SQLite committed is what a restart finds. */
  async kill(): Promise<void> {
    const edge = this.#edge;
    this.#edge = undefined;
    await edge?.kill();
  }

  /** What wrangler and workerd printed last. */
  output(): string {
    return this.#edge?.output() ?? "";
  }

  /** The replica of `id` read over HTTP (not through the link), or undefined when it has none. */
  replica(id: string): Promise<Replica | undefined> {
    return readReplica(this.url, id);
  }
}

/** One request the link carried, as the run's diagnosis prints it. */
export interface LinkRecord {
  at: number;
  what: string;
}

/** The link between the homes: a proxy the run can cut, with what it carried per fiber. */
export interface TappedLink extends CuttableLink {
  /** The shipments and replica reads of `fiberId` the link carried (or refused), oldest first. */
  traffic(fiberId: string): readonly LinkRecord[];
}

/**
 * `startLink` of `e2e/continuity/servers.ts` with a tap: an HTTP proxy to `target` that refuses
 * everything while cut (open connections die too) and records, per fiber, each shipment's epoch,
 * positions and highest chunk seq with the arbiter's answer, and each replica read.
 */
export async function startTappedLink(port: number, target: string): Promise<TappedLink> {
  const log = new Map<string, LinkRecord[]>();
  /** The fiber and the route (`replicate` or `replica`) a request names, if any. */
  const route = (request: IncomingMessage) => {
    const match = /\/fibers\/([^/]+)\/(replicate|replica)/.exec(request.url ?? "");
    return match?.[1] ? { fiberId: decodeURIComponent(match[1]), name: match[2] } : undefined;
  };
  const note = (request: IncomingMessage, what: (name: string | undefined) => string) => {
    const named = route(request);
    if (!named) return;
    const records = log.get(named.fiberId) ?? [];
    records.push({ at: Date.now(), what: what(named.name) });
    log.set(named.fiberId, records.slice(-200));
  };
  const link = await startLink(port, target, {
    refused: (request) => note(request, (name) => `${request.method} ${name}: cut`),
    carried(request, sent, status, received) {
      if (request.method !== "OPTIONS")
        note(request, (name) => linkLine(name, request.url ?? "", sent, status, received));
    },
    failed: (request, error) => note(request, (name) => `${request.method} ${name}: ${error.message}`),
  });
  return { ...link, traffic: (fiberId) => log.get(fiberId) ?? [] };
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
      const shipment = readShipment(sent.toString());
      const seqs = shipment.seqs;
      const answer = decodeValue(received.toString()) as Record<string, unknown>;
      const last = shipment.from + shipment.count - 1;
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
