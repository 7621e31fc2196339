/**
 * What the continuity specs (`continuity.spec.ts`, `faults.spec.ts`) share, and the continuity
 * torture run (`e2e/torture/continuity-*.ts`) reads too: the page's `window.cx` (`page.ts`)
 * driven from Node, the edge's replica of a fiber read over HTTP, and `ContinuityHomes`, the
 * ledger, page, edges and browsers a spec starts once for its tests and ends after them.
 *
 *   const homes = new ContinuityHomes({ name: "faults", pagePort: 5632, ledgerPort: 5637 });
 *   let edge: EdgeWorker;
 *   test.beforeAll(async () => {
 *     [edge] = await homes.start([{ port: 5635, leaseMs: 5_000, faultHooks: true }]);
 *   });
 *   test.afterAll(() => homes.close());
 *   // in a test:
 *   const page = await openPage(await homes.launch("takeover"), homes.pageUrl(edge.url, 5_000));
 *   await pageCx.start(page, "ticker", { ticks: 8, intervalMs: 1_000 }, id);
 *   edge = await homes.restart(edge); // SIGKILL of workerd, then wrangler again on its state
 *   expect((await replicaOf(edge, id)).home).toBe("edge");
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "@playwright/test";
import { decodeValue } from "../../src/edge/value-codec";
import { crashBrowser, type LaunchedBrowser, launchBrowser, relaunchBrowser } from "../support/browser";
import {
  type EdgeWorker,
  type LedgerServer,
  type Started,
  startEdgeWorker,
  startLedger,
  startPage,
} from "./servers";

/** A chunk as a page or the replica shows it. */
export interface Seen {
  seq: number;
  type: string;
  data: unknown;
}

/** `window.cx` of the continuity page (`page.ts`). */
export interface Cx {
  /** Resolves once the page's client is connected to its Service Worker. */
  ready(): Promise<boolean>;
  start(name: string, input: unknown, id: string): Promise<string>;
  /** Reads `id`'s stream from seq 1 into `chunks(id)` until its end. */
  read(id: string): void;
  chunks(id: string): Seen[];
  /** `reading`, `done` once the stream ended, or `error: ...`. */
  state(id: string): string;
  get(id: string): Promise<unknown>;
  /** The ids of the fibers the worker's store holds. */
  list(): Promise<string[]>;
  sendEvent(id: string, name: string, payload: unknown): Promise<void>;
}

/** `window.cx` of `page`, called from Node. */
export const pageCx = {
  ready: (page: Page) => page.evaluate(() => (window as unknown as { cx: Cx }).cx.ready()),
  start: (page: Page, name: string, input: unknown, id: string) =>
    page.evaluate((a) => (window as unknown as { cx: Cx }).cx.start(a.name, a.input, a.id), {
      name,
      input,
      id,
    }),
  read: (page: Page, id: string) => page.evaluate((id) => (window as unknown as { cx: Cx }).cx.read(id), id),
  chunks: (page: Page, id: string) =>
    page.evaluate((id) => (window as unknown as { cx: Cx }).cx.chunks(id), id),
  state: (page: Page, id: string) =>
    page.evaluate((id) => (window as unknown as { cx: Cx }).cx.state(id), id),
  get: (page: Page, id: string) => page.evaluate((id) => (window as unknown as { cx: Cx }).cx.get(id), id),
  list: (page: Page) => page.evaluate(() => (window as unknown as { cx: Cx }).cx.list()),
  sendEvent: (page: Page, id: string, name: string, payload: unknown) =>
    page.evaluate((a) => (window as unknown as { cx: Cx }).cx.sendEvent(a.id, a.name, a.payload), {
      id,
      name,
      payload,
    }),
};

/** Opens a tab of `browser` at `url` and resolves once its `window.cx` is connected. */
export async function openPage(browser: LaunchedBrowser, url: string): Promise<Page> {
  const page = await browser.context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => "cx" in window);
  await pageCx.ready(page);
  return page;
}

/** What the edge holds of a fiber: its record's status and home lease, its stream and inbox. */
export interface Replica {
  status: string;
  /** `edge` or `browser:<deviceId>`. */
  home?: string;
  /** The home epoch: 1 the browser that started it, 2 the edge after a takeover, 3 home again... */
  epoch?: number;
  /** When the home lease ends (the arbiter's clock). */
  until?: number;
  /** The last shipped position the replica holds. */
  appliedPos?: number;
  chunks: Seen[];
  inbox: Array<{ name: string; eventId?: string; consumedBy?: unknown }>;
  /** The replica's record as the edge sent it (for a failing test's message). */
  record: unknown;
}

/**
 * The replica of `id` at the edge `edgeUrl` (`GET /__fiberline/fibers/:id/replica?after=0`, not
 * through any link), or `undefined` when the edge has none (404). Rejects on any other failure.
 */
export async function readReplica(
  edgeUrl: string,
  id: string,
  headers: Record<string, string> = {},
): Promise<Replica | undefined> {
  const response = await fetch(`${edgeUrl}/__fiberline/fibers/${id}/replica?after=0`, {
    headers,
    signal: AbortSignal.timeout(10_000),
  });
  if (response.status === 404) {
    await response.arrayBuffer();
    return undefined;
  }
  if (!response.ok) throw new Error(`replica of ${id}: ${response.status} ${await response.text()}`);
  const body = decodeValue(await response.text()) as {
    record: { status: string; home?: { home: string; epoch: number; until: number; appliedPos: number } };
    chunks: Seen[];
    inbox: Replica["inbox"];
  };
  const home = body.record.home;
  return {
    status: body.record.status,
    ...(home ? { home: home.home, epoch: home.epoch, until: home.until, appliedPos: home.appliedPos } : {}),
    chunks: body.chunks,
    inbox: body.inbox,
    record: body.record,
  };
}

/** The replica of `id` at `edge`; rejects when the edge has none. */
export async function replicaOf(edge: { url: string }, id: string): Promise<Replica> {
  const replica = await readReplica(edge.url, id);
  if (!replica) throw new Error(`replica of ${id}: 404`);
  return replica;
}

/** One edge of a spec: the e2e's edge Worker under `wrangler dev` (see `startEdgeWorker`). */
export interface EdgeOptions {
  port: number;
  leaseMs: number;
  /** The Worker's test-only fault hooks (edge-worker.ts). */
  faultHooks?: boolean;
}

/**
 * The ledger, the page and the edges a continuity spec shares across its tests, and the browsers
 * its tests launch: `start` in `beforeAll`, `close` in `afterAll`.
 */
export class ContinuityHomes {
  readonly #name: string;
  readonly #pagePort: number;
  readonly #ledgerPort: number;
  readonly #ownBuild: boolean;
  #pageDir: string | undefined;
  #ledger: LedgerServer | undefined;
  #site: Started | undefined;
  /** Every running edge, with the options it was started with (a restart keeps them). */
  readonly #edges = new Map<EdgeWorker, EdgeOptions>();
  readonly #browsers: LaunchedBrowser[] = [];

  /**
   * `name` goes into the browsers' profile directories; `ownBuild` builds the page into a
   * directory of its own (default: the config's `dist/e2e-continuity`), so another spec's build
   * never empties the one served here.
   */
  constructor(options: { name: string; pagePort: number; ledgerPort: number; ownBuild?: boolean }) {
    this.#name = options.name;
    this.#pagePort = options.pagePort;
    this.#ledgerPort = options.ledgerPort;
    this.#ownBuild = options.ownBuild ?? false;
  }

  /** The ledger outside both homes (once started). */
  get ledger(): LedgerServer {
    if (!this.#ledger) throw new Error("ContinuityHomes: start() first");
    return this.#ledger;
  }

  /** The served page (once started). */
  get site(): Started {
    if (!this.#site) throw new Error("ContinuityHomes: start() first");
    return this.#site;
  }

  /** Starts the ledger, then `edges` and the page together; resolves with the edges, in order. */
  async start(edges: readonly EdgeOptions[]): Promise<EdgeWorker[]> {
    this.#ledger = await startLedger(this.#ledgerPort);
    if (this.#ownBuild) this.#pageDir = mkdtempSync(join(tmpdir(), `fiberline-${this.#name}-page-`));
    const [site, ...started] = await Promise.all([
      startPage(this.#pagePort, this.#pageDir),
      ...edges.map((options) => this.#startEdge(options)),
    ]);
    this.#site = site;
    return started as EdgeWorker[];
  }

  /** SIGKILL of `edge`'s workerd (a no-op if it is dead already), then `wrangler dev` again on its persisted state and port. */
  async restart(edge: EdgeWorker): Promise<EdgeWorker> {
    const options = this.#edges.get(edge);
    if (!options) throw new Error(`ContinuityHomes: ${edge.url} is not a running edge of these homes`);
    await edge.kill();
    this.#edges.delete(edge);
    return this.#startEdge(options, edge.persistTo);
  }

  /** The page's URL, its Service Worker replicating to `edgeUrl` (an edge or a link to one) with `leaseMs`. */
  pageUrl(edgeUrl: string, leaseMs: number): string {
    return `${this.site.url}/index.html?${new URLSearchParams({ edge: `${edgeUrl}/__fiberline`, ledger: this.ledger.url, lease: String(leaseMs) })}`;
  }

  /** Launches Chromium on a fresh profile; `close` kills it. */
  async launch(name: string): Promise<LaunchedBrowser> {
    const browser = await launchBrowser({
      userDataDir: mkdtempSync(join(tmpdir(), `fiberline-${this.#name}-${name}-`)),
    });
    this.#browsers.push(browser);
    return browser;
  }

  /** Relaunches `browser` (after a crash) on its profile; `close` kills it. */
  async relaunch(browser: LaunchedBrowser): Promise<LaunchedBrowser> {
    const again = await relaunchBrowser(browser);
    this.#browsers.push(again);
    return again;
  }

  /** Kills every browser and edge, and ends the page and the ledger. */
  async close(): Promise<void> {
    for (const b of this.#browsers) await crashBrowser(b).catch(() => {});
    await Promise.all([
      ...[...this.#edges.keys()].map((e) => e.kill()),
      this.#site?.kill(),
      this.#ledger?.close(),
    ]);
    if (this.#pageDir) rmSync(this.#pageDir, { recursive: true, force: true });
  }

  async #startEdge(options: EdgeOptions, persistTo?: string): Promise<EdgeWorker> {
    const edge = await startEdgeWorker({
      ...options,
      ledgerUrl: this.ledger.url,
      ...(persistTo ? { persistTo } : {}),
    });
    this.#edges.set(edge, options);
    return edge;
  }
}
