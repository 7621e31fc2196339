/**
 * `ReplicatingStore`: the browser's `Store` with continuity. It wraps the local store and, for
 * fibers of the replicated kinds, puts every write the local store applied into the `Outbox` at
 * the next position (so a durable commit is in the outbox and a failed one is not), refuses the
 * writes and claims of a fiber whose lease ran out or that moved to another home (Rule C: the
 * engine sees them fenced and stops), and refuses events for a fiber another home runs (the host
 * forwards those). Reads pass through. A host sends events with `sendShippedEvent`, which answers
 * once the event is shipped: an event a sender was told about is never lost by a change of home.
 *
 * Two ways to append, chosen by the wrapped store. A store that keeps the outbox itself
 * (`IdbStore`, the port in `outbox-log.ts`) gets an `OutboxWrite` with each write of a replicated
 * fiber and writes the entry in the write's own transaction, at a position it reads there, then
 * reports it before the write resolves; the `Outbox` must then be the one `Outbox.open(store)` loaded. Any
 * other store (`MemoryStore`) is followed by an append in the same task as the commit, with an
 * `Outbox` in memory: nothing can observe the commit first.
 */

import { InvalidInputError, StoreError } from "../core/errors";
import type { FiberRecord, InboxEvent, StreamChunk } from "../core/records";
import type {
  ClaimRequest,
  ClaimResult,
  CommitResult,
  CreateResult,
  DeleteOptions,
  Store,
  StreamAndRecord,
  WriteGroup,
} from "../core/store";
import { changedHomeError } from "./errors";
import { ForwardingStore } from "./forwarding-store";
import type { Outbox } from "./outbox";
import { type OutboxStore, type OutboxWrite, writesOutbox } from "./outbox-log";
import { homeEventId, type ShippedEntry } from "./protocol";

/** When a runner asks again for a fiber whose lease lapsed here (a heartbeat may renew it). */
const LAPSED_RETRY_MS = 1_000;
/** When a runner asks again for a fiber another home runs (nothing here will change that yet). */
const AWAY_RETRY_MS = 60_000;

/** How many fibers found unreplicated `ReplicatingStore` remembers. */
const UNREPLICATED_KEPT = 4_096;

/** Options of `new ReplicatingStore`. */
export interface ReplicatingStoreOptions {
  /** This browser's outbox (one per store). */
  outbox: Outbox;
  /** This browser's home name (`browserHome(deviceId)`): the origin of its events' ids. */
  home: string;
  /** Whether fibers of the definition `name` are replicated. */
  replicates(name: string): boolean;
  /** The browser's clock, for Rule C (default the outbox's, `Outbox.now`). */
  clock?: () => number;
}

/** Where `bufferedDuring`'s event was buffered for shipping. */
export interface BufferedEvent {
  /** Its outbox position. */
  pos: number;
  /** The id this home gave it (`homeEventId`). */
  eventId: string;
  /** The home epoch `pos` counts in. */
  epoch: number;
}

/**
 * A `Store` whose replicated fibers feed an `Outbox`.
 *
 * Failure semantics: as the wrapped store's, plus: a group of a replicated fiber that may not be
 * written (lease lapsed, or fenced by another home) is reported fenced and not written; a commit
 * of a fiber whose outbox is full waits for room first; `enqueueEvent` of a fiber that moved
 * away rejects with `fenced` and stores nothing.
 */
export class ReplicatingStore extends ForwardingStore {
  readonly #outbox: Outbox;
  readonly #home: string;
  readonly #replicates: (name: string) => boolean;
  readonly #clock: () => number;
  /** The `bufferedDuring` calls under way, by the token their event carries to `enqueueEvent`. */
  readonly #sends = new Map<string, (event: BufferedEvent) => void>();
  #sendTokens = 0;
  /** The wrapped store when it writes the outbox in its own transactions. */
  readonly #keeper: OutboxStore | undefined;
  /**
   * Fibers of a replicated kind whose outbox the store showed it does not hold (created before
   * their kind was replicated, say), by id, `createdAt` and home epoch: not read again at every
   * read of theirs. A new fiber under the id, or a come-home, makes another key.
   */
  readonly #unreplicated = new Set<string>();

  /**
   * @throws InvalidInputError (`invalid_argument`) when `inner` keeps an outbox (`IdbStore`) but
   * `options.outbox` is not the one `Outbox.open(inner)` loaded, or the other way round.
   */
  constructor(inner: Store, options: ReplicatingStoreOptions) {
    super(inner);
    this.#outbox = options.outbox;
    this.#home = options.home;
    this.#replicates = options.replicates;
    this.#clock = options.clock ?? (() => options.outbox.now());
    this.#keeper = writesOutbox(inner) ? inner : undefined;
    if ((this.#keeper !== undefined) !== options.outbox.persisted)
      throw new InvalidInputError(
        "invalid_argument",
        this.#keeper !== undefined
          ? `The ${inner.kind} store keeps the outbox itself: open the Outbox on it (\`await Outbox.open(store)\`) so a restart finds the commits it has not shipped.`
          : `The ${inner.kind} store cannot keep an outbox: give ReplicatingStore \`new Outbox()\`, or a store that keeps it (IdbStore).`,
      );
  }

  override async createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    const replicated = this.#replicates(record.name);
    if (this.#keeper !== undefined)
      return replicated
        ? this.#keeper.createFiber(record, chunks, this.#write(new Set([record.id])))
        : this.#keeper.createFiber(record, chunks);
    const result = await this.inner.createFiber(record, chunks);
    if (result.status === "created" && replicated)
      this.#outbox.append(result.record.id, { type: "create", record: result.record, chunks });
    return result;
  }

  /**
   * Whether the outbox, which did not hold `record`'s fiber, holds it now: a fiber of a
   * replicated kind that another worker of the origin created after this one loaded the outbox
   * from the store that keeps it (an old and a new version of the Service Worker share the
   * database). Read from the store, so that its commits go into the outbox (Rule A waits for
   * them, Rule B holds back their chunks) rather than being written as an unreplicated fiber's.
   * `undefined` when the store's outbox could not be read: nobody can tell yet.
   */
  async #learned(record: FiberRecord): Promise<boolean | undefined> {
    if (this.#keeper === undefined || !this.#replicates(record.name)) return false;
    // A mirror's copy of a fiber another home runs: no outbox of this home holds it as home.
    if (record.home !== undefined && record.home.home !== this.#home) return false;
    const key = `${record.id}@${record.createdAt}@${record.home?.epoch ?? 0}`;
    if (this.#unreplicated.has(key)) return false;
    const read = await this.#outbox.resync(record.id);
    if (this.#outbox.where(record.id) !== undefined) return true;
    // Only what the store said is remembered: a failed read is tried again at the next call.
    if (!read) return undefined;
    this.#unreplicated.add(key);
    if (this.#unreplicated.size > UNREPLICATED_KEPT) {
      const oldest = this.#unreplicated.values().next();
      if (!oldest.done) this.#unreplicated.delete(oldest.value);
    }
    return false;
  }

  /** What a store that keeps the outbox needs to write `replicated`'s entries, and to report them. */
  #write(
    replicated: ReadonlySet<string>,
    onAppended?: (fiberId: string, entry: ShippedEntry, epoch: number) => void,
  ): OutboxWrite {
    const outbox = this.#outbox;
    return {
      home: this.#home,
      replicated,
      appended: (fiberId, epoch, entry) => {
        outbox.appended(fiberId, epoch, entry);
        onAppended?.(fiberId, entry, epoch);
      },
    };
  }

  override async claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    // Rule C on the outbox's clock; a held answer's `leaseUntil` on the runner's (`request.now`),
    // which it schedules its next try by.
    const now = this.#clock();
    const retryAt = (ms: number) => request.now + ms;
    const record = await this.inner.getFiber(id);
    // Not known to be unreplicated until the store's outbox says so: run it once it can be read.
    if (
      this.#outbox.where(id) === undefined &&
      record !== undefined &&
      (await this.#learned(record)) === undefined
    )
      return { status: "held", record: { ...record, leaseUntil: retryAt(LAPSED_RETRY_MS) } };
    if (!this.#outbox.mayWrite(id, now)) {
      // Not ours to run now: another home holds it, or our lease ran out (Rule C). The runner
      // tries again at `leaseUntil`: soon after a lapse (a heartbeat may renew it), rarely once away.
      if (record === undefined) return { status: "missing" };
      const away = this.#outbox.where(id)?.status === "away";
      return {
        status: "held",
        record: { ...record, leaseUntil: retryAt(away ? AWAY_RETRY_MS : LAPSED_RETRY_MS) },
      };
    }
    const home = record?.home;
    if (record === undefined || home === undefined || home.home === this.#home)
      return this.inner.claimFiber(id, request);
    if (this.#outbox.where(id) !== undefined) {
      // An older epoch of another home is a stale copy, not a move.
      if (home.epoch <= (this.#outbox.epoch(id) ?? 0)) return this.inner.claimFiber(id, request);
      // The store holds another home's copy under a newer epoch than this outbox knows (a
      // mirror rebuilt it after another worker of the origin was fenced from the fiber): this
      // outbox's view, loaded before, is stale.
      this.#outbox.fence(id, home.epoch, home.home);
    }
    // A fiber the outbox does not know whose record names another home: a mirror's copy, whose
    // outbox entry went with the copy it replaced (rebuilt, restored).
    return { status: "held", record: { ...record, leaseUntil: retryAt(AWAY_RETRY_MS) } };
  }

  override async commit(groups: WriteGroup[]): Promise<CommitResult> {
    const outbox = this.#outbox;
    for (const id of new Set(groups.map((g) => g.fiberId))) {
      const room = outbox.room(id);
      if (room !== undefined) await room;
    }
    const now = this.#clock();
    const refused = new Set(groups.filter((g) => !outbox.mayWrite(g.fiberId, now)).map((g) => g.fiberId));
    const allowed = refused.size === 0 ? groups : groups.filter((g) => !refused.has(g.fiberId));
    let result: CommitResult;
    if (allowed.length === 0) result = { fenced: [] };
    else if (this.#keeper !== undefined) {
      const replicated = new Set(allowed.map((g) => g.fiberId).filter((id) => outbox.replicated(id)));
      result =
        replicated.size === 0
          ? await this.#keeper.commit(allowed)
          : await this.#keeper.commit(allowed, this.#write(replicated));
    } else {
      result = await this.inner.commit(allowed);
      const fenced = new Set(result.fenced);
      for (const group of allowed) {
        if (outbox.replicated(group.fiberId) && !fenced.has(group.fiberId))
          outbox.append(group.fiberId, { type: "commit", group });
      }
    }
    if (refused.size === 0) return result;
    // Refused here while still at home: the lease ran out (not a move), which the runner retries soon.
    const lapsed = [...refused].filter((id) => outbox.where(id)?.status === "home");
    return { fenced: [...result.fenced, ...refused], ...(lapsed.length > 0 ? { lapsed } : {}) };
  }

  /**
   * A reader's read (the engine's readers and the hosts' stream routes read through here). A
   * fiber of a replicated kind that this outbox does not hold (another worker created it after
   * this one loaded the outbox) is learned from the store first, and its chunks past what the
   * arbiter holds are left out (Rule B): the reader asked `visibleHead` before the outbox knew.
   */
  override async readStreamAndRecord(
    fiberId: string,
    after: number,
    limit?: number,
  ): Promise<StreamAndRecord> {
    const read = await super.readStreamAndRecord(fiberId, after, limit);
    if (read.record === undefined) return read;
    return { ...read, chunks: await this.#shownOf(read.record, read.chunks) };
  }

  /** The same for a store read in parts (a reader over a store without the joined read). */
  override async readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]> {
    const chunks = await super.readStream(fiberId, after, limit);
    if (this.#keeper === undefined || chunks.length === 0 || this.#outbox.replicated(fiberId)) return chunks;
    const record = await this.inner.getFiber(fiberId);
    return record === undefined ? chunks : this.#shownOf(record, chunks);
  }

  /** `chunks` of `record`'s fiber less those Rule B holds back, once the outbox knows the fiber. */
  async #shownOf(record: FiberRecord, chunks: StreamChunk[]): Promise<StreamChunk[]> {
    if (this.#keeper === undefined || this.#outbox.replicated(record.id)) return chunks;
    const learned = await this.#learned(record);
    // Not known to be unreplicated: nothing is shown this time (the reader reads again).
    if (learned === undefined) return [];
    if (!learned) return chunks;
    const visible = this.#outbox.visibleHead(record.id);
    return chunks.filter((chunk) => chunk.seq <= visible);
  }

  override async enqueueEvent(tagged: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    const outbox = this.#outbox;
    // A `bufferedDuring` send's event: its token is no id (stored without it, replicated or
    // not), and only that send hears of it.
    const watcher = tagged.eventId === undefined ? undefined : this.#sends.get(tagged.eventId);
    let event = tagged;
    if (watcher !== undefined) {
      const { eventId: _token, ...untagged } = tagged;
      event = untagged;
    }
    if (this.#keeper !== undefined && !outbox.replicated(event.fiberId)) {
      const record = await this.inner.getFiber(event.fiberId);
      if (record !== undefined && (await this.#learned(record)) === undefined)
        throw new StoreError(
          "store_error",
          `The outbox of fiber ${event.fiberId} could not be read, so the event was not stored; send it again.`,
        );
    }
    const where = outbox.where(event.fiberId);
    if (where?.status === "away") throw changedHomeError(event.fiberId, where.epoch, where.home);
    if (!outbox.replicated(event.fiberId)) return this.inner.enqueueEvent(event);
    if (this.#keeper !== undefined) {
      // Reported once the transaction committed, before this call resolves.
      return this.#keeper.enqueueEvent(
        event,
        this.#write(new Set([event.fiberId]), (_, entry, epoch) => {
          if (entry.type === "event") watcher?.({ pos: entry.pos, eventId: entry.eventId, epoch });
        }),
      );
    }
    const stored = await this.inner.enqueueEvent(event);
    const epoch = outbox.epoch(event.fiberId) ?? 1;
    const eventId = homeEventId(this.#home, epoch, stored.seq);
    const pos = outbox.append(event.fiberId, { type: "event", event: stored, eventId });
    watcher?.({ pos, eventId, epoch });
    return stored;
  }

  /**
   * Runs `work` (a `runtime.sendEvent` of one event, with `eventId` set to the token `work` is
   * given) and resolves with where that event was buffered for shipping: its outbox position
   * (what `sendShippedEvent` waits to be shipped), the id this home gave it (`homeEventId`), and
   * the home epoch the position counts in (positions of an epoch the fiber has left name other
   * entries in the next one); `undefined` when it was not buffered for shipping (the fiber is
   * not replicated). The token only tells `enqueueEvent` which event is this send's: it is
   * removed there, and the event is stored without an id, as a page's event is. Any other event
   * buffered meanwhile (a second page's, one pushed to this home, one a worker's own code sent)
   * is not this send's.
   */
  async bufferedDuring(work: (token: string) => Promise<void>): Promise<BufferedEvent | undefined> {
    const token = `fiberline-send:${++this.#sendTokens}`;
    let buffered: BufferedEvent | undefined;
    this.#sends.set(token, (event) => {
      buffered = event;
    });
    try {
      await work(token);
    } finally {
      this.#sends.delete(token);
    }
    return buffered;
  }

  override async deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    // A fiber whose end is not shipped yet stays until it is (the collector comes back).
    const deletable = ids.filter((id) => !this.#outbox.hasPending(id));
    const deleted = await this.inner.deleteFibers(deletable, options);
    for (const id of deleted) this.#outbox.forget(id);
    return deleted;
  }
}
