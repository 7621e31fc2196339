/**
 * The world of one continuity schedule: a browser home (a runtime on a `ReplicatingStore` over
 * its own `MemoryStore`, with an `Outbox` and a `Shipper`; or, with the store kind `"idb"`, over an
 * `IdbStore` on fake-indexeddb that keeps the outbox itself, every launch opening a fresh store
 * and `Outbox.open` on it, so a relaunch finds only what the database held) and an edge home (an `Arbiter` and a
 * runtime on another `MemoryStore`, with an alarm that hands lapsed fibers to the edge), joined
 * by a `SimLink` that drops, delays, duplicates and cuts. Either home can be killed and comes
 * back later on the same durable store, as a relaunched browser or a restarted Durable Object.
 *
 * Each store has its own ledger (the engine's write-time checks hold in each home), and the
 * cross-home checks live here: a step attempt runs at most once across both homes (the effect
 * log is kept outside both), never after the replica shows it completed; a browser step runs
 * only once the replica holds its start and only under the browser's lease (Rule A, invariant
 * 1); an edge step only once that lease lapsed; a page sees only chunks the replica holds (Rule
 * B, invariant 4). `continuity-checks.ts` runs the final ones.
 */

import { Arbiter } from "../continuity/arbiter";
import { ArbitratedStore } from "../continuity/arbitrated-store";
import { copyHold } from "../continuity/copy-hold";
import { ForwardingStore } from "../continuity/forwarding-store";
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { Mirror } from "../continuity/mirror";
import { Outbox } from "../continuity/outbox";
import {
  browserHome,
  type ComeHomeAnswer,
  EDGE_HOME,
  leaseDeadline,
  type Shipment,
  type ShipmentAnswer,
} from "../continuity/protocol";
import { ReplicatingStore } from "../continuity/replicating-store";
import { enqueuePushedEvents } from "../continuity/send-event";
import { Shipper } from "../continuity/shipper";
import type { FiberContext, StepContext } from "../core/define";
import { defineFiber } from "../core/define";
import { type FiberLocks, localLocks } from "../core/locks";
import { type HomeLease, isTerminal } from "../core/records";
import type { Replication } from "../core/replication";
import { createRuntime, type Runtime } from "../core/runtime";
import type { ClaimRequest, Store } from "../core/store";
import type { ReplicaSnapshot } from "../edge/replica-read";
import { WatchedStore } from "../edge/watched-store";
import { IdbStore } from "../store/idb-store";
import { MemoryStore } from "../store/memory-store";
import { SimLink } from "./continuity-link";
import { type FaultPlan, FaultStore } from "./fault-store";
import type { Findings } from "./findings";
import { Ledger, MIRROR_WRITER } from "./ledger";
import { LiveAttempts } from "./live-attempts";
import { CheckedMirrorSource } from "./mirror-source";
import type { Prng } from "./prng";
import { codeOf, type Program, type ProgramHost, programHandler } from "./program";
import { SimLockManager } from "./sim-locks";
import type { Trace } from "./trace";
import { EPOCH } from "./virtual-time";
import type { StoreKind } from "./world";

/** The suffix of the arbiter's writer name in the edge ledger (`e1/arbiter`). */
const ARBITER_WRITER = "/arbiter";

/** The browser's home name in every continuity schedule. */
export const HOME = browserHome("sim");

/**
 * A bug planted on purpose, to prove the continuity checks report it: `no-rule-a` runs step
 * functions without waiting for their start to be shipped, `no-rule-b` shows readers unshipped
 * chunks, `volatile-outbox` keeps the outbox in memory beside the durable store (what the
 * IdbStore outbox fixed), so a relaunched browser has forgotten what it had not shipped;
 * `grant-while-running` hands a fiber back to the browser (`comeHome`) without the arbiter's
 * checks, while the edge may still be running it; `lossy-delta` drops the journal and the inbox
 * from the deltas the browser's mirror gets, so its copy falls behind the cursor it holds;
 * `eager-past-lease` lets the steps of `awaitStart: false` fibers start without their start
 * shipped whatever the lease (the port must ask `Outbox.leased`), so one begins past it.
 */
export type ContinuityBug =
  | "no-rule-a"
  | "no-rule-b"
  | "volatile-outbox"
  | "grant-while-running"
  | "lossy-delta"
  | "eager-past-lease";

/** The knobs of one schedule, drawn from the seed. */
export interface ContinuitySettings {
  /** The arbiter's lease on the browser home. */
  homeLeaseMs: number;
  heartbeatMs: number;
  /** Each runtime's own lease within its home. */
  runtimeLeaseMs: number;
  unloadAfterMs: number;
  pollIntervalMs: number;
  /** How often the edge's alarm looks for lapsed leases. */
  alarmMs: number;
  /**
   * How far the edge's clock (its store's, its runtime's, the arbiter's) is ahead of the
   * browser's (behind, when negative). Only durations cross between homes (the protocol's
   * "clocks differ between homes"), and a stamp is read on the clock of the home reading it.
   */
  edgeSkewMs: number;
}

/** One runtime of one home. */
export interface HomeNode {
  readonly name: string;
  readonly where: "browser" | "edge";
  readonly runtime: Runtime;
  crashed: boolean;
}

interface BrowserNode extends HomeNode {
  readonly store: FaultStore;
  /** The outbox this worker loaded and ships from (each worker holds its own copy in memory). */
  readonly outbox: Outbox;
  readonly replicating: ReplicatingStore;
  /** The browser's store under `replicating` (what the mirror writes: no outbox). */
  readonly raw: Store;
  readonly shipper: Shipper;
  /** Stores of this launch's other writers (a come-home's mirror), crashed with it. */
  readonly extraStores: FaultStore[];
  /** This launch's mirror (one per worker start, as `BrowserContinuity` has). */
  readonly mirror: Mirror;

  /** Fibers this launch is asking the arbiter for. */
  readonly comingHome: Set<string>;
}

interface EdgeNode extends HomeNode {
  readonly stores: FaultStore[];
  readonly arbiter: Arbiter;
  readonly alarm: ReturnType<typeof setInterval>;
}

/** Everything one continuity schedule shares. */
export class ContinuityWorld {
  readonly rng: Prng;
  readonly trace: Trace;
  readonly findings: Findings;
  readonly programs: Program[];
  readonly planted: ContinuityBug | undefined;
  readonly settings: ContinuitySettings;
  /** Store faults in each home (a crash kills that home); off once faults stop. */
  readonly browserPlan: FaultPlan;
  readonly edgePlan: FaultPlan;
  readonly link: SimLink;
  /**
   * The browser's durable state: its store and its outbox, which survive its restarts. On
   * `"idb"`, `local` is the first launch's `IdbStore` and each launch replaces `outbox` with the
   * one its own store loaded.
   */
  readonly local: Store;
  outbox: Outbox;
  readonly storeKind: StoreKind;
  readonly localLedger: Ledger;
  /** The edge's durable state: the replica store, watched as the Durable Object host watches it. */
  readonly edgeStore: WatchedStore;
  /** The edge's clock: the browser's (the simulation's) plus `settings.edgeSkewMs`. */
  readonly edgeNow: () => number;
  readonly edgeLedger: Ledger;
  /** The browser's active worker: the one pages talk to. */
  browser: BrowserNode | undefined;
  /**
   * A new version of the worker installed beside the active one (`"idb"` with updates): its
   * runtime recovers and its shipper ships from the outbox it loaded, under the same Web Locks,
   * until it activates (the active one stops) or dies.
   */
  installing: BrowserNode | undefined;
  /** Updates: new versions installed beside a running worker, and those that activated. */
  readonly updates = { installed: 0, activated: 0 };
  edge: EdgeNode | undefined;
  /** Per fiber and seq, the chunk a page was shown (checked against the merged history). */
  readonly shown = new Map<string, Map<number, { type: string; data: string; by: string }>>();
  /** The browser runtime's store (over `local`, or the launch's `IdbStore`), which feeds the outbox. */
  replicating: ReplicatingStore;
  /** The browser's own store under `replicating` (what the mirror writes: no outbox). */
  #rawLocal: Store;
  /** Come-homes granted to the browser, and those it finished adopting. */
  readonly comeHomes = { asked: 0, granted: 0, adopted: 0 };
  /** Shipments the arbiter has not answered yet, by edge launch and fiber (`#deliver`). */
  readonly #inTurn = new Map<string, number>();
  /** The replica's lease as the last answered shipment left it, by edge launch and fiber. */
  readonly #turnEnds = new Map<string, { home: HomeLease | undefined; at: number }>();
  /** Answers the mirrors of every launch got whole and as deltas, and copies checked at a cursor. */
  readonly mirrorReads = { whole: 0, delta: 0, checked: 0 };
  /** Opens a store on the browser's database (`"idb"` only). */
  readonly #openLocal: (() => IdbStore) | undefined;
  /** A launch is opening its store and outbox (`"idb"`: that takes IndexedDB round trips). */
  #launching = false;
  /** Launches (`"idb"`) that found positions not yet acknowledged in the outbox they loaded. */
  reloadedPending = 0;
  /**
   * Claims granted for each fiber to a runtime of either home: every pick-up begins with one,
   * so a fiber woken over and over with nothing to do (a wake-up storm) shows here. (A claim
   * answered "held" writes nothing: a sweep finding the fiber away asks that way every lease.)
   */
  readonly claims = new Map<string, number>();
  /**
   * Step attempts run, by `idempotencyKey#attempt`: the node that ran them, whether it was a
   * browser run of a fiber in `eagerStarts` whose start the replica did not hold yet, and the
   * replica's home epoch then (0: no replica yet).
   */
  readonly #effects = new Map<
    string,
    { by: HomeNode; unshipped: boolean; homeEpoch: number; start: { epoch: number; pos: number } | undefined }
  >();
  /**
   * Per `<fiberId>@<home epoch>`, the highest position of the browser's epoch any answer told it
   * the replica holds: an `awaitStart: false` attempt whose start was acknowledged must not run
   * again at the edge.
   */
  readonly #acked = new Map<string, number>();
  /**
   * Fibers whose kind sets `awaitStart: false` (Rule A off): a browser step starts without its
   * start shipped, while the lease the arbiter last acknowledged to this outbox lasts
   * (`Outbox.leased`, what `BrowserContinuity`'s port asks). Across homes they are run "at least
   * once, same key": an attempt whose start never reached the replica may run again at the edge.
   */
  readonly eagerStarts: ReadonlySet<string>;
  /**
   * Browser step attempts of `eagerStarts` fibers that began before the replica held their start,
   * and attempts the edge ran again because the browser's start never reached it.
   */
  readonly eager = { unshipped: 0, repeated: 0 };
  /** Ids the arbiters of the schedule handed out (`ArbiterOptions.uniqueId`). */
  #uniqueIds = 0;
  /** The draws of mirror reads' network (`#crossForRead`); none: reads cross at once. */
  readonly #readRng: Prng | undefined;
  readonly #attempts = new LiveAttempts(() => Date.now() - EPOCH);
  /** The Web Locks the browser's workers share, in schedules with updates (else each has its own). */
  readonly #browserLocks: SimLockManager | undefined;
  /** Per fiber, the latest answer any browser worker's mirror was served (`CheckedMirrorSource`). */
  readonly #mirrorServes = new Map<
    string,
    Array<{ by: CheckedMirrorSource; n: number; state: ReplicaSnapshot | undefined }>
  >();
  /**
   * Every outbox's options: the lease the arbiter grants, as `BrowserContinuity` passes
   * `edge.leaseMs` (a fiber created here counts as leased for that long before the first answer),
   * and the schedule's clock.
   */
  get #outboxOptions(): { leaseMs: number; clock: () => number } {
    // On the virtual clock (`Date`): the default lease clock reads the real monotonic clock too.
    return { leaseMs: this.settings.homeLeaseMs, clock: Date.now };
  }
  /** The names of the browser's workers so far. */
  readonly #browserNames = new Set<string>();
  #nodes = 0;
  #plantTriggered = false;

  constructor(
    rng: Prng,
    trace: Trace,
    findings: Findings,
    programs: Program[],
    planted?: ContinuityBug,
    storeKind: StoreKind = "memory",
    edgeSkewMs = 0,
    updates = false,
    eagerStarts: ReadonlySet<string> = new Set(),
    readRng?: Prng,
  ) {
    this.rng = rng;
    this.eagerStarts = eagerStarts;
    this.#readRng = readRng;
    this.#browserLocks = updates && storeKind === "idb" ? new SimLockManager(trace) : undefined;
    this.edgeNow = () => Date.now() + edgeSkewMs;
    this.edgeStore = new WatchedStore(new MemoryStore({ clock: this.edgeNow }));
    this.storeKind = storeKind;
    if (storeKind === "idb") {
      const indexedDB = new IDBFactory();
      // Folds a journal every 3 commits (64 by default), so schedules cross folds all the time.
      const openLocal = () => new IdbStore({ name: "fiberline-sim-browser", indexedDB, journalFold: 3 });
      this.#openLocal = openLocal;
      this.local = openLocal();
    } else {
      this.#openLocal = undefined;
      this.local = new MemoryStore();
    }
    this.trace = trace;
    this.findings = findings;
    this.programs = programs;
    this.planted = planted;
    const homeLeaseMs = rng.pick([2_000, 3_000, 5_000]);
    this.settings = {
      homeLeaseMs,
      heartbeatMs: Math.round(homeLeaseMs / rng.pick([3, 4])),
      runtimeLeaseMs: rng.pick([600, 1_500]),
      unloadAfterMs: rng.pick([0, 200, 1_000]),
      pollIntervalMs: rng.pick([100, 250]),
      alarmMs: rng.pick([250, 500]),
      edgeSkewMs,
    };
    const storePlan = (): FaultPlan => ({
      active: true,
      reject: rng.pick([0, 0.01, 0.03]),
      readReject: 0,
      crashBefore: rng.pick([0, 0.005, 0.01]),
      crashAfter: rng.pick([0, 0.005, 0.01]),
      slow: rng.pick([0, 0.02]),
      crashesLeft: rng.int(0, 2),
    });
    this.browserPlan = storePlan();
    this.edgePlan = storePlan();
    const now = () => Date.now() - EPOCH;
    // On IndexedDB the ledger reads through a store of its own, as another context would.
    this.localLedger =
      this.#openLocal === undefined
        ? new Ledger(this.local, findings, trace, now)
        : new Ledger(this.#openLocal(), findings, trace, now, false);
    this.edgeLedger = new Ledger(this.edgeStore, findings, trace, now);
    // An `awaitStart: false` fiber's shipment may carry a step's start with what it emitted.
    this.edgeLedger.batched = (writer, id) => this.eagerStarts.has(id) && writer.endsWith(ARBITER_WRITER);
    this.link = new SimLink(
      rng,
      trace,
      { active: true, drop: rng.pick([0, 0.05, 0.15]), duplicate: rng.pick([0, 0.05, 0.2]), maxDelayMs: 300 },
      (fiberId, shipment) => this.#deliver(fiberId, shipment),
      800,
    );
    // On IndexedDB the first launch opens the outbox; until then nothing writes the browser's store.
    this.outbox = new Outbox(this.#outboxOptions);
    this.#rawLocal = this.local;
    this.replicating = this.#replicatingOver(this.#openLocal === undefined ? this.local : new MemoryStore());
  }

  #replicatingOver(store: Store, raw: Store = store): ReplicatingStore {
    this.#rawLocal = raw;
    return replicatingFor(store, this.outbox);
  }

  /** Whether the planted bug (if any) made a difference somewhere. */
  get plantTriggered(): boolean {
    return this.#plantTriggered;
  }

  /**
   * Starts a browser runtime (a launch or relaunch): `recover()`, then ships its outbox. On
   * `"idb"` the launch first opens a store on the browser's database and the outbox it keeps,
   * which takes a few IndexedDB round trips; the browser counts as down until then.
   */
  spawnBrowser(reason: string): void {
    if ((this.browser && !this.browser.crashed) || this.#launching) return;
    if (this.installing && !this.installing.crashed) {
      // No worker is active: the one installed activates at once.
      this.#activate(this.installing, reason);
      return;
    }
    const openLocal = this.#openLocal;
    if (this.planted === "volatile-outbox") {
      // An outbox in memory over a store that is not told of it (the append follows the commit):
      // a relaunch starts with an empty one, and its unshipped fibers look unreplicated.
      if (this.outbox.fiberIds.some((id) => !this.outbox.settled(id))) this.#plantTriggered = true;
      this.outbox = new Outbox(this.#outboxOptions);
      const raw = openLocal?.() ?? this.local;
      this.replicating = this.#replicatingOver(new ForwardingStore(raw), raw);
      this.#startBrowser(reason);
      return;
    }
    if (openLocal === undefined) {
      this.#startBrowser(reason);
      return;
    }
    this.#launching = true;
    const store = openLocal();
    Outbox.open(store, this.#outboxOptions)
      .then((outbox) => {
        this.#launching = false;
        this.#launchOn(store, outbox, reason);
      })
      .catch(this.#launchFailed);
  }

  /** Starts the active worker on `store` and the outbox it loaded from it (`"idb"`). */
  #launchOn(store: IdbStore, outbox: Outbox, reason: string): void {
    this.outbox = outbox;
    this.#traceLoaded(outbox);
    this.replicating = this.#replicatingOver(store);
    this.#startBrowser(reason);
  }

  /** A launch could not open its store and outbox. */
  readonly #launchFailed = (error: unknown): void => {
    this.#launching = false;
    this.findings.add("launch-failed", `${codeOf(error)}: ${String(error).slice(0, 120)}`);
  };

  /** Traces what a launch found in the outbox it loaded. */
  #traceLoaded(outbox: Outbox): void {
    const found = outbox.fiberIds.flatMap((id) => {
      const pending = outbox.batch(id)?.entries ?? [];
      const where = outbox.where(id)?.status ?? "home";
      return pending.length === 0 && where === "home"
        ? []
        : [
            `${id} ${where} acked ${outbox.acked(id)}, pending ${pending.map((e) => e.pos).join(",") || "none"}`,
          ];
    });
    if (found.some((line) => !line.endsWith("pending none"))) this.reloadedPending++;
    if (found.length > 0) this.trace.add("outbox", `loaded: ${found.join("; ")}`);
  }

  /**
   * A new version of the browser's worker installs beside the active one (`"idb"`, schedules
   * with updates): it opens a store and the outbox on the same database, and its runtime recovers
   * and its shipper ships at once, as the host does at a worker's start; Web Locks decide which
   * runtime runs a fiber. `overlapMs` later it activates: the old worker stops and pages talk to
   * the new one. With no active worker, this is a launch.
   */
  update(overlapMs: number): void {
    const openLocal = this.#openLocal;
    if (!this.#browserLocks || !openLocal || this.#launching || (this.installing && !this.installing.crashed))
      return;
    if (!this.browser || this.browser.crashed) {
      this.spawnBrowser("a new version, with no worker running");
      return;
    }
    this.#launching = true;
    const store = openLocal();
    Outbox.open(store, this.#outboxOptions).then((outbox) => {
      this.#launching = false;
      if (!this.browser || this.browser.crashed) {
        // The active worker died while this one opened: it starts as a launch would.
        this.#launchOn(store, outbox, "a new version, after the old one died");
        return;
      }
      this.#traceLoaded(outbox);
      const replicating = replicatingFor(store, outbox);
      const node = this.#startBrowser("a new version installs", { outbox, replicating, raw: store });
      this.installing = node;
      this.updates.installed++;
      setTimeout(() => {
        if (this.installing === node && !node.crashed) this.#activate(node, "the new version activates");
      }, overlapMs);
    }, this.#launchFailed);
  }

  /** The installed worker `node` becomes the active one; the old one, if still running, stops. */
  #activate(node: BrowserNode, reason: string): void {
    const old = this.browser;
    if (old && !old.crashed) this.#kill(old, "a new version activated");
    this.installing = undefined;
    this.browser = node;
    this.outbox = node.outbox;
    this.replicating = node.replicating;
    this.#rawLocal = node.raw;
    this.updates.activated++;
    this.trace.add("activate", `${node.name}: ${reason}`);
    // As the host does at `activate` (`BrowserContinuity.activated`).
    this.background(`${node.name} learns the outbox`, node.outbox.learnAll());
  }

  /**
   * Starts a browser worker on `parts` (by default the world's current outbox and stores) and
   * returns it; it becomes the active one unless `parts` are given (an update installing).
   */
  #startBrowser(
    reason: string,
    parts?: { outbox: Outbox; replicating: ReplicatingStore; raw: Store },
  ): BrowserNode {
    const name = `b${++this.#nodes}`;
    this.#browserNames.add(name);
    const { outbox, replicating, raw } = parts ?? {
      outbox: this.outbox,
      replicating: this.replicating,
      raw: this.#rawLocal,
    };
    let node!: BrowserNode;
    const store = new FaultStore(
      replicating,
      {
        rng: this.rng,
        trace: this.trace,
        ledger: this.localLedger,
        plan: this.browserPlan,
        onCrash: () => this.#kill(node, "a store fault"),
      },
      name,
    );
    // The origin's Web Locks (shared by its workers in schedules with updates), for the runner
    // and for the mirror's writes of copies (`copyHold`), as `createReplicatedRuntime` wires them.
    const locks = this.#browserLocks?.view(name) ?? localLocks();
    const runtime = this.#runtime(name, store, () => node, this.#replication(outbox), Date.now, locks);
    const shipper = new Shipper({
      outbox,
      home: HOME,
      send: (fiberId, shipment) =>
        this.link.send(fiberId, shipment).then((answer) => {
          const key = `${fiberId}@${shipment.epoch}`;
          this.#acked.set(key, Math.max(this.#acked.get(key) ?? 0, answer.appliedPos));
          return answer;
        }),
      heartbeatMs: this.settings.heartbeatMs,
      retry: { initialMs: 50, maxMs: 1_000 },
      // A webhook the edge accepted while this browser holds the fiber, pushed in an answer.
      onEvents: (fiberId, events) => enqueuePushedEvents(runtime)(fiberId, events),
      // A cancel the edge accepted while this browser runs the fiber, carried in an answer.
      onCancel: (fiberId, reason) => runtime.cancel(fiberId, reason),
      onError: (error, fiberId) =>
        this.findings.add("shipper-error", `${codeOf(error)}: ${String(error).slice(0, 120)}`, fiberId),
    });
    // The mirror that follows fibers that are away and that a come-home brings the copy up with:
    // its writes go to the browser's own store (no outbox), through a faulting store so a crash
    // can cut them, seen by the ledger.
    const mirrorStore = new FaultStore(
      raw,
      {
        rng: this.rng,
        trace: this.trace,
        ledger: this.localLedger,
        plan: this.browserPlan,
        onCrash: () => this.#kill(node, "a store fault (mirror)"),
      },
      `${name}${MIRROR_WRITER}`,
    );
    const mirrorSource = new CheckedMirrorSource({
      edge: this.edgeStore,
      local: raw,
      findings: this.findings,
      trace: this.trace,
      counts: this.mirrorReads,
      lossy: this.planted === "lossy-delta",
      served: this.#mirrorServes,
      cross: (way) => this.#crossForRead(way),
    });
    const mirror = new Mirror({
      store: mirrorStore,
      source: mirrorSource,
      // Held reads, or polls with cursors; a failed sync (a store fault) is read again.
      waitMs: this.rng.pick([0, 1_000, 20_000]),
      pollMs: this.rng.pick([100, 500]),
      onError: (error, id) =>
        this.trace.add("mirror", `${id}: ${codeOf(error)} ${String(error).slice(0, 100)}`),
      hold: copyHold(locks, outbox),
    });
    node = {
      name,
      where: "browser",
      runtime,
      store,
      outbox,
      replicating,
      raw,
      shipper,
      crashed: false,
      extraStores: [mirrorStore],
      mirror,
      comingHome: new Set(),
    };
    if (!parts) this.browser = node;
    this.trace.add("spawn", `${name} (browser): ${reason}`);
    shipper.start();
    this.background(`${name} recover()`, runtime.recover());
    return node;
  }

  /** Kills the browser's workers (every tab closed and the workers stopped, or the process killed). */
  killBrowser(reason: string): void {
    if (this.browser) this.#kill(this.browser, reason);
    if (this.installing) this.#kill(this.installing, reason);
  }

  /** Kills one worker of the browser: it loses its Web Locks, as a dead context does. */
  #kill(node: BrowserNode, reason: string): void {
    if (node.crashed) return;
    node.crashed = true;
    if (this.installing === node) this.installing = undefined;
    this.trace.add("KILL", `${node.name} (browser): ${reason}`);
    node.shipper.stop();
    node.mirror.stop();
    node.store.crash(reason);
    for (const store of node.extraStores) store.crash(reason);
    this.#browserLocks?.releaseAll(node.name);
    void node.runtime.close();
  }

  /** Starts the edge's object (a request or its alarm woke it): arbiter, runtime, `recover()`. */
  spawnEdge(reason: string): void {
    if (this.edge && !this.edge.crashed) return;
    const name = `e${++this.#nodes}`;
    let node!: EdgeNode;
    const host = {
      rng: this.rng,
      trace: this.trace,
      ledger: this.edgeLedger,
      plan: this.edgePlan,
      onCrash: () => this.killEdge("a store fault"),
    };
    const arbiterStore = new FaultStore(this.edgeStore, host, `${name}${ARBITER_WRITER}`);
    const arbiter = new Arbiter({
      store: arbiterStore,
      leaseMs: this.settings.homeLeaseMs,
      clock: this.edgeNow,
      // Unique across the schedule's edge restarts, and the same at every replay.
      uniqueId: () => `${++this.#uniqueIds}`,
    });
    // Events for a replica go through the arbiter: pushed to the browser while it holds the fiber.
    const runtimeStore = new FaultStore(new ArbitratedStore(this.edgeStore, arbiter), host, name);
    const runtime = this.#runtime(name, runtimeStore, () => node, undefined, this.edgeNow);
    const alarm = setInterval(() => this.#alarm(node), this.settings.alarmMs);
    node = {
      name,
      where: "edge",
      runtime,
      stores: [runtimeStore, arbiterStore],
      arbiter,
      alarm,
      crashed: false,
    };
    this.edge = node;
    this.trace.add("spawn", `${name} (edge): ${reason}`);
    this.background(`${name} recover()`, runtime.recover());
  }

  /** Kills the edge's object mid-whatever (workerd killed): it comes back on its durable store. */
  killEdge(reason: string): void {
    const node = this.edge;
    if (!node || node.crashed) return;
    node.crashed = true;
    this.trace.add("KILL", `${node.name} (edge): ${reason}`);
    clearInterval(node.alarm);
    for (const store of node.stores) store.crash(reason);
    void node.runtime.close();
  }

  /**
   * While `fiberId` is away, the browser's mirror follows it (as `BrowserContinuity` does once it
   * finds a fiber away): a whole first read, then held reads that carry only what changed.
   */
  followAway(fiberId: string): void {
    for (const browser of [this.browser, this.installing]) {
      if (!browser || browser.crashed || browser.comingHome.has(fiberId)) continue;
      if (browser.outbox.where(fiberId)?.status !== "away") continue;
      browser.mirror.track(fiberId);
      browser.mirror.follow(fiberId);
    }
  }

  /**
   * The handoff back (`comeHome: "at-suspension"`), as `BrowserContinuity` makes it: the browser
   * asks the arbiter for `fiberId` (the answer may be lost on the way back), and once granted
   * brings its copy up to the replica with a `Mirror` (writes that can fault and kill the
   * browser), adopts it in the outbox under the new epoch, and recovers it. A copy that diverged
   * from the replica (chunks or events never shipped) is rebuilt by the mirror.
   */
  async comeHome(fiberId: string): Promise<void> {
    // Either worker of an update in progress asks when its mirror finds the fiber suspended.
    const workers = [this.browser, this.installing].filter(
      (w): w is BrowserNode =>
        w !== undefined &&
        !w.crashed &&
        !w.comingHome.has(fiberId) &&
        w.outbox.where(fiberId)?.status === "away",
    );
    const browser = workers.length > 1 ? this.rng.pick(workers) : workers[0];
    const edge = this.edge;
    if (!browser || !edge || edge.crashed) return;
    // One request at a time per fiber, as `BrowserContinuity` asks.
    browser.comingHome.add(fiberId);
    try {
      await this.#comeHome(browser, edge, fiberId);
    } finally {
      browser.comingHome.delete(fiberId);
    }
  }

  async #comeHome(browser: BrowserNode, edge: EdgeNode, fiberId: string): Promise<void> {
    this.comeHomes.asked++;
    const sentAt = Date.now();
    // The request crosses the network as a mirror read does (lost: asked again at a later read).
    await this.#crossForRead("request");
    const answer =
      this.planted === "grant-while-running"
        ? await this.#grantUnchecked(edge, fiberId)
        : await edge.arbiter.comeHome(fiberId, HOME);
    this.trace.add("come-home", `${fiberId} asked by ${browser.name}: ${JSON.stringify(answer)}`);
    if (answer.status !== "granted") return;
    this.comeHomes.granted++;
    await new Promise((resolve) => setTimeout(resolve, this.rng.int(0, 200)));
    if (this.rng.chance(0.15)) {
      this.trace.add("come-home", `${fiberId}: the grant's answer was lost`);
      return;
    }
    if (browser.crashed || (this.browser !== browser && this.installing !== browser)) return;
    // Away again since an earlier come-home of this launch: mirrored again (`#goAway` does it).
    browser.mirror.track(fiberId);
    const back = await browser.mirror.handBack(fiberId, async (record) => {
      if (browser.crashed) throw new Error("the browser died");
      await browser.outbox.adopt({
        fiberId,
        epoch: answer.epoch,
        acked: answer.appliedPos,
        shippedSeq: record.streamHead,
        createdAt: record.createdAt,
        deadline: leaseDeadline(sentAt, answer.leaseMs),
      });
    });
    if (browser.crashed) return;
    if (back === "home" || back === "busy") {
      this.trace.add("come-home", `${fiberId}: not adopted by ${browser.name} (${back})`);
      return;
    }
    this.comeHomes.adopted++;
    this.trace.add("come-home", `${fiberId} is ${browser.name}'s again (epoch ${answer.epoch})`);
    browser.shipper.kick(fiberId);
    await browser.runtime.recover();
  }

  /** The planted `grant-while-running`: the arbiter's grant without its checks or its turn. */
  async #grantUnchecked(edge: EdgeNode, fiberId: string): Promise<ComeHomeAnswer> {
    const record = await this.edgeStore.getFiber(fiberId);
    const state = record?.home;
    if (record === undefined || state === undefined || state.home !== EDGE_HOME || isTerminal(record.status))
      return edge.arbiter.comeHome(fiberId, HOME);
    if (record.status === "running") this.#plantTriggered = true;
    const until = this.edgeNow() + this.settings.homeLeaseMs;
    const home = { ...state, home: HOME, formerHome: EDGE_HOME, epoch: state.epoch + 1, until };
    await this.edgeStore.commit([
      { fiberId, generation: record.generation, fiber: { home, owner: HOME, leaseUntil: until } },
    ]);
    return {
      status: "granted",
      epoch: home.epoch,
      appliedPos: home.appliedPos,
      leaseMs: this.settings.homeLeaseMs,
    };
  }

  /** Runs `work` without awaiting it; a rejection is traced, never unhandled. */
  background(label: string, work: Promise<unknown>): void {
    work.then(
      () => this.trace.add("done", label),
      (error) => this.trace.add("error", `${label}: ${codeOf(error)} ${String(error).slice(0, 80)}`),
    );
  }

  /** Records that a page was shown `chunk` of `fiberId` (Rule B says the replica holds it). */
  show(fiberId: string, chunk: { seq: number; type: string; data: unknown }, by: string): void {
    const data = JSON.stringify(chunk.data);
    const held = this.edgeLedger.get(fiberId)?.stream[chunk.seq - 1];
    if (!held || held.seq !== chunk.seq || held.type !== chunk.type || JSON.stringify(held.data) !== data) {
      if (this.planted === "no-rule-b") this.#plantTriggered = true;
      this.findings.add(
        "shown-unshipped",
        `${by} was shown #${chunk.seq} ${chunk.type}, which the replica ${held ? `holds as ${held.type}` : "does not hold"}`,
        fiberId,
      );
    }
    const seen = this.shown.get(fiberId) ?? new Map();
    this.shown.set(fiberId, seen);
    seen.set(chunk.seq, { type: chunk.type, data, by });
  }

  #runtime(
    name: string,
    store: FaultStore,
    node: () => HomeNode,
    replication?: Replication,
    clock: () => number = Date.now,
    locks?: FiberLocks,
  ): Runtime {
    const host = (): ProgramHost => ({
      runner: name,
      get crashed() {
        return node().crashed;
      },
      effect: (ctx, step) => this.#effect(node(), ctx, step),
      observed: () => {},
    });
    const fibers = this.programs.map((program) =>
      defineFiber(program.name, {
        run: programHandler(program, host()),
        ...(program.resumeFrom === undefined ? {} : { resumeFrom: program.resumeFrom }),
        ...(program.onRecovered === undefined ? {} : { onRecovered: () => program.onRecovered ?? "resume" }),
      }),
    );
    const { runtimeLeaseMs, unloadAfterMs, pollIntervalMs } = this.settings;
    return createRuntime({
      store: this.#countingClaims(store),
      fibers,
      runnerId: name,
      leaseMs: runtimeLeaseMs,
      unloadAfterMs,
      pollIntervalMs,
      retentionMs: 86_400_000,
      maxRecoveries: 30,
      locks: locks ?? localLocks(),
      clock,
      random: () => this.rng.next(),
      uuid: () => this.rng.uuid(),
      ...(replication ? { replication } : {}),
    });
  }

  /** `store`, counting the claims it grants in `claims`. */
  #countingClaims(store: Store): Store {
    const claims = this.claims;
    return new Proxy(store, {
      get(target, property) {
        if (property === "claimFiber") {
          return async (id: string, request: ClaimRequest) => {
            const result = await target.claimFiber(id, request);
            if (result.status === "claimed") claims.set(id, (claims.get(id) ?? 0) + 1);
            return result;
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  /** A browser runtime's view of `outbox`, with the planted bug if there is one. */
  #replication(outbox: Outbox): Replication {
    if (this.planted === "no-rule-a") {
      return {
        replicated: (id) => outbox.replicated(id),
        shipped: () => Promise.resolve(),
        visibleHead: (id) => outbox.visibleHead(id),
        onShipped: (listener) => outbox.onShipped(listener),
        onDiscarded: (listener) => outbox.onDiscarded(listener),
      };
    }
    if (this.planted === "no-rule-b") {
      return {
        replicated: (id) => outbox.replicated(id),
        shipped: (id) => outbox.shipped(id),
        visibleHead: () => Number.POSITIVE_INFINITY,
        onShipped: (listener) => outbox.onShipped(listener),
        onDiscarded: (listener) => outbox.onDiscarded(listener),
      };
    }
    if (this.eagerStarts.size === 0) return outbox;
    return {
      replicated: (id) => outbox.replicated(id),
      shipped: (id) => {
        if (!this.eagerStarts.has(id)) return outbox.shipped(id);
        // `BrowserContinuity`'s port for an `awaitStart: false` kind, unless the planted bug
        // skips the wait whatever the lease.
        if (this.planted === "eager-past-lease" || outbox.leased(id, Date.now())) return Promise.resolve();
        return outbox.shipped(id);
      },
      visibleHead: (id) => outbox.visibleHead(id),
      onShipped: (listener) => outbox.onShipped(listener),
      onDiscarded: (listener) => outbox.onDiscarded(listener),
      onLapsed: (listener) => outbox.onLapsed(listener),
    };
  }

  #deliver(fiberId: string, shipment: Shipment): Promise<ShipmentAnswer> | undefined {
    const edge = this.edge;
    if (!edge || edge.crashed) return undefined;
    // The arbiter takes one fiber's shipments in turn, in the order received: one received while
    // an earlier one is still being applied is decided on the lease that one leaves (which it may
    // have renewed), not on the lease at its own arrival.
    const turnKey = `${edge.name}:${fiberId}`;
    const queued = this.#inTurn.get(turnKey) ?? 0;
    this.#inTurn.set(turnKey, queued + 1);
    // On the arbiter's clock, as the leases it compares with.
    const arrival = { home: this.edgeLedger.get(fiberId)?.record?.home, at: this.edgeNow() };
    const reply = edge.arbiter.receive(fiberId, shipment);
    const settle = () => {
      const decidedOn = queued > 0 ? (this.#turnEnds.get(turnKey) ?? arrival) : arrival;
      this.#inTurn.set(turnKey, (this.#inTurn.get(turnKey) ?? 1) - 1);
      this.#turnEnds.set(turnKey, { home: this.edgeLedger.get(fiberId)?.record?.home, at: this.edgeNow() });
      return decidedOn;
    };
    reply.then(
      (answer) => {
        const { home: before, at } = settle();
        // Invariant 6: positions are applied only under the sender's valid lease.
        if (answer.status === "ok" && before && shipment.entries.some((e) => e.pos > before.appliedPos)) {
          if (before.home !== shipment.home || before.until <= at)
            this.findings.add(
              "applied-without-lease",
              `positions past ${before.appliedPos} applied for ${shipment.home} while ${before.home} held the fiber until ${before.until - EPOCH} (decided at ${at - EPOCH})`,
              fiberId,
            );
        }
      },
      (error: unknown) => {
        settle();
        if (codeOf(error) === "protocol_error" || codeOf(error) === "replica_conflict")
          this.findings.add("arbiter-refused", `${codeOf(error)}: ${String(error).slice(0, 160)}`, fiberId);
      },
    );
    return reply;
  }

  /** The edge's alarm: hands lapsed fibers to the edge and recovers them there. */
  #alarm(node: EdgeNode): void {
    if (node.crashed) return;
    const work = node.arbiter.takeOverLapsed().then((moved) => {
      if (moved.length === 0 || node.crashed) return;
      this.trace.add("takeover", `${node.name} takes over ${moved.join(",")}`);
      return node.runtime.recover();
    });
    this.background(`${node.name} alarm`, work);
  }

  /**
   * A mirror read's (or a come-home request's) crossing of the network: a few ms each way, now
   * and then up to the link's longest delay; lost while the link is cut or the edge is down, and
   * with the link's drop rate while faults last. Draws from its own stream (`readRng`).
   */
  async #crossForRead(way: "request" | "answer"): Promise<void> {
    const rng = this.#readRng;
    if (rng === undefined) return;
    const { plan } = this.link;
    const ms = rng.chance(0.1) ? rng.int(20, plan.maxDelayMs) : rng.int(1, 10);
    await new Promise((resolve) => setTimeout(resolve, ms));
    const down = way === "request" && (!this.edge || this.edge.crashed);
    if (down || this.link.isCut || (plan.active && rng.chance(plan.drop)))
      throw new Error(`the replica read's ${way} was lost`);
  }

  /**
   * The outbox position (and home epoch) of the commit that holds the start of attempt `attempt`
   * of step `key` of `fiberId`, while it waits to be acknowledged; `undefined` if it does not.
   */
  #startPosition(
    node: BrowserNode,
    fiberId: string,
    key: string,
    attempt: number,
  ): { epoch: number; pos: number } | undefined {
    const epoch = node.outbox.epoch(fiberId);
    // Every unacknowledged entry (a commit reported out of order leaves a gap `batch` stops at),
    // from this run's restart on: an earlier run's journal had the same keys and attempts.
    const pending = node.outbox.pendingEntries(fiberId);
    const restart = pending.findLastIndex((e) => e.type === "commit" && e.group.clearJournal === true);
    const entry = pending
      .slice(Math.max(0, restart))
      .find(
        (e) =>
          e.type === "commit" &&
          (e.group.journal ?? []).some(
            (j) => j.kind === "step" && j.key === key && j.attempt === attempt && j.status === "started",
          ),
      );
    return epoch !== undefined && entry ? { epoch, pos: entry.pos } : undefined;
  }

  /** A step attempt started running user code on `node`. */
  #effect(node: HomeNode, ctx: FiberContext, step: StepContext): () => void {
    // Compared with the replica's lease, which is on the arbiter's clock.
    const now = this.edgeNow();
    const attempt = `${step.idempotencyKey}#${step.attempt}`;
    this.trace.add("effect", `${node.name} ${attempt}${step.interrupted ? " interrupted" : ""}`);
    const fail = (invariant: string, detail: string) => this.findings.add(invariant, detail, ctx.id);
    // Two workers of the browser under one Web Lock never run a step beside each other.
    const heldAcross = (other: { name: string }) =>
      this.#browserLocks !== undefined && node.where === "browser" && this.#browserNames.has(other.name);
    const ended = this.#attempts.begin(node, ctx, step, this.settings.runtimeLeaseMs, fail, heldAcross);
    const { key, epoch } = parseKey(ctx.id, step.idempotencyKey);
    const replica = this.edgeLedger.get(ctx.id);
    const sameRun = replica?.record?.epoch === epoch;
    const entry = sameRun ? replica?.journal.find((e) => e.kind === "step" && e.key === key) : undefined;
    const eager = this.eagerStarts.has(ctx.id);
    // The replica does not hold this attempt's start (Rule A lets no browser step begin so).
    const unshipped = !entry || entry.attempt < step.attempt;
    const home = replica?.record?.home;
    const homeEpoch = home?.epoch ?? 0;
    const earlier = this.#effects.get(attempt);
    if (earlier !== undefined) {
      // `awaitStart: false`: a browser attempt whose start never reached the replica runs again,
      // with the same key, at the edge, or in the browser once the fiber came home since (its
      // copy rebuilt from the replica, which never heard of that attempt).
      const again = node.where === "edge" || homeEpoch > earlier.homeEpoch;
      const start = earlier.start;
      const acked = start !== undefined && (this.#acked.get(`${ctx.id}@${start.epoch}`) ?? 0) >= start.pos;
      if (earlier.unshipped && start !== undefined && !acked && again) this.eager.repeated++;
      else fail("effect-twice", `${attempt} ran on ${earlier.by.name} and again on ${node.name}`);
    }
    const early = eager && node.where === "browser" && unshipped;
    this.#effects.set(attempt, {
      by: node,
      unshipped: early,
      homeEpoch,
      start: early ? this.#startPosition(node as BrowserNode, ctx.id, key, step.attempt) : undefined,
    });
    if (entry?.status === "completed")
      fail("step-reexecuted", `${attempt} ran on ${node.name} after the replica recorded it completed`);
    if (node.where === "browser") {
      const local = this.localLedger.get(ctx.id)?.journal.find((e) => e.kind === "step" && e.key === key);
      if (local?.status === "completed")
        fail("step-reexecuted", `${attempt} ran on ${node.name} after it completed there`);
      if (unshipped && eager) this.eager.unshipped++;
      else if (unshipped) {
        if (this.planted === "no-rule-a") this.#plantTriggered = true;
        fail(
          "start-not-shipped",
          `${attempt} ran on ${node.name} while the replica held ${entry ? `${entry.status} attempt ${entry.attempt}` : "no start"}`,
        );
      }
      // Rule C holds with Rule A off too: no browser step begins past the lease, the one the
      // arbiter granted (an eager fiber's create may not have reached it yet: no replica, no
      // other home to run it).
      if (home ? home.home !== HOME || home.until <= now : !eager) {
        if (this.planted === "eager-past-lease") this.#plantTriggered = true;
        fail(
          "ran-without-lease",
          `${attempt} ran on ${node.name} while the replica's home is ${describeHome(home)}`,
        );
      }
    } else if (home && home.home !== EDGE_HOME && home.until > now) {
      fail(
        "ran-without-lease",
        `${attempt} ran on ${node.name} while the replica's home is ${describeHome(home)}`,
      );
    }
    return ended;
  }
}

/** The browser home's replicating store over `store`, feeding `outbox` (every kind replicated). */
function replicatingFor(store: Store, outbox: Outbox): ReplicatingStore {
  return new ReplicatingStore(store, { outbox, home: HOME, replicates: () => true });
}

/** The step key (`name#n`) and the run epoch an idempotency key names. */
function parseKey(fiberId: string, idempotencyKey: string): { key: string; epoch: number } {
  const colon = idempotencyKey.indexOf(":", fiberId.length);
  const head = idempotencyKey.slice(0, colon);
  const tilde = head.indexOf("~");
  return { key: idempotencyKey.slice(colon + 1), epoch: tilde < 0 ? 0 : Number(head.slice(tilde + 1)) };
}

function describeHome(home: { home: string; epoch: number; until: number } | undefined): string {
  return home ? `${home.home} (epoch ${home.epoch}, until t=${home.until - EPOCH}ms)` : "unknown";
}
