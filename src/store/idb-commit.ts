/**
 * The body of `IdbStore.commit`, and `FiberKeys`, what an `IdbStore` remembers about where each
 * fiber's rows go (its handle, and for the generation it writes under, its next journal segment).
 *
 * A commit is optimistic: every row write (journal segment, snapshot, chunks) is issued together
 * with the fence reads instead of after them, and the transaction is committed explicitly as soon
 * as the last write is issued. That saves round trips to the IndexedDB backend, which are most of
 * a commit's cost when it holds one step or one stash. If a fence fails, or a handle remembered
 * here no longer belongs to the fiber (another context deleted and re-created it), the
 * transaction is aborted, so none of it is written, and the caller retries without those groups
 * or with fresh keys.
 */

import type { IDBPTransaction, StoreNames } from "idb";
import type { FiberRecord } from "../core/records";
import { mergeFiberPatch } from "./fiber-rules";
import type { FiberlineSchema, RowKey, StoredFiber } from "./idb-database";
import { encodeChunk, encodeSegment, type InboxRow } from "./idb-rows";
import type { WriteGroup } from "./store";

export type Names = StoreNames<FiberlineSchema>;
export type Tx<Mode extends IDBTransactionMode> = IDBPTransaction<FiberlineSchema, Names[], Mode>;

/** The key range of one fiber's buffered events (`[fiberId, seq]`). */
export function inboxOf(fiberId: string): IDBKeyRange {
  return IDBKeyRange.bound([fiberId, Number.NEGATIVE_INFINITY], [fiberId, Number.POSITIVE_INFINITY]);
}

/** The key range of one fiber's rows in a `[handle, n]`-keyed store. */
export function rowsOf(handle: number): IDBKeyRange {
  return IDBKeyRange.bound([handle, Number.NEGATIVE_INFINITY], [handle, Number.POSITIVE_INFINITY]);
}

interface Known {
  handle: number;
  /** The generation `nextSegment` was established for: only its writer appends segments. */
  generation?: number;
  nextSegment?: number;
}

/**
 * Where each fiber's rows are, as far as this store has seen. Handles never change for the life
 * of a fiber and are never reused, so a remembered handle is at worst stale (the fiber was
 * deleted, maybe re-created under the same id): every use is checked against the fiber's record
 * or handle row read in the same transaction. The next segment number is remembered per
 * generation: the fence lets exactly one runner write under a generation, so between its writes
 * nobody else appends to the journal.
 */
export class FiberKeys {
  readonly #known = new Map<string, Known>();

  handle(fiberId: string): number | undefined {
    return this.#known.get(fiberId)?.handle;
  }

  /** Remembers `fiberId`'s handle (from a record or a handle row just read). */
  remember(fiberId: string, handle: number): void {
    const known = this.#known.get(fiberId);
    if (known?.handle === handle) return;
    this.#known.set(fiberId, { handle });
  }

  /** Remembers the writer of `generation`: its next segment is `nextSegment`. */
  rememberWriter(fiberId: string, handle: number, generation: number, nextSegment: number): void {
    this.#known.set(fiberId, { handle, generation, nextSegment });
  }

  /** True when a commit of `group` can be written without reading anything first. */
  ready(group: WriteGroup): boolean {
    if (!rowsWritten(group)) return true;
    const known = this.#known.get(group.fiberId);
    if (known === undefined) return false;
    return !journalWritten(group) || known.generation === group.generation;
  }

  /** Takes the next segment number for `group`'s writer (`ready(group)` must hold). */
  takeSegment(group: WriteGroup): number {
    const known = this.#known.get(group.fiberId) as Known;
    const segment = known.nextSegment as number;
    known.nextSegment = segment + 1;
    return segment;
  }

  forget(fiberId: string): void {
    this.#known.delete(fiberId);
  }
}

/** True when `group` writes rows keyed by the fiber's handle. */
function rowsWritten(group: WriteGroup): boolean {
  return journalWritten(group) || (group.chunks?.length ?? 0) > 0 || (group.consumeEvents?.length ?? 0) > 0;
}

function journalWritten(group: WriteGroup): boolean {
  return group.clearJournal === true || (group.journal?.length ?? 0) > 0;
}

/** The object stores a commit touches: fewer stores, fewer transactions waiting on each other. */
export function commitScope(groups: WriteGroup[], keys: FiberKeys): Names[] {
  const scope = new Set<Names>(["fibers"]);
  for (const group of groups) {
    if (!keys.ready(group)) scope.add("handles").add("journalSegments");
    if (journalWritten(group)) scope.add("journalSegments");
    if (group.snapshot !== undefined) scope.add("snapshots");
    if ((group.chunks?.length ?? 0) > 0) scope.add("streamChunks");
    if ((group.consumeEvents?.length ?? 0) > 0) scope.add("inboxEvents");
  }
  return [...scope];
}

/** Thrown (after aborting, so nothing was written) by a commit whose fence failed for `groups`. */
export class FenceFailed extends Error {
  readonly groups: WriteGroup[];
  constructor(groups: WriteGroup[]) {
    super(`fenced: ${groups.map((group) => group.fiberId).join(", ")}`);
    this.groups = groups;
  }
}

/** Thrown (after aborting) when remembered handles turned out stale for `fiberIds`. */
export class StaleKeys extends Error {
  readonly fiberIds: string[];
  constructor(fiberIds: string[]) {
    super(`stale handles: ${fiberIds.join(", ")}`);
    this.fiberIds = fiberIds;
  }
}

/** Resolves with a request's result (rejections abort the transaction, which `#run` reports). */
function result<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * Writes `groups` in `tx` (raw API: the commit path is hot): reads what `keys` does not know yet
 * (a round trip, only the first time a store writes a fiber under a generation), then issues
 * every row write with the fence reads, checks the fences and commits. Throws `FenceFailed` or
 * `StaleKeys` after aborting.
 */
export async function commitGroups(tx: IDBTransaction, groups: WriteGroup[], keys: FiberKeys): Promise<void> {
  const cold = groups.filter((group) => !keys.ready(group));
  if (cold.length > 0) {
    // Known when the scope was chosen, forgotten since (a concurrent delete): choose again.
    if (!tx.objectStoreNames.contains("handles")) throw new StaleKeys([]);
    await learnKeys(tx, cold, keys);
  }

  const fibers = tx.objectStore("fibers");
  const [only] = groups;
  const ids =
    groups.length === 1 && only ? [only.fiberId] : [...new Set(groups.map((group) => group.fiberId))];
  const consumed = groups.flatMap((group) =>
    (group.consumeEvents ?? []).map((c) => ({ group, seq: c.seq, consumedBy: c.consumedBy })),
  );
  const used = new Map<string, number>();
  const fenceReads = Promise.all(
    ids.map((id) => result(fibers.get(id) as IDBRequest<StoredFiber | undefined>)),
  );
  const inbox = consumed.length > 0 ? tx.objectStore("inboxEvents") : undefined;
  const eventReads = Promise.all(
    consumed.map((c) => result(inbox?.get([c.group.fiberId, c.seq]) as IDBRequest<InboxRow | undefined>)),
  );
  // If a write below throws (a value that cannot be cloned), the abort rejects these reads too.
  fenceReads.catch(() => undefined);
  eventReads.catch(() => undefined);
  for (const group of groups) writeRows(tx, group, keys, used);
  const current = await fenceReads;

  const records = new Map<string, StoredFiber | undefined>();
  ids.forEach((id, i) => {
    records.set(id, current[i]);
  });
  const fenced = groups.filter((group) => records.get(group.fiberId)?.generation !== group.generation);
  if (fenced.length > 0) {
    tx.abort();
    throw new FenceFailed(fenced);
  }
  const stale: string[] = [];
  for (const [id, handle] of used) if (records.get(id)?.handle !== handle) stale.push(id);
  if (stale.length > 0) {
    tx.abort();
    throw new StaleKeys(stale);
  }
  const patched = new Set<string>();
  for (const group of groups) {
    if (group.fiber === undefined) continue;
    records.set(
      group.fiberId,
      mergeFiberPatch(records.get(group.fiberId) as StoredFiber, group.fiber) as StoredFiber,
    );
    patched.add(group.fiberId);
  }
  for (const id of patched) fibers.put(records.get(id));
  if (consumed.length > 0) consumeEvents(tx, consumed, await eventReads);
  // Everything is issued: commit now instead of waiting a round trip for the requests to settle.
  (tx as IDBTransaction & { commit?: () => void }).commit?.();
}

/**
 * Reads, for groups `keys` cannot place yet, the fiber's handle and, for journal writers, the
 * last segment key, and remembers them for the group's generation. A fiber without a handle row
 * (missing) is left unknown; its group then fails its fence.
 */
async function learnKeys(tx: IDBTransaction, groups: WriteGroup[], keys: FiberKeys): Promise<void> {
  const handles = tx.objectStore("handles");
  const segments = tx.objectStore("journalSegments");
  await Promise.all(
    groups.map(async (group) => {
      const handle = (await result(handles.get(group.fiberId))) as number | undefined;
      if (handle === undefined) return;
      const last = await result(segments.openKeyCursor(rowsOf(handle), "prev"));
      const lastSegment = last === null ? 0 : (last.key as RowKey)[1];
      keys.rememberWriter(group.fiberId, handle, group.generation, lastSegment + 1);
    }),
  );
}

/** The handle `group`'s rows go under (noted in `used`, to be checked against the record). */
function handleFor(group: WriteGroup, keys: FiberKeys, used: Map<string, number>): number {
  // A missing fiber has no handle: -1 keys nothing real, and its fence fails before commit.
  const handle = keys.handle(group.fiberId) ?? -1;
  used.set(group.fiberId, handle);
  return handle;
}

/**
 * Issues one group's row writes (journal segment, snapshot, chunks): no promise per request; a
 * failing request aborts the transaction, and the caller rejects with its error.
 */
function writeRows(tx: IDBTransaction, group: WriteGroup, keys: FiberKeys, used: Map<string, number>): void {
  if (group.snapshot === null) tx.objectStore("snapshots").delete(group.fiberId);
  else if (group.snapshot !== undefined) tx.objectStore("snapshots").put(group.snapshot);
  if (!rowsWritten(group)) return;
  const handle = handleFor(group, keys, used);
  if (handle === -1) return;
  if (journalWritten(group)) {
    const journal = tx.objectStore("journalSegments");
    if (group.clearJournal === true) journal.delete(rowsOf(handle));
    if ((group.journal?.length ?? 0) > 0) {
      journal.put(encodeSegment(group.journal ?? []), [handle, keys.takeSegment(group)]);
    }
  }
  if ((group.chunks?.length ?? 0) > 0) {
    const chunks = tx.objectStore("streamChunks");
    for (const chunk of group.chunks ?? []) chunks.put(encodeChunk(chunk), [handle, chunk.seq]);
  }
}

/** Marks the buffered events the groups consumed (read in the same transaction). */
function consumeEvents(
  tx: IDBTransaction,
  consumed: Array<{ group: WriteGroup; seq: number; consumedBy: number }>,
  rows: Array<InboxRow | undefined>,
): void {
  const inbox = tx.objectStore("inboxEvents");
  consumed.forEach((c, i) => {
    const row = rows[i];
    if (row === undefined) return;
    inbox.put({ ...row, consumedBy: c.consumedBy } satisfies InboxRow, [c.group.fiberId, c.seq]);
  });
}

/** A record as the engine sees it: without the store's handle. */
export function publicRecord(stored: StoredFiber): FiberRecord {
  const { handle: _handle, ...record } = stored;
  return record;
}
