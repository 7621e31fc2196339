/**
 * `startEdge` (e2e/support/edge.ts) as the continuity specs use it: `wrangler dev` on the example
 * with continuity on, reached over real HTTP from a real Chromium page on another origin. The
 * page's `fetch` carries the first shipments of a replicated fiber (position 1 creates the
 * replica) with a bearer token, so every one is preflighted and needs the edge's CORS answer; a
 * page on an origin not allowed cannot ship at all. Then workerd is killed with SIGKILL and
 * started again on the same persisted state: the replica is still there, the alarm set before the
 * kill still takes the fiber over once the browser's lease lapses, and the edge finishes it.
 */

import { createServer, type Server } from "node:http";
import { type Browser, chromium, expect, type Page, test } from "@playwright/test";
import { chromiumArgs, findChromium } from "../../scripts/find-chromium.mjs";
import { Outbox } from "../../src/continuity/outbox";
import { browserHome, type Shipment, type ShipmentAnswer } from "../../src/continuity/protocol";
import { ReplicatingStore } from "../../src/continuity/replicating-store";
import { Shipper } from "../../src/continuity/shipper";
import { defineFiber } from "../../src/core/define";
import { createRuntime } from "../../src/core/runtime";
import type { ReplicaSnapshot } from "../../src/edge/replica-routes";
import { decodeValue, encodeValue } from "../../src/edge/value-codec";
import { MemoryStore } from "../../src/store/memory-store";
import { type StartedEdge, startEdge } from "./edge";

const EDGE_PORT = 8850;
const PAGE_PORT = 8853;
const PAGE_ORIGIN = `http://localhost:${PAGE_PORT}`;
const HOME = browserHome("e2e-edge");

/** The browser's half of the example's `approval` kind (the edge runs its own). */
const approval = defineFiber("approval", {
  async run(ctx) {
    const answer = await ctx.waitForEvent<unknown>("approval");
    return { answer, where: "browser" };
  },
});

let server: Server;
let browser: Browser;
let edge: StartedEdge | undefined;

test.beforeAll(async () => {
  server = createServer((_request, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end("<!doctype html><title>app</title>");
  });
  await new Promise<void>((done) => server.listen(PAGE_PORT, done));
  browser = await chromium.launch({ executablePath: findChromium(), args: [...chromiumArgs] });
});

test.afterAll(async () => {
  await edge?.stop();
  await browser?.close();
  await new Promise((done) => server?.close(done));
});

/** A `Shipper` send that posts from `page` with its `fetch`: real HTTP, CORS and all. */
function sendFrom(page: Page, prefixUrl: string, token: string) {
  return async (fiberId: string, shipment: Shipment): Promise<ShipmentAnswer> => {
    const { status, text } = await page.evaluate(
      async ({ url, body, token }) => {
        const response = await fetch(url, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body,
        });
        return { status: response.status, text: await response.text() };
      },
      {
        url: `${prefixUrl}/fibers/${encodeURIComponent(fiberId)}/replicate`,
        body: encodeValue(shipment),
        token,
      },
    );
    if (status !== 200 && status !== 409) throw new Error(`edge answered ${status}: ${text}`);
    return decodeValue(text) as ShipmentAnswer;
  };
}

async function replica(started: StartedEdge, token: string, id: string): Promise<ReplicaSnapshot | number> {
  const response = await fetch(`${started.prefixUrl}/fibers/${id}/replica?after=0`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (response.status !== 200) return response.status;
  return decodeValue(await response.text()) as ReplicaSnapshot;
}

test("ships from a page on another origin through CORS, and the replica survives a SIGKILL of workerd", async () => {
  test.setTimeout(240_000);
  edge = await startEdge({ port: EDGE_PORT, leaseMs: 4_000, allowedOrigins: [PAGE_ORIGIN] });
  const token = await edge.token("alice");

  // A page on an origin the edge does not allow cannot even send a shipment.
  const stranger = await browser.newPage();
  await stranger.goto(`http://127.0.0.1:${PAGE_PORT}/`);
  const refused = await stranger.evaluate(
    async ({ url, token }) =>
      fetch(url, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: "{}" }).then(
        (r) => `status ${r.status}`,
        (e: unknown) => `failed: ${String(e)}`,
      ),
    { url: `${edge.prefixUrl}/fibers/x/replicate`, token },
  );
  expect(refused).toMatch(/^failed: TypeError/);

  // The app's page ships a replicated fiber: position 1 creates the replica at the edge.
  const page = await browser.newPage();
  await page.goto(`${PAGE_ORIGIN}/`);
  // Chromium reports each CORS preflight it sends to DevTools: count those to the edge.
  const preflights: string[] = [];
  const cdp = await page.context().newCDPSession(page);
  cdp.on(
    "Network.requestWillBeSent",
    (event: { request: { method: string; url: string }; type?: string }) => {
      if (event.request.method === "OPTIONS" || event.type === "Preflight")
        preflights.push(event.request.url);
    },
  );
  await cdp.send("Network.enable");
  const outbox = new Outbox();
  const store = new ReplicatingStore(new MemoryStore(), { outbox, home: HOME, replicates: () => true });
  const runtime = createRuntime({ store, fibers: [approval], replication: outbox });
  const shipper = new Shipper({
    outbox,
    home: HOME,
    send: sendFrom(page, edge.prefixUrl, token),
    heartbeatMs: 500,
  });
  shipper.start();
  await runtime.start(approval, null, { id: "survivor" });
  await expect.poll(() => outbox.acked("survivor") > 0 && !outbox.hasPending("survivor")).toBe(true);
  expect(preflights.some((url) => url.endsWith("/fibers/survivor/replicate"))).toBe(true);
  const shipped = await replica(edge, token, "survivor");
  expect(shipped).toMatchObject({
    record: { name: "approval", status: "waiting", home: { home: HOME, epoch: 1 } },
  });
  expect(await replica(edge, await edge.token("mallory"), "survivor")).toBe(404);

  // The browser goes away and workerd is killed: nothing flushed, nothing closed.
  shipper.stop();
  await runtime.close();
  await edge.kill();
  await expect(fetch(edge.url)).rejects.toThrow();

  edge = await startEdge({
    port: EDGE_PORT,
    leaseMs: 4_000,
    persistTo: edge.persistTo,
    allowedOrigins: [PAGE_ORIGIN],
  });
  // The replica is all there. (The restart may outlast the lease: then the alarm set before the
  // kill has already taken it over, and the edge's own chunks follow the shipped ones.)
  const survived = (await replica(edge, token, "survivor")) as ReplicaSnapshot;
  const before = shipped as ReplicaSnapshot;
  expect(survived.record).toMatchObject({
    status: "waiting",
    home: { appliedPos: before.record.home?.appliedPos },
  });
  expect(survived.chunks.slice(0, before.chunks.length)).toEqual(before.chunks);

  // The lease lapses with no browser: the edge takes the fiber over and an event finishes it there.
  await expect
    .poll(
      async () =>
        ((await replica(edge as StartedEdge, token, "survivor")) as ReplicaSnapshot).record.home?.home,
      {
        timeout: 30_000,
      },
    )
    .toBe("edge");
  const sent = await fetch(`${edge.prefixUrl}/fibers/survivor/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", origin: PAGE_ORIGIN },
    body: JSON.stringify({ name: "approval", payload: { ok: true } }),
  });
  expect(sent.status).toBeLessThan(300);
  expect(sent.headers.get("access-control-allow-origin")).toBe(PAGE_ORIGIN);
  await expect
    .poll(
      async () => ((await replica(edge as StartedEdge, token, "survivor")) as ReplicaSnapshot).record.status,
      {
        timeout: 30_000,
      },
    )
    .toBe("completed");
  const ended = (await replica(edge, token, "survivor")) as ReplicaSnapshot;
  expect(ended.record.result).toEqual({ answer: { ok: true }, where: "edge" });
});
