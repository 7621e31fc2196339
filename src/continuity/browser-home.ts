/**
 * The browser home of continuity, wired (issue #18, docs/design/continuity.md): what a Service
 * Worker host needs to replicate fibers of some kinds to their Durable Object, to forward control
 * calls while the edge runs them, and to mirror the edge's history back.
 *
 * `createReplicatedRuntime({ store, fibers, edge })` builds both halves at once, because the
 * runtime must be created with them: its store is `ReplicatingStore(store)` (every commit of a
 * replicated fiber goes into the `Outbox`) under a guard that keeps the runner off fibers another
 * home runs, and its `replication` port is the outbox's (Rules A and B), seen through the mirror
 * (a fiber that is away shows everything its local copy holds once that copy was brought up to
 * the replica). It returns `{ runtime, continuity }`; pass both to `createServiceWorkerHost`,
 * which calls `continuity.start(scope)` at the worker's start, before `runtime.recover()`.
 *
 * Where a fiber stands, as this home decides it (`settle`):
 * - `home`: the outbox holds it and no arbiter answer said otherwise: it runs here.
 * - `away`: the arbiter fenced this home (a fiber known from an earlier worker start waits for the
 *   arbiter's first answer before it runs: the edge may have taken it over meanwhile), or the
 *   local record is a mirror (`record.home` names another home), or the edge holds a fiber of a
 *   replicated kind this home's outbox does not know (an outbox kept in memory is gone after a
 *   restart, so the arbiter's answer decides). Its copy is mirrored and followed; `sendEvent` and
 *   `cancel` go to the edge.
 * - `local`: not a replicated kind, or a replicated fiber the edge never received (created here,
 *   killed before its first shipment, and the outbox gone with the worker): it runs here only.
 * - `missing`: neither here nor at the edge.
 *
 * Restore: a fiber this browser does not have but the edge does is rebuilt from the replica as a
 * mirror (`settle` on any call that names it: `get`, `inspect`, a stream, an event, a cancel),
 * and at the worker's start for every fiber `watchStorage` found lost (its marker outside
 * IndexedDB named it, the database came back without it).
 * Who may read it is the edge's `authorize` decision, on the credentials in `edge.headers`.
 *
 * The home is `browser:<deviceId>`, the device id kept in IndexedDB (`loadDeviceId`), and the
 * outbox the one the store keeps when it keeps one (`Outbox.open(store)`, `IdbStore`), else a new
 * one in memory (what a worker had not shipped when it stopped is then never shipped, and the
 * edge redoes it from the shipped prefix, which Rules A and B make safe). Both load in the
 * background: the runtime's store calls wait for them.
 *
 * The handoff back: a fiber the edge runs stays there until it ends, unless its kind is listed
 * with `comeHome: "at-suspension"`: then, while this worker mirrors it, the first read that finds
 * it suspended at the edge (sleeping or waiting, nothing of it running there) asks the arbiter for
 * it (`Arbiter.comeHome`); once granted, the mirror brings the local copy up to the replica, the
 * outbox adopts it under the new epoch (recorded before anything runs), and the runtime picks it
 * up here like any suspended fiber: its wake-up and its events are this home's again.
 */

import { FencedError } from "../core/errors";
import { defaultLocks, type FiberLocks } from "../core/locks";
import {
  type FiberRecord,
  type FiberStatus,
  type InboxEvent,
  isTerminal,
  type StreamChunk,
} from "../core/records";
import type { Replication } from "../core/replication";
import { createRuntime, type Runtime } from "../core/runtime";
import type { RuntimeOptions } from "../core/runtime-types";
import {
  type ClaimRequest,
  type ClaimResult,
  type CommitResult,
  type CreateResult,
  type DeleteOptions,
  readStreamAndRecord,
  type Store,
  type StreamAndRecord,
  type WriteGroup,
} from "../core/store";
import { cancelShipped } from "./cancel";
import { copyHold } from "./copy-hold";
import { EdgeLink, type EdgeLinkOptions } from "./edge-link";
import { changedHomeError } from "./errors";
import { ForwardingStore } from "./forwarding-store";
import { Mirror } from "./mirror";
import { Outbox } from "./outbox";
import { writesOutbox } from "./outbox-log";
import { browserHome, DEFAULT_LEASE_MS, EDGE_HOME, leaseDeadline } from "./protocol";
import { ReplicatingStore } from "./replicating-store";
import { bufferedEventId, enqueuePushedEvents, sendShippedEvent } from "./send-event";
import { Shipper } from "./shipper";

/** The `edge` option: where replicated fibers go, and which. */
export interface EdgeOptions {
  /** The edge host's origin and route prefix, e.g. `https://edge.example/__fiberline`. */
  baseUrl: string;
  /**
   * The kinds (definition names) to replicate: a name, or `{ name, awaitStart: false }` for a
   * kind whose steps are idempotent by key, so a step starts without waiting for its start to
   * reach the edge (Rule A off: "at least once, same key" across homes for the unshipped window).
   */
  fibers: ReadonlyArray<
    | string
    | {
        name: string;
        awaitStart?: boolean;
        /**
         * `"at-suspension"`: a fiber of this kind the edge took over comes back to a browser
         * of its user that mirrors it, at its next suspension at the edge (a sleep or a wait);
         * `"never"` (default): it stays at the edge until it ends.
         */
        comeHome?: "at-suspension" | "never";
      }
  >;
  /**
   * The lease the edge grants (its `continuity.leaseMs`, default 30 s): set it to the same value.
   * It sets how often a heartbeat renews the lease (a third of it, at most 10 s), and how long a
   * fiber this browser created counts as leased before the edge's first answer (an answer may be
   * lost); after that first answer, the edge's answers carry the real lease.
   */
  leaseMs?: number;
  /** Rule A for every kind listed by name only (default true). */
  awaitStart?: boolean;
  /**
   * Headers sent with every request to the edge (the credentials its `authorize` checks); a
   * function is asked at every request, so a short-lived token can be refreshed.
   */
  headers?: EdgeLinkOptions["headers"];
  /** This browser's id in its home name `browser:<deviceId>` (default: random per worker start). */
  deviceId?: string;
  /**
   * How long the edge may hold a read of a fiber that is away until its replica changed (default
   * 20 s; `0`: read it every `mirrorPollMs` instead). See `MirrorOptions.waitMs`.
   */
  mirrorWaitMs?: number;
  /**
   * The pause between reads of a fiber that is away when the edge does not hold them (an edge
   * from before held reads, `mirrorWaitMs: 0`, more than four fibers followed at once), and four
   * times it after a failed read (default 500 ms).
   */
  mirrorPollMs?: number;
  /** The `fetch` used to reach the edge (default the global one). */
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  /**
   * Called once per worker start for each fiber this home found away (fenced by the arbiter, a
   * mirror, or restored): where it runs now, as far as this home knows (default: nothing).
   */
  onAway?(fiberId: string, where: { home: string; epoch: number } | undefined): void;
  /** Called when a fiber came home here from the edge (`comeHome`), before it runs here again. */
  onHome?(fiberId: string): void;
}

/** Options of `createReplicatedRuntime`: the runtime's own, and `edge`. */
export interface ReplicatedRuntimeOptions extends Omit<RuntimeOptions, "replication"> {
  edge: EdgeOptions;
  /** The outbox (default a new in-memory `Outbox`). */
  outbox?: Outbox;
  /** Where the continuity's failures are reported (default `console.error`). */
  onError?(error: unknown, doing: string): void;
}

/** Where a fiber stands for this home (see the module header). */
export type FiberHome = "home" | "away" | "local" | "missing";

/** The part of the worker's global scope continuity listens to. */
export interface OnlineScopeLike {
  addEventListener(type: "online", listener: () => void): void;
  removeEventListener(type: "online", listener: () => void): void;
}

/**
 * Builds a runtime whose fibers of `edge.fibers` kinds are replicated to the edge, and the
 * continuity that serves it. Create both at the top level of the worker script (synchronously:
 * the parts that need IndexedDB, the device id and a persisted outbox, open in the background
 * and every store call of the runtime waits for them).
 *
 * @example
 * const { runtime, continuity } = createReplicatedRuntime({
 *   store: new IdbStore(),
 *   fibers: [research],
 *   edge: { baseUrl: "https://edge.example/__fiberline", fibers: ["research"] },
 * });
 * createServiceWorkerHost({ runtime, continuity });
 */
export function createReplicatedRuntime(options: ReplicatedRuntimeOptions): {
  runtime: Runtime;
  continuity: BrowserContinuity;
} {
  const { edge, outbox, onError, store: local, ...runtimeOptions } = options;
  // One set of fiber locks for the runner and for continuity's writes of copies (a mirror's, a
  // hand-back's): Web Locks in a browser, shared by every worker of the origin.
  const locks = runtimeOptions.locks ?? defaultLocks();
  const continuity = new BrowserContinuity({
    local,
    edge,
    locks,
    ...(outbox ? { outbox } : {}),
    ...(onError ? { onError } : {}),
  });
  const runtime = createRuntime({
    ...runtimeOptions,
    locks,
    store: continuity.store,
    replication: continuity.replication,
  });
  continuity.attach(runtime);
  return { runtime, continuity };
}

interface ContinuityParts {
  local: Store;
  edge: EdgeOptions;
  /** The runner's fiber locks (default `defaultLocks()`). */
  locks?: FiberLocks;
  outbox?: Outbox;
  onError?(error: unknown, doing: string): void;
}

/** The parts that exist once the device id and the outbox are loaded. */
export interface OpenedContinuity {
  /** This home's name, `browser:<deviceId>`. */
  home: string;
  outbox: Outbox;
  replicating: ReplicatingStore;
  shipper: Shipper;
}

/** How long `settle` waits for the arbiter's first answer on a fiber this worker did not create. */
const FIRST_ANSWER_MS = 5_000;
/** The pause between looks at whether the arbiter answered about a fiber a cancel waits on. */
const UNANSWERED_POLL_MS = 100;
/** The pause between reads of a fiber being restored while another worker holds its lock. */
const RESTORE_RETRY_MS = 50;

/**
 * One browser home's continuity: the outbox, its shipper, the mirror, and the decisions of where
 * each fiber stands. Made by `createReplicatedRuntime`.
 *
 * Failure semantics: nothing here gives up on a fiber: a failed shipment is retried with backoff
 * and at every `online` event, a failed mirror read is read again later, and a failed probe of
 * the edge leaves the fiber undecided (its runner retries the claim), never run on a guess.
 */
export class BrowserContinuity {
  readonly link: EdgeLink;
  readonly mirror: Mirror;
  /** The runtime's store: the guard over `ReplicatingStore(local)`. */
  readonly store: Store;
  /** The runtime's `replication` port. */
  readonly replication: Replication;
  /** Settles once the device id and the outbox are loaded (rejects if they cannot be). */
  readonly opened: Promise<OpenedContinuity>;
  readonly #local: Store;
  readonly #locks: FiberLocks;
  readonly #kinds: Map<string, { awaitStart: boolean; comeHome: boolean }>;
  /** Fibers this home is asking the arbiter for (`comeHome`). */
  readonly #comingHome = new Set<string>();
  readonly #names = new Map<string, string>();
  readonly #report: (error: unknown, doing: string) => void;
  readonly #keepAliveListeners = new Set<(work: Promise<unknown>) => void>();
  readonly #shippedListeners = new Set<(fiberId: string) => void>();
  readonly #discardedListeners = new Set<(fiberId: string) => void>();
  readonly #lapsedListeners = new Set<(fiberId: string, reason: Error) => void>();
  /** Fibers the edge holds that this home's outbox never knew, by what the arbiter said. */
  readonly #away = new Map<string, { epoch: number; home: string }>();
  /** Per fiber, this worker's decision of where it stands (one probe or restore per worker start). */
  readonly #settled = new Map<string, Promise<FiberHome>>();
  /** Fibers whose first answer `settle` waited for in vain (it does not wait again). */
  readonly #waitedFirst = new Set<string>();
  /** Per fiber that is away, the mirror's first read in this worker (streams wait for it). */
  readonly #firstSync = new Map<string, Promise<void>>();
  #now: OpenedContinuity | undefined;
  #runtime: Runtime | undefined;
  #drain: Promise<void> | undefined;
  #scope: OnlineScopeLike | undefined;
  #stopped = false;
  readonly #onAway: EdgeOptions["onAway"];
  readonly #onHome: EdgeOptions["onHome"];
  readonly #online = () => void this.#shipAll();

  constructor(parts: ContinuityParts) {
    const { edge } = parts;
    this.#local = parts.local;
    this.#locks = parts.locks ?? defaultLocks();
    this.#onAway = edge.onAway;
    this.#onHome = edge.onHome;
    this.#report =
      parts.onError ?? ((error, doing) => console.error(`[fiberline/continuity] ${doing} failed:`, error));
    this.#kinds = new Map(
      edge.fibers.map((kind) =>
        typeof kind === "string"
          ? [kind, { awaitStart: edge.awaitStart ?? true, comeHome: false }]
          : [
              kind.name,
              {
                awaitStart: kind.awaitStart ?? edge.awaitStart ?? true,
                comeHome: kind.comeHome === "at-suspension",
              },
            ],
      ),
    );
    this.link = new EdgeLink({
      baseUrl: edge.baseUrl,
      ...(edge.headers ? { headers: edge.headers } : {}),
      ...(edge.fetch ? { fetch: edge.fetch } : {}),
    });
    this.mirror = new Mirror({
      store: this.#local,
      source: this.link,
      ...(edge.mirrorPollMs === undefined ? {} : { pollMs: edge.mirrorPollMs }),
      ...(edge.mirrorWaitMs === undefined ? {} : { waitMs: edge.mirrorWaitMs }),
      onError: (error, id) => this.#report(error, `mirroring fiber ${id}`),
      onSynced: (id, record) => this.#maybeComeHome(id, record),
      hold: (id) => this.#holdCopy(id),
    });
    this.store = new HomeGuardStore(this.#local, this);
    this.replication = this.#port();
    this.opened = this.#open(parts);
    this.opened.then(
      (opened) => {
        this.#now = opened;
      },
      (error: unknown) => this.#report(error, "opening the outbox"),
    );
  }

  async #open(parts: ContinuityParts): Promise<OpenedContinuity> {
    const { edge } = parts;
    const home = browserHome(edge.deviceId ?? (await loadDeviceId()));
    const outbox = parts.outbox ?? (await openOutbox(this.#local, edge.leaseMs ?? DEFAULT_LEASE_MS));
    // Every deadline of the outbox is compared on its clock (the replicating store's and the
    // shipper's by default).
    const replicating = new ReplicatingStore(this.#local, {
      outbox,
      home,
      replicates: (name) => this.#kinds.has(name),
    });
    const leaseMs = edge.leaseMs ?? DEFAULT_LEASE_MS;
    const shipper = new Shipper({
      outbox,
      home,
      send: this.link.ship,
      heartbeatMs: Math.min(10_000, Math.max(100, Math.floor(leaseMs / 3))),
      // A browser cut off past its lease learns it was fenced at its next retry once the link
      // heals: at most half a lease after, not the default 10 s.
      retry: { maxMs: Math.min(10_000, Math.max(1_000, Math.floor(leaseMs / 2))) },
      onError: (error, id) => this.#report(error, `shipping fiber ${id}`),
      // Events that reached the edge while this home holds the fiber (a webhook, another device).
      onEvents: (id, events) => enqueuePushedEvents(this.#requireRuntime())(id, events),
      // A cancel that reached the edge while this browser runs the fiber: carried out here.
      onCancel: (id, reason) => this.#requireRuntime().cancel(id, reason),
    });
    outbox.onAppend(() => this.#keepShipping());
    outbox.onShipped((id) => {
      for (const listener of this.#shippedListeners) listener(id);
    });
    outbox.onLapsed((id, reason) => {
      for (const listener of this.#lapsedListeners) listener(id, reason);
    });
    outbox.onDiscarded((id) => {
      for (const listener of this.#discardedListeners) listener(id);
      // Fenced (by a shipment's answer or a heartbeat's): from now on the fiber's copy here
      // follows the replica, so its stream and state go on showing what the edge does. A
      // fiber with no backlog has no other way here (a waiting one is never claimed again).
      // Not when what was discarded is a view the fiber came home under (an adoption, here or
      // in another worker of the origin): it is this browser's.
      queueMicrotask(() => {
        if (!this.#stopped && outbox.where(id)?.status === "away") this.#goAway(id);
      });
    });
    return { home, outbox, replicating, shipper };
  }

  /** Set by `createReplicatedRuntime`: the runtime events are sent through while a fiber is home. */
  attach(runtime: Runtime): void {
    this.#runtime = runtime;
  }

  /**
   * Starts shipping (and heartbeats), ships again at every `online` event of `scope`, and decides
   * where every live fiber of a replicated kind stands (those that are away get mirrored). The
   * host calls it at the worker's start, before `runtime.recover()`; resolves once every live
   * fiber is decided or its probe failed (a failed one is decided at its runner's next claim).
   */
  async start(scope?: OnlineScopeLike): Promise<void> {
    const { shipper } = await this.opened;
    if (this.#stopped) return;
    shipper.start();
    if (scope && this.#scope === undefined) {
      this.#scope = scope;
      scope.addEventListener("online", this.#online);
    }
    this.#keepShipping();
    const live = await this.#local.listFibers({ status: ["running", "sleeping", "waiting"] });
    // A database the browser wiped (`watchStorage` found its marker's fibers gone): those the
    // edge holds a replica of are restored now, not only when a page names them.
    const lost = await lostFibers(this.#local);
    const ids = [
      ...live.filter((r) => this.#kinds.has(r.name) || r.home !== undefined).map((r) => r.id),
      ...lost,
    ];
    await Promise.all(
      [...new Set(ids)].map((id) =>
        this.settle(id).catch((error: unknown) => {
          this.#report(error, `deciding where fiber ${id} runs`);
        }),
      ),
    );
  }

  /**
   * This worker became the active one (the host's `activate` event): the outbox takes in the
   * fibers an older version created after this one loaded it (`Outbox.learnAll`), and ships
   * what that version left unshipped.
   */
  async activated(): Promise<void> {
    const { outbox } = await this.opened;
    if (this.#stopped) return;
    await outbox.learnAll();
    this.#keepShipping();
  }

  /** Stops shipping and mirroring (the host goes away); the outbox keeps what it holds. */
  stop(): void {
    this.#stopped = true;
    this.#now?.shipper.stop();
    void this.opened.then(
      ({ shipper }) => shipper.stop(),
      () => {},
    );
    this.mirror.stop();
    this.#scope?.removeEventListener("online", this.#online);
    this.#scope = undefined;
  }

  /** Calls `listener` with work that should keep the worker alive (shipping a backlog, a first mirror read). */
  onKeepAlive(listener: (work: Promise<unknown>) => void): () => void {
    this.#keepAliveListeners.add(listener);
    return () => this.#keepAliveListeners.delete(listener);
  }

  /**
   * Where `fiberId` stands for this home, deciding it once per worker start: restores a fiber
   * only the edge has, probes the edge for a fiber of a replicated kind this home's outbox does
   * not know, waits for the arbiter's first answer on one it knows from an earlier start (a
   * persisted outbox: the edge may have taken it over meanwhile), and for a fiber that is away
   * waits for the mirror's first read. A failed probe rejects and is tried again at the next call.
   */
  async settle(fiberId: string): Promise<FiberHome> {
    const { outbox } = await this.opened;
    const where = outbox.where(fiberId);
    if (where?.status === "home" && where.deadline !== undefined) return "home";
    let decided = this.#settled.get(fiberId);
    if (decided === undefined) {
      decided = this.#decide(fiberId);
      this.#settled.set(fiberId, decided);
      // A failed probe is tried again at the next call, and so is a fiber nobody has yet (it
      // may be started here next) or one that runs here (its lease may lapse later).
      const forget = () => {
        if (this.#settled.get(fiberId) === decided) this.#settled.delete(fiberId);
      };
      decided.then((where) => (where === "missing" || where === "home") && forget(), forget);
    }
    return decided;
  }

  /**
   * Whether this worker may run replicated fiber `fiberId` as far as the arbiter's answers go: it
   * answered since the outbox opened (a lease, `Outbox.where(...).deadline`), or this worker
   * created the fiber less than a lease ago (`Outbox.leased`). True for a fiber not replicated.
   */
  answered(fiberId: string): boolean {
    const outbox = this.#now?.outbox;
    const where = outbox?.where(fiberId);
    if (outbox === undefined || where === undefined || where.status !== "home") return true;
    return where.deadline !== undefined || outbox.leased(fiberId, outbox.now());
  }

  /** Whether `fiberId` is away (decided so in this worker, by the outbox, or by a mirror marker). */
  isAway(fiberId: string, record?: FiberRecord): boolean {
    if (this.#now?.outbox.where(fiberId)?.status === "away" || this.#away.has(fiberId)) return true;
    return record?.home !== undefined && record.home.home !== this.#now?.home;
  }

  /**
   * `sendEvent` of the host: to the local runtime while the fiber is here (answered once shipped
   * when it is replicated), to the edge while it is away, and to the edge when it moves away
   * before the event reached the replica (the local copy was dropped with the unshipped tail).
   */
  async sendEvent(fiberId: string, name: string, payload?: unknown): Promise<void> {
    const runtime = this.#requireRuntime();
    const where = await this.settle(fiberId);
    if (where === "away") return this.link.sendEvent(fiberId, name, payload);
    // Not only "home": a fiber "missing" a moment ago may have been started here since, and an
    // event for a fiber that is not replicated is answered once buffered, as `runtime.sendEvent`.
    const { outbox, replicating } = await this.opened;
    try {
      await sendShippedEvent({ runtime, store: replicating, outbox }, fiberId, name, payload);
    } catch (error) {
      if (!this.#movedAway(fiberId, error)) throw error;
      // Under the id it had here: if the shipment that carried it was applied (its answer lost),
      // the arbiter knows the event and does not buffer it twice.
      await this.link.sendEvent(fiberId, name, payload, bufferedEventId(error));
    }
  }

  /**
   * `cancel` of the host: here while the fiber is here, at the edge while it is away, and at the
   * edge when it turns out to have moved away meanwhile. A cancel here of a replicated fiber is
   * answered once the arbiter holds the fiber's end (offline, once the link is back).
   *
   * Failure semantics: rejects with `fenced` when the home that runs the fiber right now could
   * not cancel it (this home's lease lapsed and the edge has not taken over yet, or the fiber
   * is between homes): nothing was cancelled; cancel again shortly.
   */
  async cancel(fiberId: string, reason?: string): Promise<FiberStatus> {
    const runtime = this.#requireRuntime();
    const where = await this.settle(fiberId);
    if (where === "away") return this.#cancelAtEdge(fiberId, reason);
    try {
      // Not only "home": a fiber "missing" a moment ago may have been started here since; one
      // that is not replicated is answered once cancelled here, as `runtime.cancel` answers.
      const { outbox } = await this.opened;
      // Restarted with no answer from the arbiter yet (offline), a live fiber is not claimed here
      // (`answered`): the cancel waits for that answer, as it would for its end to be shipped.
      // (Of an ended one it claims nothing: its status is the answer.)
      const record = await this.#local.getFiber(fiberId);
      if (record !== undefined && !isTerminal(record.status)) await this.#untilAnswered(fiberId);
      if (this.isAway(fiberId)) return await this.#cancelAtEdge(fiberId, reason);
      return await cancelShipped({ runtime, outbox }, fiberId, reason);
    } catch (error) {
      if (!this.#movedAway(fiberId, error)) throw error;
      return this.#cancelAtEdge(fiberId, reason);
    }
  }

  /**
   * Resolves once this worker may claim `fiberId` (`answered`), it moved away, this stopped, or
   * no answer will come (the shipper gave the fiber up: the edge lost or collected its replica;
   * the cancel then meets the held claim and says so).
   */
  async #untilAnswered(fiberId: string): Promise<void> {
    const given = () => this.#now?.shipper.broken(fiberId) === true;
    while (!this.answered(fiberId) && !this.isAway(fiberId) && !given() && !this.#stopped)
      await new Promise((resolve) => setTimeout(resolve, UNANSWERED_POLL_MS));
  }

  async #cancelAtEdge(fiberId: string, reason?: string): Promise<FiberStatus> {
    const status = await this.link.cancel(fiberId, reason);
    await this.mirror
      .sync(fiberId)
      .catch((error: unknown) => this.#report(error, `mirroring fiber ${fiberId}`));
    return status;
  }

  // ---- internals ------------------------------------------------------------------------------

  async #decide(fiberId: string): Promise<FiberHome> {
    const { outbox, shipper } = await this.opened;
    const record = await this.#local.getFiber(fiberId);
    if (record === undefined) return this.#restore(fiberId);
    // Another worker of the origin may have made it replicated after this one loaded the outbox
    // (an old and a new version share the database): the store's outbox says, not the edge.
    if (this.#kinds.has(record.name) && outbox.where(fiberId) === undefined) await outbox.resync(fiberId);
    if (!this.isAway(fiberId, record) && outbox.where(fiberId)?.status === "home") {
      // Known from an earlier start (or just created): run it once the arbiter answered, which
      // may be that the edge holds it now.
      shipper.kick(fiberId);
      await this.#firstAnswer(outbox, fiberId);
    }
    if (this.isAway(fiberId, record)) {
      // A mirror from an earlier start: remembered, so every write of it is refused here too.
      if (record.home !== undefined && outbox.where(fiberId) === undefined)
        this.#away.set(fiberId, { epoch: record.home.epoch, home: record.home.home });
      return this.#awayNow(fiberId);
    }
    if (!this.#kinds.has(record.name)) return "local";
    if (outbox.replicated(fiberId)) return "home";
    // A replicated fiber this home's outbox never knew (the outbox was memory and the worker
    // stopped): the arbiter decides. Without a replica, it runs here unreplicated.
    const replica = await this.link.readReplica(fiberId, record.streamHead);
    if (replica?.record.home === undefined) return "local";
    const { epoch, home } = replica.record.home;
    this.#away.set(fiberId, { epoch, home });
    return this.#awayNow(fiberId);
  }

  /**
   * Waits until the arbiter answered about `fiberId` (a lease, or a fence), at most a few seconds,
   * once per worker start: with no answer by then (offline, the edge down) the fiber counts as
   * home for pages (an event is buffered, answered once shipped) but no runner claims it before
   * an answer (`answered`), and later calls do not wait again.
   */
  async #firstAnswer(outbox: Outbox, fiberId: string): Promise<void> {
    if (this.#waitedFirst.has(fiberId)) return;
    const deadline = Date.now() + FIRST_ANSWER_MS;
    while (Date.now() < deadline && !this.#stopped) {
      const where = outbox.where(fiberId);
      if (where === undefined || where.status === "away" || where.deadline !== undefined) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    this.#waitedFirst.add(fiberId);
  }

  async #awayNow(fiberId: string): Promise<FiberHome> {
    this.#goAway(fiberId);
    await this.#firstSync.get(fiberId);
    return "away";
  }

  async #restore(fiberId: string): Promise<FiberHome> {
    const replica = await this.link.readReplica(fiberId, 0);
    if (replica?.record.home === undefined) return "missing";
    const { epoch, home } = replica.record.home;
    this.#away.set(fiberId, { epoch, home });
    await this.#awayNow(fiberId);
    for (let waited = 0; (await this.#local.getFiber(fiberId)) === undefined; waited += RESTORE_RETRY_MS) {
      // The first read wrote nothing when the fiber's lock was held: another worker of the
      // origin restores it at the same time, and its copy lands once that worker lets go.
      const synced = await this.mirror.sync(fiberId).catch(() => undefined);
      if (synced?.status !== "busy" || waited >= FIRST_ANSWER_MS)
        return (await this.#local.getFiber(fiberId)) === undefined ? "missing" : "away";
      await new Promise((resolve) => setTimeout(resolve, RESTORE_RETRY_MS));
    }
    return "away";
  }

  /** Mirrors `fiberId` from now on: a first read (which streams wait for), then follows it. */
  #goAway(fiberId: string): void {
    if (this.#firstSync.has(fiberId)) return;
    this.mirror.track(fiberId);
    const fenced = this.#now?.outbox.where(fiberId);
    const where =
      fenced?.status === "away" ? { home: fenced.home, epoch: fenced.epoch } : this.#away.get(fiberId);
    try {
      this.#onAway?.(fiberId, where);
    } catch (error) {
      this.#report(error, "onAway");
    }
    const first = this.mirror.sync(fiberId).then(
      () => this.mirror.follow(fiberId),
      (error: unknown) => {
        this.#report(error, `mirroring fiber ${fiberId}`);
        this.mirror.follow(fiberId);
      },
    );
    this.#firstSync.set(fiberId, first);
    this.#keepAlive(first);
  }

  /**
   * After a read of a followed fiber: asks the arbiter for it when its kind comes home and it is
   * suspended at the edge (or was granted here already and the adoption did not finish).
   */
  #maybeComeHome(fiberId: string, record: FiberRecord): void {
    if (this.#stopped || this.#comingHome.has(fiberId) || !this.#kinds.get(record.name)?.comeHome) return;
    if (record.status !== "sleeping" && record.status !== "waiting") return;
    const holder = record.home?.home;
    if (holder !== EDGE_HOME && (holder === undefined || holder !== this.#now?.home)) return;
    this.#comingHome.add(fiberId);
    const work = this.#comeHome(fiberId).then(
      () => this.#comingHome.delete(fiberId),
      (error: unknown) => {
        this.#comingHome.delete(fiberId);
        this.#report(error, `bringing fiber ${fiberId} home`);
      },
    );
    this.#keepAlive(work);
  }

  /**
   * The handoff back: asks the arbiter, and once granted brings the copy up to the replica,
   * adopts the fiber in the outbox under the new epoch, and lets the runtime pick it up. A
   * refusal (it runs at the edge now, an event waits there) is asked again at a later read.
   */
  async #comeHome(fiberId: string): Promise<void> {
    const { outbox, home, shipper } = await this.opened;
    const sentAt = outbox.now();
    const answer = await this.link.comeHome(fiberId, home);
    if (answer.status !== "granted" || this.#stopped) return;
    const back = await this.mirror.handBack(fiberId, async (record) => {
      await outbox.adopt({
        fiberId,
        epoch: answer.epoch,
        acked: answer.appliedPos,
        shippedSeq: record.streamHead,
        createdAt: record.createdAt,
        deadline: leaseDeadline(sentAt, answer.leaseMs),
      });
      this.#cameHome(fiberId);
      this.noteKind(record);
    });
    // Adopted by another worker of the origin (the grant names this browser): it runs there.
    // Or a runner here holds the fiber: asked again at a later read.
    if (back === "home" || back === "busy") return;
    try {
      this.#onHome?.(fiberId);
    } catch (error) {
      this.#report(error, "onHome");
    }
    shipper.kick(fiberId);
    this.#keepShipping();
    // Picked up like any suspended fiber of this home: its wake-up scheduled, or run if due.
    await this.#requireRuntime().recover();
  }

  /** `fiberId` is this browser's own again: no more away, nor decided or synced as such. */
  #cameHome(fiberId: string): void {
    this.#away.delete(fiberId);
    this.#settled.delete(fiberId);
    this.#firstSync.delete(fiberId);
    this.#waitedFirst.delete(fiberId);
  }

  /**
   * The fiber under `fiberId` was collected here, or a new one was created under the id (by the
   * guard, the runtime's store): what this worker decided of the old one does not carry over.
   */
  forget(fiberId: string): void {
    this.#cameHome(fiberId);
    this.mirror.forget(fiberId);
  }

  /** The mirror's `hold` around a write of `fiberId`'s copy (`copyHold`, once the outbox is open). */
  async #holdCopy(fiberId: string): Promise<{ home: boolean; release(): void } | null> {
    const { outbox } = await this.opened;
    return copyHold(this.#locks, outbox, (id) => this.#cameHome(id))(fiberId);
  }

  #movedAway(fiberId: string, error: unknown): boolean {
    if (!(error instanceof FencedError) || (error as { code?: string }).code !== "fenced") return false;
    if (this.#now?.outbox.where(fiberId)?.status !== "away") return false;
    this.#goAway(fiberId);
    return true;
  }

  /** Ships every replicated fiber now (the `online` event). */
  async #shipAll(): Promise<void> {
    const { outbox, shipper } = await this.opened;
    for (const id of outbox.fiberIds) shipper.kick(id);
    this.#keepShipping();
  }

  /** Keeps the worker alive until the outbox is empty or every fiber with a backlog moved away. */
  #keepShipping(): void {
    const opened = this.#now;
    if (this.#drain !== undefined || opened === undefined) return;
    const { outbox } = opened;
    const pending = () => outbox.fiberIds.some((id) => outbox.hasPending(id));
    if (!pending()) return;
    this.#drain = new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        // A fiber fenced while shipping is mirrored from here on.
        for (const id of outbox.fiberIds) if (outbox.where(id)?.status === "away") this.#goAway(id);
        if (pending() && !this.#stopped) return;
        clearInterval(timer);
        this.#drain = undefined;
        resolve();
      }, 200);
    });
    this.#keepAlive(this.#drain);
  }

  #keepAlive(work: Promise<unknown>): void {
    for (const listener of this.#keepAliveListeners) listener(work);
  }

  /**
   * The outbox's `Replication`, with Rule A off for `awaitStart: false` kinds and mirrors shown
   * whole. Until the outbox is open nothing is shown (readers look again at their next poll) and
   * no step starts.
   */
  #port(): Replication {
    return {
      replicated: (id) => {
        const outbox = this.#now?.outbox;
        return outbox === undefined || outbox.replicated(id) || this.#away.has(id);
      },
      shipped: async (id) => {
        const { outbox } = await this.opened;
        const kind = this.#kinds.get(this.#names.get(id) ?? "");
        // Only under a lease answered to this outbox: one restarted offline may be long taken over.
        if (kind?.awaitStart === false && outbox.leased(id, outbox.now())) return;
        return outbox.shipped(id);
      },
      visibleHead: (id) => {
        const outbox = this.#now?.outbox;
        if (outbox === undefined) return 0;
        // A fiber that is away shows what the mirror brought its copy up to (before that, only
        // what this home shipped: the rest may be rebuilt away). Not the whole copy: another
        // worker of the origin the fiber came home to may have appended chunks to it that it
        // has not shipped, which this one learns only at its mirror's next write.
        const away = outbox.where(id)?.status === "away" || this.#away.has(id);
        if (!away) return outbox.visibleHead(id);
        const copied = this.#firstSync.has(id) ? this.mirror.copiedHead(id) : undefined;
        if (copied !== undefined) return copied;
        return outbox.replicated(id) ? outbox.visibleHead(id) : 0;
      },
      onShipped: (listener) => {
        this.#shippedListeners.add(listener);
        return () => this.#shippedListeners.delete(listener);
      },
      onDiscarded: (listener) => {
        this.#discardedListeners.add(listener);
        return () => this.#discardedListeners.delete(listener);
      },
      onLapsed: (listener) => {
        this.#lapsedListeners.add(listener);
        return () => this.#lapsedListeners.delete(listener);
      },
    };
  }

  /** Called by the guard with every record it sees, so `shipped` knows each fiber's kind. */
  noteKind(record: FiberRecord): void {
    this.#names.set(record.id, record.name);
  }

  #requireRuntime(): Runtime {
    if (this.#runtime === undefined)
      throw new Error("BrowserContinuity: attach(runtime) first (createReplicatedRuntime does).");
    return this.#runtime;
  }
}

/** When a runner asks again for a fiber another home runs. */
const AWAY_RETRY_MS = 60_000;
/** When a runner asks again for a fiber the arbiter has not answered about in this worker. */
const UNANSWERED_RETRY_MS = 1_000;

/**
 * The runtime's store: `ReplicatingStore` once the outbox is open, plus the decisions it cannot
 * make from the outbox alone. A claim of a replicated fiber waits for `settle`, so no runner
 * starts a fiber the edge holds before the edge was asked; a fiber that is away is never claimed
 * here, and no write of it goes through (the mirror writes the local store directly). Reads go
 * to the local store.
 */
class HomeGuardStore extends ForwardingStore {
  readonly #continuity: BrowserContinuity;

  constructor(local: Store, continuity: BrowserContinuity) {
    super(local);
    this.#continuity = continuity;
  }

  async #replicating(): Promise<ReplicatingStore> {
    return (await this.#continuity.opened).replicating;
  }

  /**
   * Readers' reads, through the replicating store: a fiber another worker of the origin created
   * after this one loaded the outbox is learned there before its chunks are shown (Rule B).
   */
  override async readStreamAndRecord(
    fiberId: string,
    after: number,
    limit?: number,
  ): Promise<StreamAndRecord> {
    return readStreamAndRecord(await this.#readsFrom(), fiberId, after, limit);
  }

  override async readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]> {
    return (await this.#readsFrom()).readStream(fiberId, after, limit);
  }

  /** Where readers read: the replicating store, or the local one if the outbox failed to open. */
  async #readsFrom(): Promise<Store> {
    return (await this.#replicating().catch(() => undefined)) ?? this.inner;
  }

  override async createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    const result = await (await this.#replicating()).createFiber(record, chunks);
    if (result.status === "created") this.#continuity.forget(record.id);
    this.#continuity.noteKind(result.record);
    return result;
  }

  override async claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    const replicating = await this.#replicating();
    const record = await this.inner.getFiber(id);
    if (record === undefined) return { status: "missing" };
    this.#continuity.noteKind(record);
    let where: FiberHome;
    try {
      where = await this.#continuity.settle(id);
    } catch {
      // The edge could not be asked: try again soon rather than run a fiber it may hold.
      return { status: "held", record: { ...record, leaseUntil: request.now + 5_000 } };
    }
    if (where === "away")
      return { status: "held", record: { ...record, leaseUntil: request.now + AWAY_RETRY_MS } };
    // Known from an earlier start (a persisted outbox) and no answer from the arbiter since, not
    // even the first one `settle` waits for (offline, the edge down): the edge may have taken
    // it over meanwhile, so it runs once the arbiter answered, not on a guess. (A fiber this
    // worker created holds the lease its create would have been granted until then.)
    if (where === "home" && !this.#continuity.answered(id))
      return { status: "held", record: { ...record, leaseUntil: request.now + UNANSWERED_RETRY_MS } };
    return replicating.claimFiber(id, request);
  }

  override async commit(groups: WriteGroup[]): Promise<CommitResult> {
    const replicating = await this.#replicating();
    const away = new Set(groups.filter((g) => this.#continuity.isAway(g.fiberId)).map((g) => g.fiberId));
    if (away.size === 0) return replicating.commit(groups);
    const rest = groups.filter((g) => !away.has(g.fiberId));
    const result = rest.length === 0 ? { fenced: [] } : await replicating.commit(rest);
    return { fenced: [...result.fenced, ...away] };
  }

  override async enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    const replicating = await this.#replicating();
    const record = await this.inner.getFiber(event.fiberId);
    if (
      record !== undefined &&
      this.#continuity.isAway(event.fiberId, record) &&
      !isTerminal(record.status)
    ) {
      const home = record.home ?? { epoch: 0, home: "edge" };
      throw changedHomeError(event.fiberId, home.epoch, home.home);
    }
    return replicating.enqueueEvent(event);
  }

  override async deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    const deleted = await (await this.#replicating()).deleteFibers(ids, options);
    for (const id of deleted) this.#continuity.forget(id);
    return deleted;
  }
}

/**
 * The fibers a store wrapped by `watchStorage` found lost (its database came back empty while
 * its marker outside IndexedDB listed them), or none for any other store.
 */
async function lostFibers(store: Store): Promise<string[]> {
  const watched = store as Partial<{ checked: Promise<{ state: string; lost: readonly string[] }> }>;
  if (watched.checked === undefined || typeof watched.checked.then !== "function") return [];
  const health = await watched.checked.catch(() => undefined);
  return health?.state === "store_lost" ? [...health.lost] : [];
}

/**
 * The outbox of `store`: the one it keeps (`Outbox.open`, an `IdbStore` once it keeps an outbox
 * of its own) or a new one in memory.
 */
async function openOutbox(store: Store, leaseMs: number): Promise<Outbox> {
  return writesOutbox(store) ? Outbox.open(store, { leaseMs }) : new Outbox({ leaseMs });
}

/**
 * This browser profile's device id: kept in IndexedDB (database `fiberline-device`) so every
 * worker start of the profile is the same home, which a persisted outbox needs (its positions
 * belong to that home's epoch); random where there is no IndexedDB.
 */
export async function loadDeviceId(): Promise<string> {
  const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (idb === undefined) return randomId();
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const request = idb.open("fiberline-device", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("meta");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  try {
    return await new Promise<string>((resolve, reject) => {
      const tx = db.transaction("meta", "readwrite");
      const meta = tx.objectStore("meta");
      const read = meta.get("deviceId");
      let id: string | undefined;
      read.onsuccess = () => {
        id = typeof read.result === "string" ? read.result : randomId();
        if (read.result !== id) meta.put(id, "deviceId");
      };
      tx.oncomplete = () => resolve(id as string);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
