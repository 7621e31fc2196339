/**
 * `Arbiter`: the fiber's second home decides who may run it and keeps its replica. It applies the
 * positions a browser ships, in order and exactly once, onto any `Store` (a `SqliteStore` in the
 * Durable Object, a `MemoryStore` in Node and the simulator) through the store's ordinary
 * `createFiber` / `commit` / `enqueueEvent`; it refuses a stale epoch (`fenced`) and a gap
 * (`out_of_order`), ignores positions it already holds, renews the sender's lease, and takes the
 * fiber over for the edge once that lease lapses. docs/design/continuity.md is the contract.
 *
 * Its own state of a fiber (home, epoch, lease, applied position, event marks) is the replica
 * record's `home` field, written by the same store call that applies the positions: on every
 * backend the state and the writes it describes commit or roll back together, with no second
 * table and no SQL here. An event position, which `enqueueEvent` applies without a record patch,
 * is recognised on a retry by its inbox `seq` instead.
 */

import { CancelledError, FiberlineError, serializeError } from "../core/errors";
import { endGroup } from "../core/fiber-end";
import {
  type FiberRecord,
  type FiberStatus,
  type HomeLease,
  type InboxEvent,
  isTerminal,
} from "../core/records";
import type { ClaimResult, Store, WriteGroup } from "../core/store";
import {
  type ComeHomeAnswer,
  DEFAULT_LEASE_MS,
  EDGE_HOME,
  type Shipment,
  type ShipmentAnswer,
  type ShippedEntry,
} from "./protocol";

/** Options of `new Arbiter`. */
export interface ArbiterOptions {
  /** The replica store (the edge runtime's own store). */
  store: Store;
  /** The arbiter's clock (default `Date.now`). Only durations leave it. */
  clock?: () => number;
  /** How long a shipment renews the sender's lease (default 30 s). */
  leaseMs?: number;
  /**
   * A new unique string per call (default `crypto.randomUUID`): the id of an event this arbiter
   * stores in a replica's inbox without one, `edge:in:<id>`, so that only rows written by code
   * before ids were kept are ever matched by their content.
   */
  uniqueId?: () => string;
}

const LIVE = ["running", "sleeping", "waiting"] as const;

/** What `Arbiter.cancel` decided. */
export type CancelDecision =
  /**
   * Cancel it in this home (`runtime.cancel`): the edge holds it (also right after taking over a
   * lapsed lease), or it is no replica.
   */
  | { status: "here" }
  /** It had ended already, as `fiberStatus`: nothing to cancel. */
  | { status: "ended"; fiberStatus: FiberStatus }
  /**
   * Browser `home` holds it under a live lease: the cancel is recorded on the lease (committed
   * before this resolves) and sent to that browser in its next answer; if the lease lapses first,
   * the takeover ends the fiber as `cancelled`. `fiberStatus` is its status right now.
   */
  | { status: "forwarded"; fiberStatus: FiberStatus; home: string };

/** How soon the edge runtime asks again for a replica whose browser lease already lapsed. */
const TAKEOVER_RETRY_MS = 500;

/**
 * The arbiter of the replicated fibers of one store.
 *
 * Failure semantics: each shipment is applied in a few store transactions (one per run of
 * commit positions and one per event position), each carrying the applied position; a crash
 * between them leaves a prefix applied and recorded, and the sender's retry applies the rest. A
 * store error rejects `receive` with nothing of the failed transaction written.
 *
 * @example
 * const arbiter = new Arbiter({ store: host.store });
 * const answer = await arbiter.receive(fiberId, shipment); // { status: "ok", appliedPos, leaseMs }
 */
export class Arbiter {
  readonly #store: Store;
  readonly #clock: () => number;
  readonly #leaseMs: number;
  readonly #uniqueId: () => string;
  /** Per fiber, the tail of its serialised shipments and takeovers. */
  readonly #turns = new Map<string, Promise<unknown>>();
  /**
   * The lease end of every live replica a browser holds, kept as the arbiter writes them, so the
   * alarm's questions (`nextLapse`, `takeOverLapsed`) never list the store's fibers. Loaded from
   * the store once per arbiter (an object that restarts reads its replicas once).
   */
  readonly #leases = new Map<string, number>();
  /** Fibers written since the load began: what the listing says of them may be older. */
  readonly #touched = new Set<string>();
  #loaded: Promise<void> | undefined;
  /** Whether the listing is in `#leases`: from then on `#touched` is not needed. */
  #indexed = false;

  constructor(options: ArbiterOptions) {
    this.#store = options.store;
    this.#clock = options.clock ?? Date.now;
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.#uniqueId = options.uniqueId ?? (() => crypto.randomUUID());
  }

  /** The lease a shipment grants. */
  get leaseMs(): number {
    return this.#leaseMs;
  }

  /** Applies `shipment` of fiber `fiberId` and answers it (see `ShipmentAnswer`). */
  receive(fiberId: string, shipment: Shipment): Promise<ShipmentAnswer> {
    const receivedAt = this.#clock();
    return this.#turn(fiberId, () => this.#receive(fiberId, shipment, receivedAt));
  }

  /** The arbiter's state of `fiberId`, or `undefined` when it holds no replica of it. */
  async state(fiberId: string): Promise<HomeLease | undefined> {
    return (await this.#store.getFiber(fiberId))?.home;
  }

  /**
   * Takes an event for `fiberId` that reached this home (the edge's `POST .../events`, a webhook):
   * while a browser holds the fiber it is kept on the replica's lease and pushed to that browser
   * in its next answers (it comes back shipped, at the browser's inbox seq, and is recognised by
   * its `eventId`); otherwise (the edge holds it, or it ended) it goes into the replica's inbox.
   * A fiber that is not a replica gets an ordinary `enqueueEvent`.
   *
   * Failure semantics: the event is accepted once this resolves (its buffering committed with
   * the lease); a store error rejects with nothing of it written.
   */
  accept(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    return this.#turn(event.fiberId, () => this.#accept(event));
  }

  /**
   * Takes a cancel of `fiberId` that reached this home (the edge's `POST .../cancel`). A fiber a
   * browser holds is cancelled there: the cancel is kept on the replica's lease and sent in every
   * answer to that browser (`ShipmentAnswer.cancel`), which cancels the fiber locally and ships
   * its end; if its lease lapses first, the takeover ends the fiber as `cancelled`, in the same
   * transaction that moves it to the edge. A second cancel while one is pending keeps the first
   * reason. Otherwise the answer says to cancel it here, or that it had ended.
   *
   * Failure semantics: a `forwarded` answer means the cancel is durable (the fiber will end as
   * `cancelled`, unless it ends otherwise first); a store error rejects with nothing written.
   */
  cancel(fiberId: string, reason: string): Promise<CancelDecision> {
    return this.#turn(fiberId, () => this.#cancel(fiberId, reason));
  }

  /**
   * Hands a fiber the edge holds back to browser `home` (the handoff back, `comeHome:
   * "at-suspension"`): granted only while the fiber is suspended at the edge (sleeping or
   * waiting, no runner holding it, no event waiting in its inbox), with `epoch + 1` and a fresh
   * lease, in one transaction. From then on the edge runtime's claims of it are refused (they go
   * through `claimAtEdge`, serialised with this), its wake-ups are the browser's and its events
   * are pushed to the browser, exactly as before the first handoff; if that browser's lease
   * lapses, the edge takes the fiber over again. Asked again by the home that holds it (its
   * answer was lost), it answers the same grant.
   *
   * Failure semantics: one generation-fenced commit; a store error rejects with nothing written.
   */
  comeHome(fiberId: string, home: string): Promise<ComeHomeAnswer> {
    const receivedAt = this.#clock();
    return this.#turn(fiberId, () => this.#comeHome(fiberId, home, receivedAt));
  }

  /**
   * A claim of the edge runtime (`ArbitratedStore.claimFiber`): `claim` runs in the fiber's turn,
   * so it cannot interleave with `comeHome`, only while the edge holds the fiber (or it is no
   * replica); otherwise the answer is `held` until the browser's lease ends.
   */
  claimAtEdge(fiberId: string, now: number, claim: () => Promise<ClaimResult>): Promise<ClaimResult> {
    return this.#turn(fiberId, async () => {
      const record = await this.#store.getFiber(fiberId);
      const state = record?.home;
      if (record === undefined || state === undefined || state.home === EDGE_HOME) return claim();
      // Held by a browser: the runner tries again when the lease ends, or soon after a lapse.
      const retryAt = Math.max(state.until, now + TAKEOVER_RETRY_MS);
      return { status: "held", record: { ...record, leaseUntil: retryAt } };
    });
  }

  /**
   * Hands every live replicated fiber whose browser lease has lapsed to the edge (epoch + 1,
   * home `edge`) and resolves with their ids; the edge runtime's `recover()` then claims them.
   */
  async takeOverLapsed(): Promise<string[]> {
    await this.#load();
    const now = this.#clock();
    const lapsed = [...this.#leases].filter(([, until]) => until <= now).map(([id]) => id);
    const moved: string[] = [];
    for (const id of lapsed) {
      const state = await this.#turn(id, () => this.#takeOver(id));
      if (state?.home === EDGE_HOME) moved.push(id);
    }
    return moved;
  }

  /**
   * When the earliest browser lease of a live fiber lapses (for the host's alarm), if any. Read
   * from the leases the arbiter keeps, not from the store: the host asks at every request.
   */
  async nextLapse(): Promise<number | undefined> {
    await this.#load();
    let at: number | undefined;
    for (const until of this.#leases.values()) at = at === undefined ? until : Math.min(at, until);
    return at;
  }

  /**
   * The live replicas a browser holds: their own wake-ups are due in the browser, and the edge
   * runs them only after a takeover (`nextLapse` says when), so the host's alarm skips them.
   */
  async browserHeld(): Promise<ReadonlySet<string>> {
    await this.#load();
    return new Set(this.#leases.keys());
  }

  /** Reads the browser-held leases of live replicas from the store, once. */
  #load(): Promise<void> {
    this.#loaded ??= this.#store.listFibers({ status: [...LIVE] }).then(
      (live) => {
        for (const r of live) {
          if (this.#touched.has(r.id) || r.home === undefined || r.home.home === EDGE_HOME) continue;
          this.#leases.set(r.id, r.home.until);
        }
        this.#touched.clear();
        this.#indexed = true;
      },
      (error: unknown) => {
        this.#loaded = undefined; // the next call tries again
        throw error;
      },
    );
    return this.#loaded;
  }

  /** Keeps `#leases` in step with a write: `until` while a browser holds a live fiber, else none. */
  #note(fiberId: string, until: number | undefined): void {
    if (!this.#indexed) this.#touched.add(fiberId);
    if (until === undefined) this.#leases.delete(fiberId);
    else this.#leases.set(fiberId, until);
  }

  async #receive(fiberId: string, shipment: Shipment, receivedAt: number): Promise<ShipmentAnswer> {
    assertWellFormed(fiberId, shipment);
    const record = await this.#store.getFiber(fiberId);
    if (record === undefined) return this.#create(fiberId, shipment, receivedAt);
    const state = record.home;
    if (state === undefined) {
      throw new FiberlineError(
        "replica_conflict",
        `Fiber ${fiberId} exists here but is not a replica (it was started at the edge); a browser cannot replicate onto it.`,
      );
    }
    // A create of another fiber under this id: the browser collected the one this replica copies
    // and started the id again. Its position 1 is not the replica's, so it must not be taken
    // for a resend of it (an acknowledgement of positions the new fiber never shipped).
    const [first] = shipment.entries;
    if (first?.type === "create" && first.record.createdAt !== record.createdAt) {
      if (!isTerminal(record.status)) {
        throw new FiberlineError(
          "replica_conflict",
          `Fiber ${fiberId} was started again while its earlier replica here has not ended; it cannot be replicated until that one ends.`,
        );
      }
      await this.#store.deleteFibers([fiberId], { ifGeneration: new Map([[fiberId, record.generation]]) });
      this.#note(fiberId, undefined);
      return this.#create(fiberId, shipment, receivedAt);
    }
    if (state.epoch !== shipment.epoch || state.home !== shipment.home)
      return fencedBy(await this.#counted(fiberId, state, shipment), shipment);
    if (state.until <= this.#clock() && !isTerminal(record.status)) {
      const moved = await this.#takeOver(fiberId);
      return fencedBy(await this.#counted(fiberId, moved ?? state, shipment), shipment);
    }
    const fresh = shipment.entries.filter((e) => e.pos > state.appliedPos);
    const next = fresh[0]?.pos ?? shipment.from;
    if (next > state.appliedPos + 1) return { status: "out_of_order", appliedPos: state.appliedPos };
    return this.#apply(record, { ...state, until: this.#renewedUntil(state, receivedAt) }, fresh);
  }

  /**
   * The lease a shipment received at `receivedAt` renews to. While a cancel is pending it is not
   * renewed past a lease after the cancel arrived (a lease already granted is never shortened):
   * the browser has that long to carry the cancel out, and if it does not (an older worker that
   * ignores it, a cancel that keeps failing there), the lease lapses and the takeover does.
   */
  #renewedUntil(state: HomeLease, receivedAt: number): number {
    const renewed = receivedAt + this.#leaseMs;
    if (state.cancel === undefined) return renewed;
    return Math.max(state.until, Math.min(renewed, state.cancel.at + this.#leaseMs));
  }

  /** Position 1 makes the replica and grants the sender epoch 1. */
  async #create(fiberId: string, shipment: Shipment, receivedAt: number): Promise<ShipmentAnswer> {
    const [first, ...rest] = shipment.entries;
    const refused = refusalWithoutReplica(shipment);
    if (refused !== undefined || first?.type !== "create")
      return refused ?? { status: "out_of_order", appliedPos: 0 };
    const lease: HomeLease = {
      home: shipment.home,
      epoch: 1,
      until: receivedAt + this.#leaseMs,
      appliedPos: 1,
      eventMarks: {},
    };
    const record: FiberRecord = { ...first.record, ...leaseFields(lease) };
    const created = await this.#store.createFiber(record, first.chunks);
    if (created.status === "exists") {
      throw new FiberlineError(
        "replica_conflict",
        `Fiber ${fiberId} (or its idempotency key) is already taken here by another fiber; it cannot be replicated.`,
      );
    }
    // Indexed now: if the rest of the shipment fails and the browser never ships again, the
    // alarm still takes the fiber over at this lease's end.
    this.#note(fiberId, lease.until);
    return this.#apply(created.record, lease, rest);
  }

  /**
   * Applies `entries` (which continue `lease.appliedPos`) onto the replica and records the new
   * position and lease in the same transactions.
   */
  async #apply(record: FiberRecord, lease: HomeLease, entries: ShippedEntry[]): Promise<ShipmentAnswer> {
    const fiberId = record.id;
    let current = lease;
    let groups: WriteGroup[] = [];
    const flush = async (): Promise<boolean> => {
      const patch: WriteGroup = { fiberId, generation: record.generation, fiber: leaseFields(current) };
      const { fenced } = await this.#store.commit([...groups, patch]);
      groups = [];
      // The lease this commit recorded, indexed at once (a later write of this shipment may fail).
      if (fenced.length === 0) this.#note(fiberId, current.until);
      return fenced.length === 0;
    };
    for (const entry of entries) {
      if (entry.type === "create") throw malformed(fiberId, `position ${entry.pos} creates the fiber again`);
      if (entry.type === "commit") {
        const ends = entry.group.fiber?.status !== undefined && isTerminal(entry.group.fiber.status);
        if (ends && (current.pushed ?? []).length > 0) {
          // The fiber ends with pushed events it never took (they came too late): they stay
          // in the replica's inbox, unconsumed, as an event sent just before an end stays.
          if (groups.length > 0 && !(await flush())) return this.#fencedNow(fiberId, lease);
          await this.#moveIn(fiberId, current);
          const { pushed: _late, ...rest } = current;
          current = rest;
        }
        if (ends && current.cancel !== undefined) {
          // Ended (cancelled as asked, or otherwise first): nothing is left to cancel.
          const { cancel: _done, ...rest } = current;
          current = rest;
        }
        groups.push(replicaGroup(fiberId, record.generation, entry.group));
        current = { ...current, appliedPos: entry.pos };
        continue;
      }
      // An event is its own transaction: record what came before it first.
      if (groups.length > 0 && !(await flush())) return this.#fencedNow(fiberId, lease);
      current = await this.#applyEvent(fiberId, current, entry);
    }
    if (!(await flush())) return this.#fencedNow(fiberId, lease);
    const ended = entries.some(
      (e) => e.type === "commit" && e.group.fiber?.status !== undefined && isTerminal(e.group.fiber.status),
    );
    this.#note(fiberId, ended || isTerminal(record.status) ? undefined : current.until);
    const events = current.pushed ?? [];
    return {
      status: "ok",
      appliedPos: current.appliedPos,
      leaseMs: Math.max(0, current.until - this.#clock()),
      ...(events.length > 0 ? { events } : {}),
      ...(current.cancel === undefined ? {} : { cancel: { reason: current.cancel.reason } }),
    };
  }

  async #applyEvent(
    fiberId: string,
    lease: HomeLease,
    entry: Extract<ShippedEntry, { type: "event" }>,
  ): Promise<HomeLease> {
    const origin = entry.eventId.slice(0, entry.eventId.lastIndexOf(":"));
    const { seq, name, payload, at, eventId } = entry.event;
    // An event this arbiter pushed comes back under the id it was accepted with: it is the
    // browser's now, at the browser's seq, and is pushed no more.
    const pushed = withoutPushed(lease, eventId);
    const applied = { ...pushed, appliedPos: entry.pos };
    if (seq <= (lease.eventMarks[origin] ?? 0)) return applied;
    const inbox = await this.#store.readInbox(fiberId);
    const top = inbox.at(-1)?.seq ?? 0;
    if (top < seq - 1) throw malformed(fiberId, `event seq ${seq} follows inbox seq ${top}`);
    // Held already: enqueued by an earlier try whose position never got recorded.
    if (!holdsEvent(inbox, entry)) {
      if (top >= seq) throw malformed(fiberId, `inbox seq ${seq} holds another event`);
      // Under the id it had in the browser unless it has one of its own (pushed from here): a
      // send-on of it under that id (`#heldFromHome`) finds it even if the write recording its
      // position and mark never landed.
      await this.#store.enqueueEvent({ fiberId, name, payload, at, eventId: eventId ?? entry.eventId });
    }
    return { ...applied, eventMarks: { ...lease.eventMarks, [origin]: seq } };
  }

  /**
   * The replica's copy of an event a browser home buffered as `eventId` (`homeEventId`: `<home>@<epoch>:<seq>`), when
   * the replica holds that home's events up to that seq (`eventMarks`); otherwise `undefined`.
   */
  async #heldFromHome(
    fiberId: string,
    state: HomeLease,
    eventId: string | undefined,
  ): Promise<InboxEvent | undefined> {
    if (eventId === undefined || !eventId.startsWith("browser:")) return undefined;
    const inbox = await this.#store.readInbox(fiberId);
    // Stored under that id (`#applyEvent`), whether or not its mark was recorded.
    const stored = inbox.find((e) => e.eventId === eventId);
    if (stored !== undefined) return stored;
    // Applied by older code, which stored no id: the mark says the replica holds it at its seq.
    const cut = eventId.lastIndexOf(":");
    const origin = eventId.slice(0, cut);
    const seq = Number(eventId.slice(cut + 1));
    if (!Number.isSafeInteger(seq) || seq > (state.eventMarks[origin] ?? 0)) return undefined;
    return inbox.find((e) => e.seq === seq);
  }

  /**
   * `state`, counting the sender's next positions as applied while they are events the replica
   * already holds: their `enqueueEvent`s committed (one transaction each) and the write recording
   * their positions did not (a crash, or a store error, between them), and the fiber changed
   * home before a retry could record them. Their senders must hear they arrived, or they would
   * send them again.
   */
  async #counted(fiberId: string, state: HomeLease, shipment: Shipment): Promise<HomeLease> {
    let counted = state;
    let inbox: readonly InboxEvent[] | undefined;
    for (;;) {
      const next = shipment.entries.find((e) => e.pos === counted.appliedPos + 1);
      if (next?.type !== "event") return counted;
      inbox ??= await this.#store.readInbox(fiberId);
      if (!holdsEvent(inbox, next)) return counted;
      counted = { ...counted, appliedPos: next.pos };
    }
  }

  /** A commit was fenced: the edge claimed the fiber meanwhile. Answers with who holds it now. */
  async #fencedNow(fiberId: string, lease: HomeLease): Promise<ShipmentAnswer> {
    const moved = await this.#takeOver(fiberId);
    const state = moved ?? (await this.state(fiberId)) ?? lease;
    return fencedBy(state, { epoch: lease.epoch, home: lease.home });
  }

  /** Moves a fiber whose browser lease lapsed to the edge; resolves with its state after. */
  async #takeOver(fiberId: string): Promise<HomeLease | undefined> {
    for (let tries = 0; tries < 8; tries++) {
      const record = await this.#store.getFiber(fiberId);
      const state = record?.home;
      if (record === undefined || state === undefined) {
        this.#note(fiberId, undefined);
        return undefined;
      }
      if (state.home === EDGE_HOME || isTerminal(record.status)) {
        this.#note(fiberId, undefined);
        return state;
      }
      const now = this.#clock();
      if (state.until > now) {
        this.#note(fiberId, state.until);
        return state;
      }
      // Pushed events the browser never shipped back go into the inbox first, while the fiber
      // is still the browser's and so runs nowhere (a crash before the commit below leaves them
      // there, known by eventId to the next try); the commit stops pushing them.
      if ((state.pushed ?? []).length > 0) await this.#moveIn(fiberId, state);
      const { pushed: _moved, cancel, ...kept } = state;
      const next: HomeLease = {
        ...kept,
        home: EDGE_HOME,
        formerHome: state.home,
        epoch: state.epoch + 1,
        until: now + this.#leaseMs,
      };
      // The browser's marker goes, so the edge runtime's recover() claims the fiber.
      const release: Partial<FiberRecord> =
        record.owner === state.home ? { owner: undefined, leaseUntil: undefined } : {};
      const group: WriteGroup =
        cancel === undefined
          ? { fiberId, generation: record.generation, fiber: { ...release, home: next } }
          : cancelledAtTakeover(record, next, cancel.reason, now);
      const { fenced } = await this.#store.commit([group]);
      if (fenced.length === 0) {
        this.#note(fiberId, undefined);
        return next;
      }
    }
    throw new FiberlineError("store_error", `Fiber ${fiberId} kept changing while the edge took it over.`);
  }

  async #comeHome(fiberId: string, home: string, receivedAt: number): Promise<ComeHomeAnswer> {
    if (home === EDGE_HOME || !home.startsWith("browser:"))
      throw new FiberlineError("invalid_argument", `come-home: "${home}" is not a browser home.`);
    for (let tries = 0; tries < 8; tries++) {
      const record = await this.#store.getFiber(fiberId);
      const state = record?.home;
      if (record === undefined || state === undefined) {
        throw new FiberlineError(
          "fiber_not_found",
          `Fiber ${fiberId} has no replica here; only a replicated fiber can come home.`,
        );
      }
      if (isTerminal(record.status)) return { status: "refused", reason: "ended" };
      const now = this.#clock();
      if (state.home === home && state.until > now) {
        // Granted already (the answer was lost): the same grant, with what is left of its lease.
        return {
          status: "granted",
          epoch: state.epoch,
          appliedPos: state.appliedPos,
          leaseMs: state.until - now,
        };
      }
      if (state.home !== EDGE_HOME) {
        if (state.until > now) return { status: "refused", reason: "held" };
        // A browser's lease lapsed and the alarm has not come yet: the edge takes it first.
        await this.#takeOver(fiberId);
        continue;
      }
      const suspended = record.status === "sleeping" || record.status === "waiting";
      const claimed = record.owner !== undefined && (record.leaseUntil ?? 0) > now;
      if (!suspended || claimed) return { status: "refused", reason: "running" };
      // An event the edge has not consumed yet would wake it there: it stays until that ran.
      const inbox = await this.#store.readInbox(fiberId);
      if (inbox.some((e) => e.consumedBy === undefined)) return { status: "refused", reason: "running" };
      const next: HomeLease = {
        ...state,
        home,
        formerHome: EDGE_HOME,
        epoch: state.epoch + 1,
        until: receivedAt + this.#leaseMs,
      };
      const { fenced } = await this.#store.commit([
        { fiberId, generation: record.generation, fiber: leaseFields(next) },
      ]);
      if (fenced.length > 0) continue;
      this.#note(fiberId, next.until);
      return {
        status: "granted",
        epoch: next.epoch,
        appliedPos: next.appliedPos,
        leaseMs: Math.max(0, next.until - this.#clock()),
      };
    }
    throw new FiberlineError("store_error", `Fiber ${fiberId} kept changing while it was handed back.`);
  }

  async #cancel(fiberId: string, reason: string): Promise<CancelDecision> {
    for (let tries = 0; tries < 8; tries++) {
      const record = await this.#store.getFiber(fiberId);
      const state = record?.home;
      if (record === undefined || state === undefined) return { status: "here" };
      if (isTerminal(record.status)) return { status: "ended", fiberStatus: record.status };
      if (state.home === EDGE_HOME) return { status: "here" };
      const now = this.#clock();
      if (state.until <= now) {
        // The browser's lease lapsed and the alarm has not come yet: the edge takes it first.
        await this.#takeOver(fiberId);
        continue;
      }
      const forwarded = { status: "forwarded", fiberStatus: record.status, home: state.home } as const;
      if (state.cancel !== undefined) return forwarded;
      const next: HomeLease = { ...state, cancel: { reason, at: now } };
      const { fenced } = await this.#store.commit([
        { fiberId, generation: record.generation, fiber: { home: next } },
      ]);
      if (fenced.length === 0) return forwarded;
    }
    throw new FiberlineError("store_error", `Fiber ${fiberId} kept changing while it was cancelled.`);
  }

  async #accept(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    const fiberId = event.fiberId;
    for (let tries = 0; tries < 8; tries++) {
      const record = await this.#store.getFiber(fiberId);
      let state = record?.home;
      if (record === undefined || state === undefined) return this.#store.enqueueEvent(event);
      // Sent again by the browser home that buffered it, which heard only that the fiber moved
      // (the answer to the shipment that carried it was lost): the replica holds it already.
      const held = state === undefined ? undefined : await this.#heldFromHome(fiberId, state, event.eventId);
      if (held !== undefined) return held;
      if (state.home !== EDGE_HOME && !isTerminal(record.status) && state.until <= this.#clock())
        state = (await this.#takeOver(fiberId)) ?? state;
      if (state.home === EDGE_HOME || isTerminal(record.status))
        return this.#store.enqueueEvent({
          ...event,
          eventId: event.eventId ?? `${EDGE_HOME}:in:${this.#uniqueId()}`,
        });
      const n = (state.pushSeq ?? 0) + 1;
      const pushed = { eventId: `${EDGE_HOME}:${n}`, name: event.name, payload: event.payload, at: event.at };
      const next: HomeLease = { ...state, pushSeq: n, pushed: [...(state.pushed ?? []), pushed] };
      const { fenced } = await this.#store.commit([
        { fiberId, generation: record.generation, fiber: { home: next } },
      ]);
      // Not in the inbox yet: its seq is the browser's to give (0 until then).
      if (fenced.length === 0) return { fiberId, seq: 0, ...pushed };
    }
    throw new FiberlineError(
      "store_error",
      `Fiber ${fiberId} kept changing while an event for it was accepted.`,
    );
  }

  /**
   * Enqueues `state.pushed` into the replica's inbox, skipping those it holds by `eventId`: moved
   * by an earlier try whose record update a crash lost, or shipped back by the browser and
   * applied just before such a crash.
   */
  async #moveIn(fiberId: string, state: HomeLease): Promise<void> {
    const held = new Set((await this.#store.readInbox(fiberId)).map((e) => e.eventId));
    for (const event of state.pushed ?? []) {
      if (!held.has(event.eventId)) await this.#store.enqueueEvent({ fiberId, ...event });
    }
  }

  #turn<T>(fiberId: string, work: () => Promise<T>): Promise<T> {
    const result = (this.#turns.get(fiberId) ?? Promise.resolve()).then(work);
    const tail = result.then(
      () => {},
      () => {},
    );
    this.#turns.set(fiberId, tail);
    void tail.then(() => {
      if (this.#turns.get(fiberId) === tail) this.#turns.delete(fiberId);
    });
    return result;
  }
}

/**
 * How the arbiter answers `shipment` of a fiber it holds no replica of, unless it creates one:
 * anything but position 1 is a gap (`out_of_order` at 0), and a creation under any epoch but 1
 * is `fenced`. `undefined` when the shipment would create the replica. The edge host answers a
 * shipment to another principal's replica with this too, so it cannot tell one from no replica.
 */
export function refusalWithoutReplica(shipment: Shipment): ShipmentAnswer | undefined {
  const first = shipment.entries[0];
  if (first?.pos !== 1 || first.type !== "create") return { status: "out_of_order", appliedPos: 0 };
  if (shipment.epoch !== 1) return { status: "fenced", epoch: 0, home: EDGE_HOME, appliedPos: 0 };
  return undefined;
}

/**
 * The record fields the arbiter owns: its state, and an owner and lease that keep the edge
 * runtime's own recovery off the fiber until the browser's lease lapses.
 */
function leaseFields(lease: HomeLease): Pick<FiberRecord, "home" | "owner" | "leaseUntil"> {
  return { home: lease, owner: lease.home, leaseUntil: lease.until };
}

/**
 * The takeover of a fiber with a pending cancel: it ends as `cancelled` (its `fiber.end` after the
 * replica's last chunk) in the write that hands it to the edge, so no crash between the two can
 * let the edge run it.
 */
function cancelledAtTakeover(record: FiberRecord, next: HomeLease, reason: string, at: number): WriteGroup {
  const fiber = { fiberId: record.id, generation: record.generation, seq: record.streamHead + 1 };
  const end = endGroup(fiber, "cancelled", { error: serializeError(new CancelledError(reason)) }, at);
  return { ...end, fiber: { ...end.fiber, home: next } };
}

/** A shipped group, rewritten for the replica: its generation, without the fields the arbiter owns. */
function replicaGroup(fiberId: string, generation: number, group: WriteGroup): WriteGroup {
  if (group.fiberId !== fiberId) throw malformed(fiberId, `a group of fiber ${group.fiberId}`);
  if (group.fiber === undefined) return { ...group, generation };
  const { owner: _owner, leaseUntil: _leaseUntil, home: _home, ...fiber } = group.fiber;
  return { ...group, generation, fiber };
}

/**
 * The answer to a sender that does not hold the fiber. The home that held it last learns how much
 * of its epoch the replica holds; any other sender has none of its positions there.
 */
/** `lease` without the pushed event `eventId` (it came back shipped). */
function withoutPushed(lease: HomeLease, eventId: string | undefined): HomeLease {
  if (eventId === undefined || !lease.pushed?.some((p) => p.eventId === eventId)) return lease;
  return { ...lease, pushed: lease.pushed.filter((p) => p.eventId !== eventId) };
}

/** Whether `inbox` holds `event` at its seq (the same name, time and payload). */
/**
 * Whether `inbox` holds the shipped event `entry` at its seq: the row there carries its id (the
 * browser's, or the one it was pushed under), or, written by older code with no id, equals it.
 */
function holdsEvent(inbox: readonly InboxEvent[], entry: Extract<ShippedEntry, { type: "event" }>): boolean {
  const { event } = entry;
  const row = inbox.find((e) => e.seq === event.seq);
  if (row === undefined) return false;
  if (row.eventId !== undefined) return row.eventId === (event.eventId ?? entry.eventId);
  return (
    row.name === event.name &&
    row.at === event.at &&
    JSON.stringify(row.payload) === JSON.stringify(event.payload)
  );
}

function fencedBy(state: HomeLease, sender: { epoch: number; home: string }): ShipmentAnswer {
  const held =
    (sender.home === state.home && sender.epoch === state.epoch) ||
    (sender.home === state.formerHome && sender.epoch === state.epoch - 1);
  return { status: "fenced", epoch: state.epoch, home: state.home, appliedPos: held ? state.appliedPos : 0 };
}

function assertWellFormed(fiberId: string, shipment: Shipment): void {
  let expected = shipment.from;
  for (const entry of shipment.entries) {
    if (entry?.pos !== expected) throw malformed(fiberId, `position ${entry?.pos} where ${expected} belongs`);
    const shape = shapeProblem(entry);
    if (shape !== undefined) throw malformed(fiberId, `position ${entry.pos} ${shape}`);
    expected++;
    // Every row names this fiber: a store writes each under its own `fiberId`, so a row naming
    // another would write (or create) a fiber the sender was never authorised for.
    const other = otherFiberIn(fiberId, entry);
    if (other !== undefined)
      throw malformed(fiberId, `position ${entry.pos} writes fiber ${JSON.stringify(other)}`);
  }
}

/**
 * What is missing from `entry` for its type (its rows are read and written as they are), or
 * `undefined` when it has the shape a browser's store ships.
 */
function shapeProblem(entry: ShippedEntry): string | undefined {
  const isObject = (value: unknown) => typeof value === "object" && value !== null;
  const rows = (value: unknown) => value === undefined || (Array.isArray(value) && value.every(isObject));
  switch ((entry as { type?: unknown }).type) {
    case "create": {
      const { record, chunks } = entry as { record?: unknown; chunks?: unknown };
      return isObject(record) && Array.isArray(chunks) && rows(chunks)
        ? undefined
        : "is a create without its record and chunks";
    }
    case "commit": {
      const group = (entry as { group?: Record<string, unknown> }).group;
      return isObject(group) &&
        rows(group?.journal) &&
        rows(group?.chunks) &&
        rows(group?.consumeEvents) &&
        (group?.fiber === undefined || isObject(group.fiber)) &&
        (group?.snapshot === undefined || group.snapshot === null || isObject(group.snapshot))
        ? undefined
        : "is a commit without a well-formed group";
    }
    case "event": {
      const { event, eventId } = entry as { event?: unknown; eventId?: unknown };
      return isObject(event) && typeof eventId === "string"
        ? undefined
        : "is an event without its event and id";
    }
    default:
      return `has an unknown type ${JSON.stringify((entry as { type?: unknown }).type)}`;
  }
}

/** The first fiber id other than `fiberId` that `entry` writes a row of, if any. */
function otherFiberIn(fiberId: string, entry: ShippedEntry): string | undefined {
  const ids: unknown[] = [];
  if (entry.type === "create") ids.push(entry.record.id, ...entry.chunks.map((c) => c.fiberId));
  else if (entry.type === "event") ids.push(entry.event.fiberId);
  else {
    const { group } = entry;
    ids.push(group.fiberId);
    if (group.fiber?.id !== undefined) ids.push(group.fiber.id);
    for (const rows of [group.journal, group.chunks]) for (const row of rows ?? []) ids.push(row.fiberId);
    if (group.snapshot) ids.push(group.snapshot.fiberId);
  }
  const other = ids.find((id) => id !== fiberId);
  return other === undefined ? undefined : String(other);
}

function malformed(fiberId: string, detail: string): FiberlineError {
  return new FiberlineError(
    "protocol_error",
    `A shipment of fiber ${fiberId} is malformed (${detail}); nothing of it past the last applied position was written.`,
  );
}
