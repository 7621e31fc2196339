/**
 * `watchStorage`: wraps the worker's `Store` so storage trouble is reported instead of silent.
 * A write refused for lack of space (`quota_exceeded`) marks its fibers paused (the runner
 * resumes them from their journals with backoff; the first write that fits clears them); a
 * database that comes back empty while a marker kept outside IndexedDB (Cache Storage) lists
 * fibers is reported as `store_lost` with their ids. Every change goes to every page of the origin
 * on a `BroadcastChannel` (`STORAGE_CHANNEL`), as `StorageHealth`.
 */

import {
  type AdoptedOutbox,
  type OutboxProgress,
  type OutboxStore,
  type OutboxWrite,
  type SavedOutbox,
  writesOutbox,
} from "../continuity/outbox-log";
import { type FiberRecord, isTerminal, type StreamChunk } from "../core/records";
import type { Runtime } from "../core/runtime";
import { type FiberQuery, readStreamAndRecord, type Store, type WriteGroup } from "../core/store";
import { STORAGE_CHANNEL, type StorageHealth, type StorageHealthMessage } from "./protocol";

/** Options of `watchStorage`. */
export interface WatchStorageOptions {
  /**
   * Cache Storage cache that holds the marker (the ids of existing fibers), outside IndexedDB;
   * `false` keeps no marker (default "fiberline-marker").
   */
  markerCache?: string | false;
  /** Called with every new state (besides the broadcast). */
  onChange?(health: StorageHealth): void;
}

/** A store that reports its health; use it wherever the wrapped store would go. */
export interface WatchedStore extends Store {
  /** The current state. */
  readonly health: StorageHealth;
  /** Settles once the marker was compared with the database (the first call of any method waits for it). */
  readonly checked: Promise<StorageHealth>;
  /**
   * Retries the paused fibers now instead of at their next backoff, and resolves with the health
   * after the retry (also sent to every page). `runtime` is the runtime this store serves; the
   * control call `retryPaused()` of the hosts passes theirs.
   *
   * Failure semantics: while the origin is still full, the retry's first write is refused, the
   * fibers stay paused and the health stays `quota_exceeded` with the same ids; nothing committed
   * is touched. With room again, each paused fiber is picked up at once (replayed from its
   * journal after a `fiber.recovered` chunk, as a backoff retry does) and the health turns `ok`.
   * With nothing paused (the origin was found full by a start, whose caller was told), the
   * health turns `ok` at once; the next refused write reports it full again.
   * Rejects only with a store error other than `quota_exceeded`.
   */
  retryPaused(runtime: PausedFibersRuntime): Promise<StorageHealth>;
}

/** What `retryPaused` needs of the runtime: whose leases it may hand back, and how to pick fibers up. */
export type PausedFibersRuntime = Pick<Runtime, "runnerId" | "recover">;

/**
 * Wraps `store` (the worker's `IdbStore`) to report storage health to every page.
 *
 * Failure semantics: nothing about the wrapped store's writes changes: a refused write rejects as
 * before (`quota_exceeded` for lack of space, a typed `StoreError`), the runner resumes the fiber
 * from its journal with backoff, and no chunk after the refused one is committed. The marker is
 * best effort: it is written after each start and collection, and a marker write that fails
 * (the quota) only means a later wipe may go unreported.
 *
 * @example
 * const store = watchStorage(new IdbStore({ name: "fiberline" }));
 * const runtime = createRuntime({ store, fibers });
 * createServiceWorkerHost({ runtime });
 */
export function watchStorage(store: Store, options: WatchStorageOptions = {}): WatchedStore {
  // A store that keeps continuity's outbox (`IdbStore`) stays one when watched, so
  // `createReplicatedRuntime` over the watched store still finds the outbox it keeps.
  return writesOutbox(store) ? new OutboxStorageWatch(store, options) : new StorageWatch(store, options);
}

class StorageWatch implements WatchedStore {
  readonly kind: string;
  readonly checked: Promise<StorageHealth>;
  readonly #store: Store;
  readonly #options: WatchStorageOptions;
  readonly #channel: BroadcastChannel | undefined;
  readonly #paused = new Set<string>();
  #health: StorageHealth = { state: "ok", paused: [], lost: [], persisted: undefined, since: Date.now() };
  #marker: Promise<unknown> = Promise.resolve();

  constructor(store: Store, options: WatchStorageOptions) {
    this.#store = store;
    this.kind = store.kind;
    this.#options = options;
    this.#channel =
      typeof BroadcastChannel === "function" ? new BroadcastChannel(STORAGE_CHANNEL) : undefined;
    this.#channel?.addEventListener("message", (event: MessageEvent) => {
      if ((event.data as { type?: unknown } | null)?.type === "fiberline/storage-query") this.#post();
    });
    this.checked = this.#check();
  }

  get health(): StorageHealth {
    return this.#health;
  }

  getFiber(id: string) {
    return this.#after(() => this.#store.getFiber(id));
  }
  findByIdempotencyKey(key: string) {
    return this.#after(() => this.#store.findByIdempotencyKey(key));
  }
  listFibers(query?: FiberQuery) {
    return this.#after(() => this.#store.listFibers(query));
  }
  readJournal(fiberId: string) {
    return this.#after(() => this.#store.readJournal(fiberId));
  }
  readSnapshot(fiberId: string) {
    return this.#after(() => this.#store.readSnapshot(fiberId));
  }
  readStream(fiberId: string, after: number, limit?: number) {
    return this.#after(() => this.#store.readStream(fiberId, after, limit));
  }
  readStreamAndRecord(fiberId: string, after: number, limit?: number) {
    return this.#after(() => readStreamAndRecord(this.#store, fiberId, after, limit));
  }
  readInbox(fiberId: string) {
    return this.#after(() => this.#store.readInbox(fiberId));
  }
  // `outbox` (continuity's write into the store's own outbox) is passed on when given: only a
  // store that keeps the outbox gets one (`watchStorage` then returns an `OutboxStore` too).
  enqueueEvent(event: Parameters<Store["enqueueEvent"]>[0], outbox?: OutboxWrite) {
    return this.#after(() =>
      outbox === undefined
        ? this.#store.enqueueEvent(event)
        : (this.#store as OutboxStore).enqueueEvent(event, outbox),
    );
  }

  async createFiber(record: FiberRecord, chunks: StreamChunk[], outbox?: OutboxWrite) {
    const result = await this.#writing([], () =>
      outbox === undefined
        ? this.#store.createFiber(record, chunks)
        : (this.#store as OutboxStore).createFiber(record, chunks, outbox),
    );
    if (result.status === "created") this.#updateMarker((ids) => ids.add(result.record.id));
    return result;
  }

  claimFiber(id: string, request: Parameters<Store["claimFiber"]>[1]) {
    return this.#writing([id], () => this.#store.claimFiber(id, request));
  }

  commit(groups: WriteGroup[], outbox?: OutboxWrite) {
    return this.#writing(
      groups.map((group) => group.fiberId),
      () =>
        outbox === undefined
          ? this.#store.commit(groups)
          : (this.#store as OutboxStore).commit(groups, outbox),
    );
  }

  /** The continuity outbox of a store that keeps it (see `OutboxStorageWatch`). */
  protected outboxCall<T>(call: () => Promise<T>, writes: boolean): Promise<T> {
    return writes ? this.#writing([], call) : this.#after(call);
  }

  async deleteFibers(ids: readonly string[], options?: Parameters<Store["deleteFibers"]>[1]) {
    const deleted = await this.#after(() => this.#store.deleteFibers(ids, options));
    if (deleted.length > 0)
      this.#updateMarker((marked) => {
        for (const id of deleted) marked.delete(id);
      });
    return deleted;
  }

  async retryPaused(runtime: PausedFibersRuntime): Promise<StorageHealth> {
    await this.checked;
    // Full, with nothing paused: a refused start (its caller was told). There is nothing to
    // retry and no write to learn from, so the state would stay full until some other write
    // fitted; asked to try again, it turns ok, and the next refused write reports it full again.
    if (this.#paused.size === 0 && this.#health.state === "quota_exceeded")
      await this.#change({ state: "ok" });
    // A backoff retry already under way when room came back can still fail after this retry's
    // first write fits, pausing its fiber again while recover() skipped it as busy: a few rounds
    // pick such fibers up too.
    for (let round = 0; round < RETRY_ROUNDS && this.#paused.size > 0; round++) {
      if (!(await this.#releaseLeases(runtime.runnerId))) return this.#health; // still full
      await runtime.recover();
    }
    // Every page hears the outcome, also when nothing changed (a page may hold a stale state).
    this.#post();
    return this.#health;
  }

  /**
   * The run of a paused fiber stopped at the refused write, but its claim's lease stays in the
   * record until it lapses (up to a lease period), and until then recover() leaves the fiber to
   * the runner's backoff. Handing the lease back is a write of its own: refused while the origin
   * is still full (resolves false; the fiber stays paused), and the first sign of room otherwise.
   */
  async #releaseLeases(owner: string): Promise<boolean> {
    const now = Date.now();
    for (const id of [...this.#paused]) {
      const record = await this.#store.getFiber(id);
      if (!record || isTerminal(record.status)) continue;
      if (record.owner !== owner || (record.leaseUntil ?? 0) <= now) continue;
      try {
        // Fenced by the generation read just now: a retry that claimed the fiber meanwhile runs
        // it already, and this write is skipped.
        await this.commit([{ fiberId: id, generation: record.generation, fiber: { leaseUntil: now } }]);
      } catch (error) {
        if ((error as { code?: unknown }).code === "quota_exceeded") return false;
        throw error;
      }
    }
    return true;
  }

  async close(): Promise<void> {
    this.#channel?.close();
    await this.#store.close();
  }

  /** Runs a read after the marker check (so a wiped database is seen before anything refills it). */
  async #after<T>(call: () => Promise<T>): Promise<T> {
    await this.checked;
    return await call();
  }

  /** Runs a write of `fibers`, pausing them on `quota_exceeded` and un-pausing them once one fits. */
  async #writing<T>(fibers: string[], call: () => Promise<T>): Promise<T> {
    await this.checked;
    try {
      const result = await call();
      if (this.#health.state === "quota_exceeded") {
        for (const id of fibers) this.#paused.delete(id);
        // A write fitting again (any write) means space came back: paused fibers resume at their
        // next retry; the page hears it once the last of them wrote.
        if (this.#paused.size === 0) await this.#change({ state: "ok" });
        else await this.#change({});
      }
      return result;
    } catch (error) {
      if ((error as { code?: unknown }).code === "quota_exceeded") {
        for (const id of fibers) this.#paused.add(id);
        await this.#change({ state: "quota_exceeded" });
      }
      throw error;
    }
  }

  async #check(): Promise<StorageHealth> {
    const marked = await this.#readMarker();
    let lost: string[] = [];
    if (marked.size > 0) {
      const present = await this.#store.listFibers({ limit: 1 }).catch(() => undefined);
      if (present !== undefined && present.length === 0) lost = [...marked].sort();
    }
    if (lost.length > 0) {
      // Reported once per wipe: the marker now says what the database holds (nothing).
      this.#updateMarker((ids) => ids.clear());
      await this.#change({ state: "store_lost", lost });
    } else {
      await this.#change({});
    }
    return this.#health;
  }

  async #change(patch: Partial<Pick<StorageHealth, "state" | "lost">>): Promise<void> {
    const storage = (globalThis.navigator as Navigator | undefined)?.storage;
    const [persisted, estimate] = await Promise.all([
      storage?.persisted?.().catch(() => undefined),
      storage?.estimate?.().catch(() => undefined),
    ]);
    const state = patch.state ?? this.#health.state;
    this.#health = {
      state,
      paused: [...this.#paused].sort(),
      lost: patch.lost ?? this.#health.lost,
      persisted,
      ...(estimate?.usage === undefined ? {} : { usage: estimate.usage }),
      ...(estimate?.quota === undefined ? {} : { quota: estimate.quota }),
      since: state === this.#health.state && patch.state === undefined ? this.#health.since : Date.now(),
    };
    this.#options.onChange?.(this.#health);
    this.#post();
  }

  #post(): void {
    this.#channel?.postMessage({
      type: "fiberline/storage",
      health: this.#health,
    } satisfies StorageHealthMessage);
  }

  async #readMarker(): Promise<Set<string>> {
    const cache = await this.#cache();
    const response = await cache?.match(MARKER_URL).catch(() => undefined);
    if (!response) return new Set();
    try {
      const ids = (await response.json()) as unknown;
      return new Set(Array.isArray(ids) ? ids.filter((id): id is string => typeof id === "string") : []);
    } catch {
      return new Set();
    }
  }

  /** Applies `edit` to the marker; edits run one after another, failures are ignored. */
  #updateMarker(edit: (ids: Set<string>) => void): void {
    this.#marker = this.#marker.then(async () => {
      const cache = await this.#cache();
      if (!cache) return;
      const ids = await this.#readMarker();
      edit(ids);
      await cache.put(MARKER_URL, new Response(JSON.stringify([...ids]))).catch(() => {});
    });
  }

  async #cache(): Promise<Cache | undefined> {
    const name = this.#options.markerCache ?? "fiberline-marker";
    if (name === false || typeof caches === "undefined") return undefined;
    return await caches.open(name).catch(() => undefined);
  }
}

/** `StorageWatch` over a store that keeps the continuity outbox: its outbox calls pass through. */
class OutboxStorageWatch extends StorageWatch implements OutboxStore {
  readonly #keeper: OutboxStore;

  constructor(store: OutboxStore, options: WatchStorageOptions) {
    super(store, options);
    this.#keeper = store;
  }

  loadOutbox(fiberId?: string): Promise<SavedOutbox[]> {
    return this.outboxCall(() => this.#keeper.loadOutbox(fiberId), false);
  }

  saveOutbox(progress: readonly OutboxProgress[]): Promise<void> {
    return this.outboxCall(() => this.#keeper.saveOutbox(progress), true);
  }

  adoptOutbox(head: AdoptedOutbox): Promise<void> {
    return this.outboxCall(() => this.#keeper.adoptOutbox(head), true);
  }
}

/** How many times `retryPaused` hands leases back and recovers while fibers stay paused. */
const RETRY_ROUNDS = 3;

/** The marker's key in its cache (never fetched: Cache Storage only needs a URL-shaped key). */
const MARKER_URL = "https://fiberline.invalid/marker/fibers.json";
