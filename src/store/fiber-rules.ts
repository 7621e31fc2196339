/**
 * The record rules every `Store` backend applies identically: how a patch merges into a fiber
 * record, who may claim a fiber, how `listFibers` filters and orders, and the errors a store
 * raises. `MemoryStore` and `IdbStore` (and the edge `SqliteStore`) share them so the backends
 * cannot drift apart; the engine never imports this file.
 */

import { FiberlineError, FiberNotFoundError, StoreError } from "../core/errors";
import { type FiberRecord, type FiberStatus, isTerminal } from "../core/records";
import type { ClaimRequest, ClaimResult, DeleteOptions, FiberQuery, WriteGroup } from "../core/store";

/**
 * Merges `patch` into a copy of `record`: keys whose value is `undefined` in the patch are
 * removed; `id` never changes, nor `generation`, which only a claim moves (the fence, and in
 * `IdbStore` the stash row, follow it).
 */
export function mergeFiberPatch<R extends Omit<FiberRecord, "input">>(
  record: R,
  patch: Partial<FiberRecord>,
): R {
  const merged = { ...record, ...patch, id: record.id, generation: record.generation } as R;
  for (const key of Object.keys(patch) as Array<keyof FiberRecord>) {
    // `{ owner: undefined }` means "no owner any more", not "owner is the value undefined".
    if (patch[key] === undefined) Reflect.deleteProperty(merged, key);
  }
  return merged;
}

/**
 * The record `createFiber` stores: `record` with its generation raised above `floor`, the highest
 * generation any deleted fiber reached in this store (`undefined` before the first deletion). A
 * fiber id deleted and created again so never repeats a generation: a runner of the deleted
 * fiber, stalled past its lease, still holds one of the old generations, and every write it makes
 * stays fenced. The record also keeps that generation as `createdGeneration`, its identity.
 */
export function aboveGenerationFloor(record: FiberRecord, floor: number | undefined): FiberRecord {
  const generation = floor === undefined || record.generation > floor ? record.generation : floor + 1;
  return { ...record, generation, createdGeneration: generation };
}

/** Whether `deleteFibers` deletes fiber `id` at `generation`: not when `ifGeneration` names another. */
export function deletable(id: string, generation: number, options: DeleteOptions | undefined): boolean {
  const expected = options?.ifGeneration?.get(id);
  return expected === undefined || expected === generation;
}

/** The generation floor after deleting a fiber that had reached `generation`. */
export function raiseGenerationFloor(floor: number | undefined, generation: number): number {
  return floor === undefined ? generation : Math.max(floor, generation);
}

/**
 * Decides a claim on `record` (the current state, read in the claim's own transaction): a
 * terminal fiber is never claimed; a live lease of another owner holds unless `force`.
 */
export function decideClaim(record: FiberRecord | undefined, request: ClaimRequest): ClaimResult {
  if (record === undefined) return { status: "missing" };
  if (isTerminal(record.status)) return { status: "held", record };
  const heldByAnother =
    Boolean(record.owner) && record.owner !== request.owner && (record.leaseUntil ?? 0) > request.now;
  if (heldByAnother && request.force !== true) return { status: "held", record };
  return {
    status: "claimed",
    record: {
      ...record,
      generation: record.generation + 1,
      owner: request.owner,
      leaseUntil: request.now + request.leaseMs,
      updatedAt: request.now,
    },
  };
}

/**
 * Checks that `chunks`, appended by one write group, continue fiber `fiberId`'s stream right after
 * `head` with no gap and no repeat, and returns the new head. Every store applies it in the
 * commit's own transaction, after the fence: no write can leave a hole in a stream, whatever the
 * engine above it did. Throws `StoreError` (`stream_gap`); the caller aborts the commit.
 */
export function continueStream(
  fiberId: string,
  head: number,
  chunks: readonly { seq: number }[] | undefined,
): number {
  let next = head;
  for (const chunk of chunks ?? []) {
    if (chunk.seq !== next + 1) {
      throw new StoreError(
        "stream_gap",
        `A commit tried to append chunk ${chunk.seq} to the stream of fiber ${fiberId}, which ends at ${next}: chunks must continue the stream with no gap. Nothing was written; the runner resumes the fiber from what is durable.`,
      );
    }
    next = chunk.seq;
  }
  return next;
}

/**
 * Throws unless fiber `fiberId` (its record read in `enqueueEvent`'s own transaction) can take an
 * event: `fiber_not_found` when it is missing, `fiber_ended` when it is terminal. Deciding this in
 * the transaction means an event is never stored for a fiber that ended meanwhile, where no wait
 * would ever consume it.
 */
export function assertTakesEvents(fiberId: string, record: { status: FiberStatus } | undefined): void {
  if (record === undefined) throw new FiberNotFoundError(fiberId);
  if (isTerminal(record.status)) {
    throw new FiberlineError(
      "fiber_ended",
      `Fiber ${fiberId} already ended (${record.status}); it takes no more events.`,
    );
  }
}

/**
 * The record of a fiber that waits for `event`, made due at the event's time (or `now`, the
 * store's clock, if earlier: see `dueAt`), or `undefined` when it needs no change. Stores write
 * it with the event, in the same transaction: the runtime that takes an event resumes the fiber
 * at once, but if it crashes before it does, nothing else would; a due `wakeAt` is what every
 * runtime's sweep, `recover()` and the edge host's alarm already act on (a fiber woken early
 * finds the event in its inbox; one woken with nothing to do suspends again and writes its own
 * `wakeAt`).
 */
export function dueForEvent<R extends Omit<FiberRecord, "input">>(
  record: R,
  event: { name: string; at: number },
  now: number,
): R | undefined {
  return dueForBuffered(record, [event], now);
}

/**
 * When an event stamped `at` makes its fiber due: then, or `now` (the writing store's clock)
 * if that is earlier. The stamp comes from whoever sent the event (another tab, a browser whose
 * shipment an edge applies), and a fiber due on a clock ahead of the runtime that recovers it
 * would wait out the difference.
 */
function dueAt(at: number, now: number): number {
  return Number.isFinite(now) && now < at ? now : at;
}

/**
 * The other half of `dueForEvent`: the record a runner's commit leaves waiting (`group` is the
 * runner's write that set the status), made due by `dueForBuffered` for the events past
 * `group.inboxSeen`, or `undefined` when it needs no change. Such an event was stored while the
 * fiber ran, by a context that saw it running and left it to the run, which may never have
 * heard of it. Stores apply it in the commit's transaction, so `recover()` need not read the
 * inbox of every waiting fiber to find one: a waiting fiber with work is due. (A mirror's copy,
 * written unclaimed, keeps its replica's fields.)
 */
export function dueForInbox<R extends Omit<FiberRecord, "input">>(
  record: R,
  group: WriteGroup,
  inbox: Iterable<BufferedEvent & { seq: number }>,
  now: number,
): R | undefined {
  if (!suspends(group)) return undefined;
  return dueForBuffered(record, unseen(inbox, group.inboxSeen ?? 0), now);
}

/**
 * The events of `inbox` past `seen`: those the run did not know of when it suspended. One it
 * knew and left unconsumed is not for its waits (a wait takes the first such event it knows), or
 * came too late for its deadline (stamped past it by a clock running ahead): waking the fiber
 * for it would only suspend it again, and again.
 */
function* unseen<E extends { seq: number }>(inbox: Iterable<E>, seen: number): Iterable<E> {
  for (const event of inbox) if (event.seq > seen) yield event;
}

/** True when `group` is a runner's write that leaves its fiber waiting (`dueForInbox` applies). */
export function suspends(group: WriteGroup): boolean {
  return group.unclaimed !== true && group.fiber?.status === "waiting";
}

/** The last suspension (`suspends`) of each fiber among `groups`: `dueForInbox` judges one per fiber. */
export function suspensionsOf(groups: Iterable<WriteGroup>): Map<string, WriteGroup> {
  const suspending = new Map<string, WriteGroup>();
  for (const group of groups) if (suspends(group)) suspending.set(group.fiberId, group);
  return suspending;
}

/**
 * Why `group.inboxSeen` cannot bound inbox seqs, or `undefined` when it can (absent, or a finite
 * number): a `DataError`, as IndexedDB's key range over `[fiberId, seq]` gives.
 */
export function inboxSeenError(group: WriteGroup): DOMException | undefined {
  const seen: unknown = group.inboxSeen;
  if (seen === undefined || (typeof seen === "number" && Number.isFinite(seen))) return undefined;
  return new DOMException(
    `inboxSeen must be an inbox seq, a finite number (got ${String(seen)})`,
    "DataError",
  );
}

/** What `dueForBuffered` reads of an inbox event. */
export interface BufferedEvent {
  name: string;
  at: number;
  consumedBy?: number;
}

/**
 * `record`, waiting, made due at the time of the earliest unconsumed event in `inbox` that it
 * waits for (or `now`, if earlier: see `dueAt`; an earlier `wakeAt` stays), or `undefined` when
 * it needs no change.
 */
export function dueForBuffered<R extends Omit<FiberRecord, "input">>(
  record: R,
  inbox: Iterable<BufferedEvent>,
  now: number,
): R | undefined {
  const wanted = record.status === "waiting" ? (record.waitingFor ?? []) : [];
  if (wanted.length === 0) return undefined;
  let at: number | undefined;
  for (const event of inbox) {
    if (event.consumedBy !== undefined || !wanted.includes(event.name)) continue;
    if (at === undefined || event.at < at) at = event.at;
  }
  if (at === undefined) return undefined;
  const due = dueAt(at, now);
  if (record.wakeAt !== undefined && record.wakeAt <= due) return undefined;
  return { ...record, wakeAt: due };
}

/**
 * `event` marked consumed by the wait at journal position `consumedBy`, or released again
 * (`null`: a restart from scratch), as every store writes it.
 */
export function withConsumer<T extends { consumedBy?: number }>(event: T, consumedBy: number | null): T {
  const { consumedBy: _previous, ...rest } = event;
  return (consumedBy === null ? rest : { ...rest, consumedBy }) as T;
}

/** The statuses a query asks for, or `undefined` for all. */
export function queriedStatuses(query: FiberQuery | undefined): readonly FiberStatus[] | undefined {
  const status = query?.status;
  if (status === undefined) return undefined;
  return typeof status === "string" ? [status] : [...new Set(status)];
}

/**
 * The effective `limit`: `undefined` for no limit, else a whole number >= 0. (IndexedDB reads a
 * count of 0 as "all", so callers must short-circuit 0 themselves.)
 */
export function effectiveLimit(limit: number | undefined): number | undefined {
  if (limit === undefined || limit === Number.POSITIVE_INFINITY) return undefined;
  if (Number.isNaN(limit)) return 0;
  return Math.max(0, Math.floor(limit));
}

/** `listFibers` order: oldest `createdAt` first, then `id` (the order of IndexedDB's `createdAt` index). */
export function compareFibers(
  a: Pick<FiberRecord, "createdAt" | "id">,
  b: Pick<FiberRecord, "createdAt" | "id">,
): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  if (a.id === b.id) return 0;
  return a.id < b.id ? -1 : 1;
}

/** Filters by name and end time, orders and cuts a set of fiber records already filtered by status. */
export function finishListing<R extends Omit<FiberRecord, "input">>(
  records: R[],
  query: FiberQuery | undefined,
): R[] {
  const name = query?.name;
  const endedBefore = query?.endedBefore;
  const limit = effectiveLimit(query?.limit);
  const matching =
    name === undefined && endedBefore === undefined
      ? records
      : records.filter(
          (record) =>
            (name === undefined || record.name === name) &&
            (endedBefore === undefined || (record.endedAt !== undefined && record.endedAt <= endedBefore)),
        );
  matching.sort(compareFibers);
  return limit === undefined ? matching : matching.slice(0, limit);
}

/** The error every call on a closed store rejects with. */
export function storeClosedError(kind: string): StoreError {
  return new StoreError(
    "store_closed",
    `This ${kind} store has been closed; create a new store (and runtime) to keep using the data.`,
  );
}

/**
 * Wraps a backend failure in a `StoreError` (`store_error`, or `quota_exceeded` when the origin is
 * out of space) whose message says what to do;
 * Fiberline errors pass through unchanged.
 */
export function toStoreError(operation: string, error: unknown): FiberlineError {
  if (error instanceof FiberlineError) return error;
  const name = error instanceof Error ? error.name : "Error";
  const detail = error instanceof Error ? error.message : String(error);
  const advice =
    ADVICE[name] ??
    "Nothing was written; retry, and if it keeps failing check the browser's storage settings (private mode, cleared site data).";
  // Out of space is its own code: the fiber is paused, not broken, and resumes once space is back.
  const code = name === "QuotaExceededError" ? "quota_exceeded" : "store_error";
  return new StoreError(code, `Storage failed during ${operation} (${name}: ${detail}). ${advice}`, {
    cause: error,
  });
}

const ADVICE: Record<string, string> = {
  QuotaExceededError:
    "The origin is out of storage quota: delete finished fibers (or shorten retentionMs), free disk space, or request persistent storage with navigator.storage.persist(). Nothing was written.",
  DataCloneError:
    "A value is not structured-cloneable (a function, a DOM node, a class with private state...): pass plain data. Nothing was written.",
  DataError:
    "A key (fiber id, journal pos, stream seq or inbox seq) is missing or not a valid key. Nothing was written.",
  ConstraintError:
    "A uniqueness rule was broken (another fiber already uses this idempotency key). Nothing was written.",
  VersionError:
    "The database was upgraded by a newer release of this app: reload the page (and update the Service Worker) so the newer code runs.",
  UnknownError:
    "The browser's storage backend failed (disk error or corrupted profile); retry, and if it persists clear the site's data.",
};
