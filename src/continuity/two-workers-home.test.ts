/**
 * Two Service Worker versions of one origin (an update in progress) that both mirror a fiber
 * the edge took over, when its kind comes home: on one IndexedDB (fake-indexeddb), each a real
 * `BrowserContinuity` with its runtime, their edge link answered by one `Arbiter` in memory.
 */

import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { afterEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import { type FiberLocks, localLocks } from "../core/locks";
import type { FiberEvent } from "../core/records";
import { type ReplicaReadOptions, readReplica } from "../edge/replica-read";
import { IdbStore } from "../store/idb-store";
import { createReplicatedRuntime } from "./browser-home";
import type { Shipment } from "./protocol";
import { edgeInProcess } from "./test-homes";

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

/** A fiber whose first step runs until the test lets it end (`finishLong`). */
let finishLong = () => {};
const long = defineFiber("long", {
  async run(ctx) {
    await ctx.step("long", async () => {
      await new Promise<void>((resolve) => {
        finishLong = resolve;
      });
      return 1;
    });
    return ctx.step("after", () => 2);
  },
});

/** Waits for an event, emits a chunk ("got"), waits for another. */
const echo = defineFiber("echo", {
  async run(ctx) {
    const a = await ctx.waitForEvent<number>("go");
    ctx.emit("got", { a });
    const b = await ctx.waitForEvent<number>("go");
    return a + b;
  },
});

const pair = defineFiber("pair", {
  async run(ctx) {
    const a = await ctx.waitForEvent<number>("go");
    const b = await ctx.waitForEvent<number>("go");
    return a + b;
  },
});

/** A promise the test settles when it wants (`open()`). */
function gate() {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/** The origin's Web Locks, which every worker shares (in-process here). */
const originLocks = localLocks();

function worker(
  indexedDB: IDBFactory,
  edge: ReturnType<typeof edgeInProcess>,
  over: { store?: IdbStore; deviceId?: string; locks?: FiberLocks } = {},
) {
  const asking = gate();
  let shipping: Promise<void> = Promise.resolve();
  /** While set, this worker's replica reads wait (a read the edge holds: nothing changed there). */
  let reads: Promise<void> = Promise.resolve();
  const home: string[] = [];
  const away: string[] = [];
  const errors: unknown[] = [];
  const { runtime, continuity } = createReplicatedRuntime({
    store: over.store ?? new IdbStore({ name: "db", indexedDB }),
    fibers: [pair, long, echo],
    edge: {
      baseUrl: "http://edge.test",
      fibers: [
        { name: "pair", comeHome: "at-suspension" },
        { name: "echo", comeHome: "at-suspension" },
        "long",
      ],
      deviceId: over.deviceId ?? "d1",
      leaseMs: 600,
      mirrorWaitMs: 0,
      mirrorPollMs: 20,
      onHome: (id) => home.push(id),
      onAway: (id) => away.push(id),
    },
    pollIntervalMs: 10,
    locks: over.locks ?? originLocks,
    onError: (error) => errors.push(error),
  });
  const link = continuity.link as unknown as Record<string, unknown>;
  link.ship = async (id: string, shipment: Shipment) => {
    await shipping;
    return edge.arbiter.receive(id, shipment);
  };
  link.comeHome = async (id: string, to: string) => {
    await asking.opened;
    return edge.arbiter.comeHome(id, to);
  };
  // What the edge's replica route answers (`readReplica`, cursors included).
  link.readReplica = async (id: string, after: number, options?: ReplicaReadOptions) => {
    await reads;
    return readReplica(edge.store, id, after, options?.cursor);
  };
  stops.push(async () => {
    continuity.stop();
    await runtime.close();
  });
  return {
    runtime,
    continuity,
    home,
    away,
    errors,
    /** Lets this worker's come-home requests through. */
    ask: asking.open,
    /** Holds this worker's shipments until `release()`. */
    hold() {
      const held = gate();
      shipping = held.opened;
      return held.open;
    },
    /** Holds this worker's replica reads until `release()`. */
    holdReads() {
      const held = gate();
      reads = held.opened;
      return held.open;
    },
  };
}

/** Reads `id`'s stream through `runtime` (a page the worker serves) until `stop` resolves. */
async function follow(
  runtime: ReturnType<typeof worker>["runtime"],
  id: string,
  stop: Promise<void>,
): Promise<FiberEvent[]> {
  const seen: FiberEvent[] = [];
  const abort = new AbortController();
  void stop.then(() => abort.abort());
  try {
    for await (const e of runtime.events(id, { after: 1, signal: abort.signal })) seen.push(e);
  } catch {
    // Ended by the abort, or by a rebuild of the copy (the page opens its stream again).
  }
  return seen;
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A worker that started fiber "p" of `kind` (replicated, waiting at its first event). */
async function startedIn(kind: "pair" | "echo") {
  const indexedDB = new IDBFactory();
  const edge = edgeInProcess();
  const old = worker(indexedDB, edge);
  await old.continuity.start();
  await old.runtime.start(kind, null, { id: "p" });
  await vi.waitFor(async () => expect((await edge.store.getFiber("p"))?.status).toBe("waiting"));
  return { indexedDB, edge, old };
}

/** A new version of the worker, installed and started beside the running one. */
async function installed(indexedDB: IDBFactory, edge: ReturnType<typeof edgeInProcess>) {
  const fresh = worker(indexedDB, edge);
  await fresh.continuity.start();
  return fresh;
}

describe("a fiber two worker versions mirror, when it comes home", () => {
  it("is adopted by one of them, and the other's mirror leaves the copy it runs alone", async () => {
    // A new version installs beside the old one; then the edge takes the fiber over, and both
    // hear of the fence at a heartbeat and mirror the fiber.
    const { indexedDB, edge, old } = await startedIn("pair");
    const fresh = await installed(indexedDB, edge);
    await edge.takeOver("p");
    await vi.waitFor(() => expect([old, fresh].map((w) => w.continuity.isAway("p"))).toEqual([true, true]), {
      timeout: 10_000,
    });
    // Its kind comes home to the old worker first, which takes a page's event and has not
    // shipped it yet when the new worker's request is answered.
    old.ask();
    await vi.waitFor(() => expect(old.home).toEqual(["p"]), { timeout: 10_000 });
    const release = old.hold();
    const first = old.continuity.sendEvent("p", "go", 1);
    const local = new IdbStore({ name: "db", indexedDB });
    await vi.waitFor(async () => expect((await local.readInbox("p")).map((e) => e.payload)).toEqual([1]));
    fresh.ask();
    await new Promise((resolve) => setTimeout(resolve, 300));
    release();
    await first;
    await old.continuity.sendEvent("p", "go", 2);
    await vi.waitFor(async () => expect((await edge.store.getFiber("p"))?.status).toBe("completed"), {
      timeout: 10_000,
    });
    expect((await edge.store.getFiber("p"))?.result).toBe(3);
    expect((await edge.store.readInbox("p")).map((e) => e.payload)).toEqual([1, 2]);
    expect((await local.getFiber("p"))?.result).toBe(3);
    expect((await local.readInbox("p")).map((e) => e.payload)).toEqual([1, 2]);
    expect(fresh.home).toEqual([]);
    expect([...old.errors, ...fresh.errors]).toEqual([]);
    local.close();
  }, 30_000);
});

/** An `IdbStore` whose `createFiber` takes 100 ms (a restore's first write, slowed). */
class SlowCreate extends IdbStore {
  override async createFiber(...args: Parameters<IdbStore["createFiber"]>) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    return super.createFiber(...args);
  }
}

describe("a fiber only the edge has, which two worker versions restore at once", () => {
  it("is found by both: the one that waits for the other's lock does not answer missing", async () => {
    const edge = edgeInProcess();
    // Started by another device, whose replica the edge holds.
    const elsewhere = worker(new IDBFactory(), edge, { deviceId: "d0", locks: localLocks() });
    await elsewhere.continuity.start();
    await elsewhere.runtime.start("pair", null, { id: "r" });
    await vi.waitFor(async () => expect((await edge.store.getFiber("r"))?.status).toBe("waiting"));
    // This browser's database lacks it; both its workers are asked for it at once.
    const indexedDB = new IDBFactory();
    const slow = worker(indexedDB, edge, { store: new SlowCreate({ name: "db", indexedDB }) });
    const other = worker(indexedDB, edge);
    await Promise.all([slow.continuity.opened, other.continuity.opened]);
    expect(await Promise.all([slow.continuity.settle("r"), other.continuity.settle("r")])).toEqual([
      "away",
      "away",
    ]);
  });
});

describe("a fiber fenced while a run here is inside a step", () => {
  it("is mirrored at once: the step's runner, which keeps its lock until the step returns, holds up no copy", async () => {
    const edge = edgeInProcess();
    const w = worker(new IDBFactory(), edge);
    await w.continuity.start();
    await w.runtime.start("long", null, { id: "s" });
    await vi.waitFor(async () => expect((await edge.store.readJournal("s")).length).toBeGreaterThan(0));
    // The edge takes it over; the browser hears of the fence at a heartbeat, its step still running.
    await edge.takeOver("s");
    await vi.waitFor(() => expect(w.continuity.isAway("s")).toBe(true), { timeout: 10_000 });
    // Before, every read found the runner's lock held and wrote nothing until the step returned.
    await vi.waitFor(() => expect(w.continuity.mirror.synced("s")).toBe(true), { timeout: 3_000 });
    finishLong();
  });

  // Rule B across the two workers: a page sees only chunks the edge holds.
  it("shows a page of the other worker no chunk the worker it came home to has not shipped", async () => {
    const { indexedDB, edge, old } = await startedIn("echo");
    const fresh = await installed(indexedDB, edge);
    await edge.takeOver("p");
    await vi.waitFor(() => expect([old, fresh].map((w) => w.continuity.isAway("p"))).toEqual([true, true]), {
      timeout: 10_000,
    });
    await vi.waitFor(() => expect(fresh.continuity.mirror.synced("p")).toBe(true), { timeout: 5_000 });
    // The new worker's next read is held at the edge: the replica does not change while the old
    // worker's shipments are held below.
    const releaseReads = fresh.holdReads();
    await pause(50);
    old.ask();
    await vi.waitFor(() => expect(old.home).toEqual(["p"]), { timeout: 10_000 });
    const releaseShipping = old.hold();
    void old.runtime.sendEvent("p", "go", 1).catch(() => {});
    const local = new IdbStore({ name: "db", indexedDB });
    let got = 0;
    await vi.waitFor(async () => {
      got = (await local.readStream("p", 0)).find((c) => c.type === "got")?.seq ?? 0;
      expect(got).toBeGreaterThan(0);
    });
    local.close();
    // Not at the edge: the old worker has not shipped it (and may never: offline, killed).
    expect((await edge.store.readStream("p", 0)).some((c) => c.type === "got")).toBe(false);

    const seen = await follow(fresh.runtime, "p", pause(300));
    const visible = fresh.continuity.replication.visibleHead("p");
    releaseShipping();
    releaseReads();
    expect(visible).toBeLessThan(got);
    expect(seen.map((e) => e.type)).not.toContain("got");
  }, 30_000);

  it("never publishes to the old worker's live readers a chunk it held unshipped when the fiber moved", async () => {
    const { indexedDB, edge, old } = await startedIn("echo");
    const fresh = await installed(indexedDB, edge);
    const done = gate();
    // A page on the old worker follows the stream.
    const seen = follow(old.runtime, "p", done.opened);
    // The old worker takes an event and emits "got" at seq 2; its shipments are held (slow link).
    const releaseOld = old.hold();
    void old.runtime.sendEvent("p", "go", 1).catch(() => {});
    const local = new IdbStore({ name: "db", indexedDB });
    await vi.waitFor(async () =>
      expect((await local.readStream("p", 0)).map((c) => c.type)).toContain("got"),
    );
    local.close();
    // The edge takes the fiber over and writes its own seq 2; then the fiber comes home to the
    // new worker, which rebuilds the copy from the replica.
    await edge.takeOver("p", [{ seq: 2, type: "edge", data: { n: 2 } }]);
    await vi.waitFor(() => expect(fresh.continuity.isAway("p")).toBe(true), { timeout: 10_000 });
    fresh.ask();
    await vi.waitFor(() => expect(fresh.home).toEqual(["p"]), { timeout: 10_000 });
    // The rebuild ended the page's stream; it opens it again, on the old worker.
    const again = follow(old.runtime, "p", done.opened);
    await pause(100);
    // The old worker's held shipment is answered: fenced, by its own home under the newer epoch,
    // and its outbox view is replaced by the store's.
    releaseOld();
    await pause(500);
    done.open();
    expect((await edge.store.readStream("p", 0)).find((c) => c.seq === 2)?.type).toBe("edge");
    const shown = [...(await seen), ...(await again)].map((e) => `${e.seq}:${e.type}`);
    expect(shown).not.toContain("2:got");
    // The old worker never took the fiber for away: it came home to this browser.
    expect(old.away).toEqual([]);
  }, 30_000);

  it("is away no more once home, and followed again when the edge takes it over a second time", async () => {
    const { indexedDB, edge, old: only } = await startedIn("pair");
    await edge.takeOver("p");
    await vi.waitFor(() => expect(only.away).toEqual(["p"]), { timeout: 10_000 });
    only.ask();
    await vi.waitFor(() => expect(only.home).toEqual(["p"]), { timeout: 10_000 });
    await pause(200);
    // Home: not taken for away again (the adoption's discard of what the old view held is not a fence).
    expect(only.away).toEqual(["p"]);
    expect(only.continuity.isAway("p")).toBe(false);
    // The edge takes it over again and emits there: this worker follows it again.
    await edge.takeOver("p", [{ seq: 2, type: "edge", data: { n: 2 } }]);
    await vi.waitFor(() => expect(only.away).toEqual(["p", "p"]), { timeout: 10_000 });
    const local = new IdbStore({ name: "db", indexedDB });
    await vi.waitFor(
      async () => expect((await local.readStream("p", 1)).map((c) => c.type)).toEqual(["edge"]),
      {
        timeout: 10_000,
      },
    );
    local.close();
  }, 30_000);
});
