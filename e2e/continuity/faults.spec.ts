/**
 * Continuity faults with real parts (issue #18, docs/design/continuity.md "Faults and what
 * happens"): Chromium's Service Worker on IndexedDB replicating to `wrangler dev` (workerd,
 * persisted SQLite), with every side effect counted in a ledger outside both homes.
 *
 * - workerd SIGKILLed in the middle of a shipment, held by the edge Worker's test-only fault hook
 *   (edge-worker.ts) either before the arbiter applied it or after it applied it and before the
 *   answer left; restarted on the same state, the browser's shipper retries, the replica holds
 *   every position once and the fiber ends in the browser with every tick once. And restarted
 *   only once the browser's lease has lapsed: the edge takes the fiber over once (epoch 2), the
 *   page open all along is fenced and mirrors the edge's ticks, its stream equal to the replica.
 * - workerd SIGKILLed between two transactions of one shipment (the fault hook `ship-between`):
 *   the page's event enqueued in the replica's inbox, its position not recorded; the retried
 *   shipment recognises it and applies it once.
 * - workerd SIGKILLed in the middle of a takeover (the epoch bump committed, the edge's claim not
 *   made); restarted, the edge completes that takeover (one epoch) and the relaunched page reads
 *   one stream equal to the replica. And killed in the takeover's first step, a tick the
 *   browser's SIGKILL had already cut (both held in the ledger, effect done, answer never sent):
 *   the tick runs a third time, interrupted, with the same key, and shows once.
 * - the browser's IndexedDB lost in a crash (its directory deleted from the profile, as Chromium
 *   discards an origin's IndexedDB after an unclean shutdown): the relaunched worker restores the
 *   fiber from the edge at its start (its watched store's marker named it), and the page reads
 *   it whole, from seq 1.
 * - an event sent to the edge (a webhook) while the browser holds the fiber: pushed to the
 *   browser in a shipment's answer and consumed there, once; and again with workerd killed after
 *   it applied the shipment that brought the event back, before answering it.
 * - a cancel sent to the edge while the browser holds the fiber: carried out in the browser (the
 *   answer to its next shipment brings it), the page's stream ends `cancelled`, nothing ran.
 *
 * Run: `npx playwright test e2e/continuity/faults.spec.ts --project continuity` (ports 5631-5637;
 * the config's own servers move with FIBERLINE_E2E_PORT / FIBERLINE_APP_PORT when taken).
 */

import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { expect, type Page, test } from "@playwright/test";
import { crashBrowser } from "../support/browser";
import { type EdgeWorker, type LedgerEntry, startLink } from "./servers";
import { ContinuityHomes, openPage, pageCx, replicaOf } from "./support";

const PAGE_PORT = 5632;
/**
 * The edge the shipment faults run on, with a lease that outlasts a restart of workerd on a busy
 * machine by far (the browser stops 54 s after its last acknowledgement; restarts take 2-5 s).
 */
const SHIP_EDGE_PORT = 5633; // its inspector: 5634
const SHIP_LEASE_MS = 60_000;
/** The edge of the other faults: a short lease, so takeovers come soon. */
const EDGE_PORT = 5635; // its inspector: 5636
const LEASE_MS = 5_000;
const LEDGER_PORT = 5637;
/** The cuttable link between the browser and the shipment faults' edge. */
const LINK_PORT = 5631;
const TICK_MS = 1_000;
/** A fiber id no earlier test or repetition used: none meets another's replica or ledger entries. */
const fiberId = (name: string) => `${name}-${Date.now().toString(36)}`;

const homes = new ContinuityHomes({
  name: "faults",
  pagePort: PAGE_PORT,
  ledgerPort: LEDGER_PORT,
  ownBuild: true,
});
let shipEdge: EdgeWorker;
let edge: EdgeWorker;

test.beforeAll(async () => {
  test.setTimeout(180_000);
  [shipEdge, edge] = (await homes.start([
    { port: SHIP_EDGE_PORT, leaseMs: SHIP_LEASE_MS, faultHooks: true },
    { port: EDGE_PORT, leaseMs: LEASE_MS, faultHooks: true },
  ])) as [EdgeWorker, EdgeWorker];
});

test.afterAll(() => homes.close());

const pageUrl = (target: { url: string }, leaseMs: number) => homes.pageUrl(target.url, leaseMs);

/** Starts a ticker of `ticks` in the page and reads its stream there from seq 1. */
async function startTicker(page: Page, id: string, ticks: number): Promise<void> {
  await pageCx.start(page, "ticker", { ticks, intervalMs: TICK_MS }, id);
  await pageCx.read(page, id);
}

const ticksShown = async (page: Page, id: string) =>
  (await pageCx.chunks(page, id)).filter((c) => c.type === "tick").length;

/** What a fault hook of the edge Worker held (edge-worker.ts). */
interface Held {
  at: string;
  from?: number;
  count?: number;
  types?: string[];
  seqs?: number[];
  answer?: { status: string; appliedPos?: number };
  wrote?: string[];
  next?: string;
}

/**
 * Arms a fault hook of the edge Worker (edge-worker.ts) in `fiber`'s object; with `chunks`, a
 * shipment hold waits for a shipment that carries stream chunks.
 */
async function hold(
  target: EdgeWorker,
  fiber: string,
  at: "ship-before" | "ship-after" | "ship-between" | "claim",
  options: { chunks?: boolean } = {},
): Promise<void> {
  const query = new URLSearchParams({ fiber, at, ...(options.chunks ? { chunks: "1" } : {}) });
  const response = await fetch(`${target.url}/__test/hold?${query}`, { method: "POST" });
  expect(response.status).toBe(200);
  await response.arrayBuffer();
}

/** What the armed hook of `fiber` holds, once it holds something. */
async function held(target: EdgeWorker, fiber: string, timeout: number): Promise<Held> {
  let caught: Held | undefined;
  await expect
    .poll(
      async () => {
        const response = await fetch(`${target.url}/__test/held?${new URLSearchParams({ fiber })}`);
        caught = ((await response.json()) as { held?: Held }).held;
        return caught !== undefined;
      },
      { timeout, intervals: [100] },
    )
    .toBe(true);
  return caught as Held;
}

/**
 * The page's stream of `id` is one contiguous stream from seq 1 to `fiber.end`, equal to the
 * replica's, with ticks 1..`ticks` once each; each tick's effect is in the ledger once, or again
 * only at the edge with `interrupted: true` and the same key. Returns the effects.
 */
async function expectOneTickerStream(
  page: Page,
  target: EdgeWorker,
  id: string,
  ticks: number,
): Promise<LedgerEntry[]> {
  const shown = await pageCx.chunks(page, id);
  expect(shown.map((c) => c.seq)).toEqual(shown.map((_, i) => i + 1));
  expect(shown.at(-1)?.type).toBe("fiber.end");
  const replica = await replicaOf(target, id);
  expect(replica.status).toBe("completed");
  expect(shown.map((c) => [c.seq, c.type, c.data])).toEqual(
    replica.chunks.map((c) => [c.seq, c.type, c.data]),
  );
  const tickNumbers = shown.filter((c) => c.type === "tick").map((c) => (c.data as { i: number }).i);
  expect(tickNumbers).toEqual(Array.from({ length: ticks }, (_, i) => i + 1));
  const effects = homes.ledger.effects.filter((e) => e.kind === "tick" && e.key.startsWith(`${id}:`));
  const keys = new Set(effects.map((e) => e.key));
  expect(keys.size).toBe(ticks);
  for (const key of keys) {
    const [first, ...again] = effects.filter((e) => e.key === key);
    expect(first, key).toBeDefined();
    for (const run of again) expect(run, key).toMatchObject({ where: "edge", interrupted: true });
  }
  return effects;
}

/** Starts a gate (it waits for a `go` event) in the page, reads it, and waits until `target`'s replica of it waits too. */
async function startGate(page: Page, target: EdgeWorker, id: string): Promise<void> {
  await pageCx.start(page, "gate", null, id);
  await pageCx.read(page, id);
  await expect
    .poll(async () => (await replicaOf(target, id).catch(() => undefined))?.status, { timeout: 20_000 })
    .toBe("waiting");
}

/**
 * The page's stream of gate `id` is one contiguous stream to `fiber.end`, equal to `target`'s
 * replica, which ended in the browser that started it (epoch 1), passed once with `payload`; the
 * replica's inbox holds one `go`, consumed; the gate's effect is in the ledger once, run in the
 * browser, not interrupted. Returns the replica's `go` event.
 */
async function expectOneGateStream(page: Page, target: EdgeWorker, id: string, payload: unknown) {
  const shown = await pageCx.chunks(page, id);
  expect(shown.map((c) => c.seq)).toEqual(shown.map((_, i) => i + 1));
  expect(shown.filter((c) => c.type === "passed").map((c) => c.data)).toEqual([
    { payload, where: "browser" },
  ]);
  expect(shown.at(-1)?.type).toBe("fiber.end");
  const replica = await replicaOf(target, id);
  expect(replica).toMatchObject({ status: "completed", epoch: 1 });
  expect(replica.home).toMatch(/^browser:/);
  expect(shown.map((c) => [c.seq, c.type, c.data])).toEqual(
    replica.chunks.map((c) => [c.seq, c.type, c.data]),
  );
  const events = replica.inbox.filter((e) => e.name === "go");
  expect(events).toHaveLength(1);
  expect(events[0]?.consumedBy).toBeDefined();
  expect(homes.ledger.effects.filter((e) => e.kind === "gate" && e.key.startsWith(`${id}:`))).toEqual([
    expect.objectContaining({ where: "browser", interrupted: false }),
  ]);
  return events[0];
}

for (const at of ["ship-before", "ship-after"] as const) {
  const what = at === "ship-before" ? "before the edge applied it" : "after it was applied, its answer lost";
  test(`workerd killed during a shipment, ${what}: the shipper retries, the replica holds every position once, the fiber ends in the browser`, async () => {
    test.setTimeout(120_000);
    const id = fiberId(`ticker-${at}`);
    const TICKS = 7;
    // The browser reaches the edge through a link the spec cuts while it looks at what the kill
    // left, so the browser's retries cannot change it before it is seen.
    const link = await startLink(LINK_PORT, shipEdge.url);
    try {
      const b = await homes.launch(at);
      const page = await openPage(b, pageUrl(link, SHIP_LEASE_MS));
      await startTicker(page, id, TICKS);
      await expect.poll(() => ticksShown(page, id), { timeout: 30_000 }).toBeGreaterThanOrEqual(2);

      // The next shipment that carries commits (the next tick's) is held in the fiber's object.
      await hold(shipEdge, id, at);
      const caught = await held(shipEdge, id, 20_000);
      const first = caught.from as number;
      const last = first + (caught.count as number) - 1;
      if (at === "ship-before") expect((await replicaOf(shipEdge, id)).appliedPos).toBe(first - 1);
      else expect(caught.answer).toMatchObject({ status: "ok", appliedPos: last });
      const killedAt = Date.now();
      await shipEdge.kill();
      link.cut();
      shipEdge = await homes.restart(shipEdge);
      const restartMs = Date.now() - killedAt;

      // What the kill left: the held positions not applied at all, or applied and durable.
      expect((await replicaOf(shipEdge, id)).appliedPos).toBe(at === "ship-before" ? first - 1 : last);
      link.heal();
      // The browser's shipper retries into the restarted edge and the fiber ends in the browser.
      await expect.poll(() => pageCx.state(page, id), { timeout: 60_000 }).toBe("done");
      const effects = await expectOneTickerStream(page, shipEdge, id, TICKS);
      const replica = await replicaOf(shipEdge, id);
      // The browser kept its lease throughout: no takeover, every tick ran there, once.
      expect(replica.home).toMatch(/^browser:/);
      expect(replica.epoch).toBe(1);
      expect(replica.appliedPos).toBeGreaterThan(last);
      expect(effects.length).toBe(TICKS);
      expect(new Set(effects.map((e) => e.where))).toEqual(new Set(["browser"]));
      expect(replica.chunks.filter((c) => c.type === "fiber.recovered")).toHaveLength(0);
      console.log(
        `[faults] ${at}: held positions ${first}..${last}; workerd back ${restartMs} ms after the kill; replica at position ${replica.appliedPos}, ${replica.chunks.length} chunks, home ${replica.home}`,
      );
    } finally {
      await link.close();
    }
  });
}

for (const at of ["ship-before", "ship-after"] as const) {
  const what = at === "ship-before" ? "before the edge applied it" : "after it was applied, its answer lost";
  test(`workerd killed during a shipment, ${what}, and back only after the browser's lease lapsed: the edge takes the fiber over once, the open page is fenced and mirrors one stream`, async () => {
    test.setTimeout(150_000);
    const id = fiberId(`ticker-lapse-${at}`);
    const TICKS = 10;
    const b = await homes.launch(`lapse-${at}`);
    const page = await openPage(b, pageUrl(edge, LEASE_MS));
    await startTicker(page, id, TICKS);
    await expect.poll(() => ticksShown(page, id), { timeout: 30_000 }).toBeGreaterThanOrEqual(2);

    // The next shipment that carries a chunk (a tick's: its step completed in the browser) is
    // held in the fiber's object, and workerd dies. By Rule B the page has not shown that tick.
    await hold(edge, id, at, { chunks: true });
    const caught = await held(edge, id, 20_000);
    const heldSeqs = caught.seqs ?? [];
    expect(heldSeqs.length).toBeGreaterThan(0);
    expect((await pageCx.chunks(page, id)).every((c) => c.seq < Math.min(...heldSeqs))).toBe(true);
    // The lease as the arbiter last wrote it (renewed by the held shipment itself if it applied).
    const before = await replicaOf(edge, id);
    expect(before).toMatchObject({ home: expect.stringMatching(/^browser:/), epoch: 1 });
    const until = before.until as number;
    await edge.kill();
    const killedAt = Date.now();
    // workerd is down while the lease runs out (same machine, same clock as the arbiter's).
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, until - Date.now()) + 1_000));
    edge = await homes.restart(edge);
    const restartedAt = Date.now();
    expect(restartedAt).toBeGreaterThan(until);
    const restarted = await replicaOf(edge, id);
    // Nothing ran the fiber while workerd was down: the replica is as the kill left it.
    expect(restarted.appliedPos).toBe(before.appliedPos);

    // The browser's retry (fenced) or the object's alarm takes the fiber over; the page, open
    // all along, follows the edge's ticks to the end. Every home and epoch the replica shows
    // meanwhile is noted: the edge takes over once.
    const homesSeen = new Set<string>([`${restarted.home?.split(":")[0]} ${restarted.epoch}`]);
    let takenOverAt: number | undefined;
    await expect
      .poll(
        async () => {
          const now = await replicaOf(edge, id);
          homesSeen.add(`${now.home?.split(":")[0]} ${now.epoch}`);
          if (now.home === "edge") takenOverAt ??= Date.now();
          return pageCx.state(page, id);
        },
        { timeout: 60_000, intervals: [250] },
      )
      .toBe("done");
    expect([...homesSeen].filter((h) => !h.startsWith("browser"))).toEqual(["edge 2"]);
    const effects = await expectOneTickerStream(page, edge, id, TICKS);
    const replica = await replicaOf(edge, id);
    expect(replica).toMatchObject({ home: "edge", epoch: 2 });
    // The browser ran nothing once its lease was gone; the edge ran the rest: at most the step
    // the kill cut runs again there (interrupted, same key).
    expect(effects.filter((e) => e.where === "browser").every((e) => e.at < restartedAt)).toBe(true);
    expect(new Set(effects.map((e) => e.where))).toEqual(new Set(["browser", "edge"]));
    expect(effects.length).toBeLessThanOrEqual(TICKS + 1);
    expect(replica.chunks.filter((c) => c.type === "fiber.recovered").length).toBeLessThanOrEqual(1);
    // The browser's copy is a mirror of the edge's now: fenced, it never claims the fiber again.
    expect(await pageCx.get(page, id)).toMatchObject({ home: { home: "edge", epoch: 2 } });
    console.log(
      `[faults] lapse during restart, ${at}: held positions ${caught.from}..${(caught.from as number) + (caught.count as number) - 1} (${caught.types?.join(", ")}; seqs ${heldSeqs.join(", ")}); workerd down ${restartedAt - killedAt} ms (lease ended ${until - killedAt} ms after the kill); taken over ${takenOverAt === undefined ? "?" : takenOverAt - restartedAt} ms after the restart; ticks: browser ${effects.filter((e) => e.where === "browser").length}, edge ${effects.filter((e) => e.where === "edge").length} effects`,
    );
  });
}

test("workerd killed during a takeover: the restarted edge completes it once and the relaunched page reads one stream", async () => {
  test.setTimeout(150_000);
  const id = fiberId("ticker-takeover");
  const TICKS = 10;
  const first = await homes.launch("takeover");
  const page = await openPage(first, pageUrl(edge, LEASE_MS));
  await startTicker(page, id, TICKS);
  await expect.poll(() => ticksShown(page, id), { timeout: 30_000 }).toBeGreaterThanOrEqual(3);

  // The edge runtime's first claim after the arbiter's takeover is held: the epoch bump is
  // committed, the claim (the takeover's second transaction) is not made.
  await hold(edge, id, "claim");
  const killedAt = Date.now();
  await crashBrowser(first);
  await held(edge, id, LEASE_MS * 6);
  const heldAfterMs = Date.now() - killedAt;
  const midway = await replicaOf(edge, id);
  expect(midway).toMatchObject({ home: "edge", epoch: 2 });
  const effectsAtKill = homes.ledger.effects.filter((e) => e.key.startsWith(`${id}:`)).length;

  edge = await homes.restart(edge);
  // The restarted edge runs the fiber, under the same epoch.
  await expect
    .poll(async () => (await replicaOf(edge, id)).chunks.filter((c) => c.type === "tick").length, {
      timeout: 30_000,
    })
    .toBeGreaterThan(midway.chunks.filter((c) => c.type === "tick").length);
  expect(homes.ledger.effects.filter((e) => e.key.startsWith(`${id}:`)).length).toBeGreaterThan(
    effectsAtKill,
  );

  // The browser comes back and reads the fiber from seq 1, live, to its end.
  const second = await homes.relaunch(first);
  const again = await openPage(second, pageUrl(edge, LEASE_MS));
  await pageCx.read(again, id);
  await expect.poll(() => pageCx.state(again, id), { timeout: 60_000 }).toBe("done");
  const effects = await expectOneTickerStream(again, edge, id, TICKS);
  const replica = await replicaOf(edge, id);
  expect(replica).toMatchObject({ home: "edge", epoch: 2 });
  expect(new Set(effects.map((e) => e.where))).toEqual(new Set(["browser", "edge"]));
  // A fiber asleep at the browser's kill is woken at the edge, not recovered; the kill of
  // workerd before its claim interrupted nothing either: at most one recovery in all.
  expect(replica.chunks.filter((c) => c.type === "fiber.recovered").length).toBeLessThanOrEqual(1);
  console.log(
    `[faults] takeover: claim held ${heldAfterMs} ms after the browser's SIGKILL (lease ${LEASE_MS} ms); ticks: browser ${effects.filter((e) => e.where === "browser").length}, edge ${effects.filter((e) => e.where === "edge").length} effects`,
  );
});

test("workerd killed in the first step after a takeover: the tick cut twice runs a third time, interrupted, with the same key", async () => {
  test.setTimeout(150_000);
  const id = fiberId("ticker-cut-twice");
  const TICKS = 8;
  const first = await homes.launch("cut-twice");
  const page = await openPage(first, pageUrl(edge, LEASE_MS));
  await startTicker(page, id, TICKS);
  await expect.poll(() => ticksShown(page, id), { timeout: 30_000 }).toBeGreaterThanOrEqual(2);

  // The browser's next tick reports its effect and is cut there by the browser's SIGKILL...
  const inBrowser = await homes.ledger.holdNext((e) => e.key.startsWith(`${id}:`) && e.where === "browser");
  const atEdge = homes.ledger.holdNext((e) => e.key === inBrowser.key && e.where === "edge");
  await crashBrowser(first);
  // ...and again at the edge, which took the fiber over and ran that step first: workerd is
  // killed with the step's effect done and its completion not written.
  const cutAtEdge = await atEdge;
  expect(cutAtEdge).toMatchObject({ where: "edge", interrupted: true });
  expect(await replicaOf(edge, id)).toMatchObject({ home: "edge", epoch: 2, status: "running" });
  edge = await homes.restart(edge);

  const second = await homes.relaunch(first);
  const again = await openPage(second, pageUrl(edge, LEASE_MS));
  await pageCx.read(again, id);
  await expect.poll(() => pageCx.state(again, id), { timeout: 60_000 }).toBe("done");
  const effects = await expectOneTickerStream(again, edge, id, TICKS);
  expect(effects.filter((e) => e.key === inBrowser.key).map((e) => [e.where, e.interrupted])).toEqual([
    ["browser", false],
    ["edge", true],
    ["edge", true],
  ]);
  expect(effects.length).toBe(TICKS + 2);
  const replica = await replicaOf(edge, id);
  expect(replica).toMatchObject({ home: "edge", epoch: 2 });
  // Two interruptions, each recovered once: the browser's kill and workerd's.
  expect(replica.chunks.filter((c) => c.type === "fiber.recovered")).toHaveLength(2);
});

test("IndexedDB lost in a browser crash: the relaunched page restores the fiber from the edge and reads it whole", async () => {
  test.setTimeout(150_000);
  const id = fiberId("ticker-wiped");
  const TICKS = 8;
  const first = await homes.launch("wiped");
  const page = await openPage(first, pageUrl(edge, LEASE_MS));
  await startTicker(page, id, TICKS);
  await expect.poll(() => ticksShown(page, id), { timeout: 30_000 }).toBeGreaterThanOrEqual(3);
  const shownBefore = await pageCx.chunks(page, id);
  await crashBrowser(first);

  // What Chromium does to an origin whose IndexedDB it finds damaged after an unclean shutdown:
  // the profile keeps everything else (the worker's registration too), IndexedDB starts empty.
  const indexedDb = join(first.userDataDir, "Default", "IndexedDB");
  expect(readdirSync(indexedDb).some((name) => name.startsWith(`http_localhost_${PAGE_PORT}`))).toBe(true);
  rmSync(indexedDb, { recursive: true, force: true });
  expect(existsSync(indexedDb)).toBe(false);

  // Back within the dead browser's lease: the page names the fiber, the worker restores it from
  // the edge as a mirror and follows it while the edge takes it over and finishes it.
  const second = await homes.relaunch(first);
  const homeAtRelaunch = (await replicaOf(edge, id)).home;
  const again = await openPage(second, pageUrl(edge, LEASE_MS));
  // The worker's watched store found the fibers its marker (in Cache Storage, which the crash
  // left) named gone from IndexedDB, and the worker restored this one from the edge at its
  // start: it is listed before any page names it.
  await expect.poll(() => pageCx.list(again), { timeout: 30_000 }).toContain(id);
  expect(await pageCx.get(again, id)).toMatchObject({
    id,
  });
  await pageCx.read(again, id);
  await expect.poll(() => pageCx.state(again, id), { timeout: 60_000 }).toBe("done");
  const effects = await expectOneTickerStream(again, edge, id, TICKS);
  // What the page showed before the crash is where the restored stream begins.
  const shown = await pageCx.chunks(again, id);
  expect(shown.slice(0, shownBefore.length)).toEqual(shownBefore);
  expect(await replicaOf(edge, id)).toMatchObject({ home: "edge", epoch: 2 });
  expect(new Set(effects.map((e) => e.where))).toEqual(new Set(["browser", "edge"]));
  console.log(`[faults] IndexedDB lost: the replica's home when the browser came back: ${homeAtRelaunch}`);
});

test("an event sent to the edge while the browser holds the fiber is pushed to it and consumed there once", async () => {
  test.setTimeout(90_000);
  const id = fiberId("gate-pushed");
  const b = await homes.launch("pushed");
  const page = await openPage(b, pageUrl(edge, LEASE_MS));
  await startGate(page, edge, id);

  // A webhook reaches the edge: the arbiter keeps the event and pushes it in its next answer.
  const sent = await fetch(`${edge.url}/__fiberline/fibers/${id}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "go", payload: { from: "webhook" } }),
  });
  expect(sent.status).toBe(202);
  await sent.arrayBuffer();
  await expect.poll(() => pageCx.state(page, id), { timeout: 30_000 }).toBe("done");
  // Shipped back with the browser's history, once, consumed; its effect once, in the browser.
  const event = await expectOneGateStream(page, edge, id, { from: "webhook" });
  expect(event?.eventId).toMatch(/^edge:/);
});

test("a cancel sent to the edge while the browser holds the fiber is carried out in the browser: the page's stream ends cancelled", async () => {
  test.setTimeout(90_000);
  const id = fiberId("gate-cancel");
  const b = await homes.launch("cancel");
  const page = await openPage(b, pageUrl(edge, LEASE_MS));
  await startGate(page, edge, id);

  // Another device (or a server) cancels at the edge: the arbiter sends the cancel in the
  // browser's next answer, the browser cancels the fiber and ships its end, then the edge answers.
  const answer = await fetch(`${edge.url}/__fiberline/fibers/${id}/cancel`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ reason: "stopped from another device" }),
  });
  expect({ status: answer.status, body: await answer.json() }).toEqual({
    status: 200,
    body: { status: "cancelled" },
  });
  await expect.poll(() => pageCx.state(page, id), { timeout: 30_000 }).toBe("done");
  const shown = await pageCx.chunks(page, id);
  expect(shown.map((c) => c.seq)).toEqual(shown.map((_, i) => i + 1));
  expect(shown.at(-1)).toMatchObject({
    type: "fiber.end",
    data: { status: "cancelled", error: { code: "cancelled", message: "stopped from another device" } },
  });
  const replica = await replicaOf(edge, id);
  expect(replica).toMatchObject({ status: "cancelled", epoch: 1 });
  expect(replica.home).toMatch(/^browser:/);
  expect(shown.map((c) => [c.seq, c.type])).toEqual(replica.chunks.map((c) => [c.seq, c.type]));
  // The gate never passed, in either home.
  expect(homes.ledger.effects.filter((e) => e.key.startsWith(`${id}:`))).toEqual([]);
});

test("a pushed event shipped back in a shipment that workerd applied and died before answering: consumed once, in the browser", async () => {
  test.setTimeout(120_000);
  const id = fiberId("gate-kill");
  const link = await startLink(LINK_PORT, shipEdge.url);
  try {
    const b = await homes.launch("gate-kill");
    const page = await openPage(b, pageUrl(link, SHIP_LEASE_MS));
    await startGate(page, shipEdge, id);

    // The webhook's event is pushed to the browser (a heartbeat's answer, within 10 s), which
    // enqueues it and ships it back: that shipment is applied and its answer never sent.
    await hold(shipEdge, id, "ship-after");
    const sent = await fetch(`${shipEdge.url}/__fiberline/fibers/${id}/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "go", payload: { from: "webhook" } }),
    });
    expect(sent.status).toBe(202);
    await sent.arrayBuffer();
    const caught = await held(shipEdge, id, 30_000);
    expect(caught.types).toContain("event");
    expect(caught.answer).toMatchObject({ status: "ok" });
    console.log(`[faults] pushed event: the held shipment carried ${caught.types?.join(", ")}`);
    await shipEdge.kill();
    link.cut();
    shipEdge = await homes.restart(shipEdge);
    // The replica holds the event once, shipped back with its edge id; the browser has no answer.
    const survived = (await replicaOf(shipEdge, id)).inbox.filter((e) => e.name === "go");
    expect(survived).toHaveLength(1);
    expect(survived[0]?.eventId).toMatch(/^edge:/);
    link.heal();

    await expect.poll(() => pageCx.state(page, id), { timeout: 60_000 }).toBe("done");
    await expectOneGateStream(page, shipEdge, id, { from: "webhook" });
  } finally {
    await link.close();
  }
});

test("workerd killed between two of the arbiter's transactions in one shipment (the event enqueued, its position not recorded): the retry applies it once", async () => {
  test.setTimeout(120_000);
  const id = fiberId("gate-between");
  const link = await startLink(LINK_PORT, shipEdge.url);
  try {
    const b = await homes.launch("gate-between");
    const page = await openPage(b, pageUrl(link, SHIP_LEASE_MS));
    await startGate(page, shipEdge, id);
    const { appliedPos } = await replicaOf(shipEdge, id);

    // The page's event ships alone or ahead of the commits it wakes: the arbiter enqueues it in
    // a transaction of its own, then records its position with what follows. workerd dies in
    // between.
    await hold(shipEdge, id, "ship-between");
    const sending = pageCx.sendEvent(page, id, "go", { from: "page" });
    // Answered once the event is shipped; the page's call may time out first (its deadline is 20 s).
    const answered = sending.then(
      () => "answered",
      (error: unknown) => `failed: ${String(error)}`,
    );
    const caught = await held(shipEdge, id, 30_000);
    expect(caught).toMatchObject({ from: (appliedPos as number) + 1, wrote: ["enqueueEvent"] });
    expect(caught.types?.[0]).toBe("event");
    await shipEdge.kill();
    link.cut();
    shipEdge = await homes.restart(shipEdge);
    // What the kill left: the event in the replica's inbox, its position not applied.
    const midway = await replicaOf(shipEdge, id);
    expect(midway.appliedPos).toBe(appliedPos);
    expect(midway.status).toBe("waiting");
    expect(midway.inbox.filter((e) => e.name === "go")).toHaveLength(1);
    link.heal();

    // The shipper sends the shipment again: the event is recognised, not enqueued twice.
    await expect.poll(() => pageCx.state(page, id), { timeout: 60_000 }).toBe("done");
    await expectOneGateStream(page, shipEdge, id, { from: "page" });
    expect((await replicaOf(shipEdge, id)).appliedPos).toBeGreaterThan(
      (caught.from as number) + (caught.count as number) - 1,
    );
    console.log(
      `[faults] between transactions: the held shipment carried ${caught.types?.join(", ")}; committed ${caught.wrote?.join(", ")}, held ${caught.next}; the page's sendEvent: ${await answered}`,
    );
  } finally {
    await link.close();
  }
});
