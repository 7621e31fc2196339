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
import type { WriteGroup } from "../core/store";
import { estimateSize } from "../core/validate";
import {
  continueStream,
  dueForInbox,
  mergeFiberPatch,
  suspends,
  suspensionsOf,
  withConsumer,
} from "./fiber-rules";
import { AbortedOnPurpose, commitNow, result } from "./idb-connection";
import { type FiberlineSchema, hasInlineInput, type RowKey, type StoredFiber } from "./idb-database";
import { appendToOutbox, type OutboxHeadRow, type OutboxWrite, type Placed } from "./idb-outbox";
import {
  encodeChunk,
  encodeSegment,
  foldSegments,
  type InboxRow,
  inboxOf,
  type SegmentRow,
} from "./idb-rows";
import { commitStashes, writeStash } from "./idb-stashes";

export type Names = StoreNames<FiberlineSchema>;
export type Tx<Mode extends IDBTransactionMode> = IDBPTransaction<FiberlineSchema, Names[], Mode>;

/** The key range of one fiber's rows in a `[handle, n]`-keyed store. */
export function rowsOf(handle: number): IDBKeyRange {
  return IDBKeyRange.bound([handle, Number.NEGATIVE_INFINITY], [handle, Number.POSITIVE_INFINITY]);
}

interface Known {
  handle: number;
  /** The generation `nextSegment` was established for: only its writer appends segments. */
  generation?: number;
  nextSegment?: number;
  /**
   * The last segment this store saw its writer commit (the transaction complete), while no
   * commit of the writer has failed since: when it is `nextSegment - 1`, the journal's highest
   * key on disk is that segment, unless another context has written since (`fenceless`).
   */
  confirmed?: number;
  /** When (`Date.now()`) `confirmed` was last set. */
  confirmedAt?: number;
  /**
   * The fold range (`[foldFrom, foldFrom + foldEvery - 1]`) this writer wrote from its start in
   * this store, and the estimated bytes of the entries it wrote there: a range known to be over
   * `FOLD_MAX_BYTES` is not read back to be folded.
   */
  foldFrom?: number;
  foldBytes?: number;
  /**
   * When (`Date.now()`, taken before its transaction began) a stash of this writer was last
   * written where its own row stood: the fiber existed then under `generation` (`stashGuarded`).
   */
  stashedAt?: number;
}

/**
 * Where each fiber's rows are, as far as this store has seen. Handles never change for the life
 * of a fiber and are never reused, so a remembered handle is at worst stale (the fiber was
 * deleted, maybe re-created under the same id): every use is checked against the fiber's record
 * or handle row read in the same transaction. The next segment number is remembered per
 * generation: the fence lets exactly one runner write under a generation, so between its writes
 * nobody else appends to the journal.
 *
 * Bounded: the `limit` fibers used last are kept (a few hundred bytes each), so a worker holding
 * thousands of suspended fibers does not keep an entry for each; a forgotten fiber costs its next
 * commit one extra read.
 */
export class FiberKeys {
  readonly #known = new Map<string, Known>();
  /** The connection what is known was learnt on (`bind`). */
  #database: IDBDatabase | undefined;
  readonly #limit: number;
  /** Every how many segments a fiber's journal is folded (`IdbStoreOptions.journalFold`); 0: never. */
  readonly foldEvery: number;

  constructor(limit = 256, foldEvery = DEFAULT_FOLD_EVERY) {
    this.#limit = limit;
    this.foldEvery = foldEvery;
  }

  /**
   * Called with the connection of each transaction that learns or uses keys: on another one
   * (the database was deleted and created again, or reopened after another context upgraded it)
   * everything known is forgotten, since rows, fences and tombstones may not be where they were.
   */
  bind(db: IDBDatabase): void {
    if (this.#database === db) return;
    if (this.#database !== undefined) this.#known.clear();
    this.#database = db;
  }

  /** How many fibers are remembered. */
  get size(): number {
    return this.#known.size;
  }

  handle(fiberId: string): number | undefined {
    return this.#touch(fiberId)?.handle;
  }

  /** Remembers `fiberId`'s handle (from a record or a handle row just read). */
  remember(fiberId: string, handle: number): void {
    if (this.#touch(fiberId)?.handle === handle) return;
    this.#set(fiberId, { handle });
  }

  /** Remembers the writer of `generation`: its next segment is `nextSegment`. */
  rememberWriter(fiberId: string, handle: number, generation: number, nextSegment: number): void {
    const known = this.#touch(fiberId);
    if (known?.handle === handle && known.generation === generation) known.nextSegment = nextSegment;
    else this.#set(fiberId, { handle, generation, nextSegment });
  }

  /**
   * Counts `bytes` more written by `group`'s writer in `segment` of the fold range starting at
   * `from`. "over" when the range is known to hold more than `FOLD_MAX_BYTES` (this store wrote
   * all of it so far and counted), "unknown" when it did not write the range from its start.
   */
  weigh(group: WriteGroup, from: number, segment: number, bytes: number): "over" | "under" | "unknown" {
    const known = this.#known.get(group.fiberId);
    if (known === undefined || known.generation !== group.generation) return "unknown";
    if (segment === from) {
      known.foldFrom = from;
      known.foldBytes = 0;
    }
    if (known.foldFrom !== from || known.foldBytes === undefined) return "unknown";
    known.foldBytes += bytes;
    // As `writeFold` would weigh the rows read back: one array of them (2 more).
    return known.foldBytes + 2 > FOLD_MAX_BYTES ? "over" : "under";
  }

  /**
   * Records that `group`'s writer committed: its segment `segment` is on disk (`undefined`: the
   * group wrote no segment). A journal cleared without a segment of its own left no row this
   * writer knows to be the highest, so its next commit reads the fence again.
   */
  confirm(group: WriteGroup, handle: number, segment: number | undefined): void {
    const known = this.#known.get(group.fiberId);
    if (known?.handle !== handle || known.generation !== group.generation) return;
    if (segment !== undefined) {
      known.confirmed = segment;
      known.confirmedAt = Date.now();
    } else if (group.clearJournal === true) known.confirmed = undefined;
  }

  /**
   * True when `group` can be committed without reading the fiber's record for its fence: it
   * only appends journal entries (unreplicated), and its writer's last commit is confirmed at the
   * segment just before its next, less than `FENCELESS_WINDOW_MS` ago. Then the append itself is
   * the fence: every claim and every deletion puts a row with no entries at the journal's next
   * key (`fenceRow`), so a segment `add`ed there by the writer they fenced collides and aborts the
   * commit. An append whose segment closes a fold range reads the record all the same (the fold
   * keeps the fence rows it folds, as the record lists them).
   */
  fenceless(group: WriteGroup, replicated?: ReadonlySet<string>): boolean {
    if (!appendsOnly(group) || group.unclaimed === true || replicated?.has(group.fiberId) === true)
      return false;
    const known = this.#known.get(group.fiberId);
    if (known?.generation !== group.generation || known.confirmed === undefined) return false;
    const next = known.confirmed + 1;
    if (known.nextSegment !== next || (this.foldEvery > 1 && next % this.foldEvery === 0)) return false;
    const age = Date.now() - (known.confirmedAt ?? Number.NEGATIVE_INFINITY);
    return age >= 0 && age < FENCELESS_WINDOW_MS;
  }

  /**
   * True when `group`'s stash can go without a look for the row it replaces (`commitStashes`):
   * a stash of its writer was written over its own row less than `FENCELESS_WINDOW_MS` ago.
   * The row is then the whole fence: a claim since moved it (the put collides on the unique
   * index), and a deletion since left a tombstone there (`stashTombstoneKey`) that outlives the
   * window (`FENCE_KEEP_MS`). Only a deletion leaves no row, so only it needed the look.
   */
  stashGuarded(group: WriteGroup): boolean {
    if (group.unclaimed === true) return false;
    const known = this.#known.get(group.fiberId);
    if (known?.generation !== group.generation || known.stashedAt === undefined) return false;
    const age = Date.now() - known.stashedAt;
    return age >= 0 && age < FENCELESS_WINDOW_MS;
  }

  /** Records that `group`'s stash, begun at `at`, was written over its writer's own row. */
  confirmStash(group: WriteGroup, at: number): void {
    if (group.unclaimed === true) return;
    const known = this.#known.get(group.fiberId);
    if (known?.generation === group.generation) known.stashedAt = at;
  }

  /** True when a commit of `group` can be written without reading anything first. */
  ready(group: WriteGroup): boolean {
    if (!rowsWritten(group)) return true;
    // Another context may have written (and folded) the rows since: read where they end.
    if (group.unclaimed === true) return false;
    const known = this.#known.get(group.fiberId);
    if (known === undefined) return false;
    return !journalWritten(group) || known.generation === group.generation;
  }

  /** The next segment of `group`'s writer, if known for its generation. */
  nextSegment(group: WriteGroup): number | undefined {
    const known = this.#touch(group.fiberId);
    return known?.generation === group.generation ? known.nextSegment : undefined;
  }

  forget(fiberId: string): void {
    this.#known.delete(fiberId);
  }

  /** The entry of `fiberId`, moved to the most recently used end. */
  #touch(fiberId: string): Known | undefined {
    const known = this.#known.get(fiberId);
    if (known !== undefined) {
      this.#known.delete(fiberId);
      this.#known.set(fiberId, known);
    }
    return known;
  }

  #set(fiberId: string, known: Known): void {
    this.#known.delete(fiberId);
    this.#known.set(fiberId, known);
    if (this.#known.size > this.#limit) {
      const oldest = this.#known.keys().next();
      if (!oldest.done) this.#known.delete(oldest.value);
    }
  }
}

/** `IdbStoreOptions.journalFold`'s default. */
export const DEFAULT_FOLD_EVERY = 64;

/** Segments holding more than this (estimated, as `estimateSize` counts) are not folded. */
export const FOLD_MAX_BYTES = 512 * 1024;

/** True when `group` only appends journal entries: no record patch, stash, chunk, event or clear. */
function appendsOnly(group: WriteGroup): boolean {
  return (
    (group.journal?.length ?? 0) > 0 &&
    group.fiber === undefined &&
    group.snapshot === undefined &&
    group.clearJournal !== true &&
    (group.chunks?.length ?? 0) === 0 &&
    (group.consumeEvents?.length ?? 0) === 0
  );
}

/**
 * A fence row: a journal segment with no entries, its time base the time it was put
 * (`Date.now()`), so readers and folds see nothing in it. A claim puts one at the next key of the
 * fiber's journal (`[handle, last + 1]`), a deletion one there too (a tombstone), which is where
 * the writer they fenced appends next (`FiberKeys.fenceless`): that `add` collides.
 */
export function fenceRow(at: number): SegmentRow {
  return [at];
}

/**
 * How long after its last confirmed commit a writer may append without reading its fiber's
 * record (`FiberKeys.fenceless`). A fence row must outlive every writer it fences; this bounds
 * how long that is (`FENCE_KEEP_MS`).
 */
export const FENCELESS_WINDOW_MS = 5_000;

/**
 * How long a fence row is kept where something deletes journal rows (a restart from scratch, a
 * fold, a deletion: each puts the fence rows it deleted back, or leaves a tombstone). Far past
 * `FENCELESS_WINDOW_MS`, so that only a wall clock set back by about this much between a
 * writer's commit and the fence could let a writer append where a fence was.
 */
export const FENCE_KEEP_MS = 60 * 60 * 1000;

/** A fence a claim put in the fiber's journal (`StoredFiber.fences`): its segment, and when. */
export type Fence = [segment: number, at: number];

/** The fences of `stored` put less than `FENCE_KEEP_MS` before `now` (or after it: a clock set back). */
export function recentFences(stored: StoredFiber | undefined, now: number): Fence[] {
  return (stored?.fences ?? []).filter(([, at]) => now - at <= FENCE_KEEP_MS);
}

/** True when `group` writes rows keyed by the fiber's handle (journal, stream; not the inbox). */
function rowsWritten(group: WriteGroup): boolean {
  return journalWritten(group) || (group.chunks?.length ?? 0) > 0;
}

/** Whether `group` writes journal rows (entries, or a clear). */
export function journalWritten(group: WriteGroup): boolean {
  return group.clearJournal === true || (group.journal?.length ?? 0) > 0;
}

/**
 * The object stores a commit touches: fewer stores, fewer transactions waiting on each other, and
 * a cheaper `transaction()` (in B1's worker profile it cost ~40% more with three stores than with
 * two). A commit that writes rows may have to learn a fiber's keys first (`handles`,
 * `journalSegments`); given `keys`, only the groups it cannot place yet bring those stores in
 * (`commitGroups` refuses a cold group in a scope without them: `StaleKeys`, and the commit
 * runs again with the full scope).
 */
export function commitScope(
  groups: WriteGroup[],
  stashesOnly = false,
  replicated?: ReadonlySet<string>,
  keys?: FiberKeys,
): Names[] {
  // Stash-only commits touch their stash rows alone (`commitStashes`).
  if (stashesOnly) return ["stashes"];
  const scope = new Set<Names>();
  for (const group of groups) {
    if (keys?.fenceless(group, replicated) !== true) scope.add("fibers");
    if (replicated?.has(group.fiberId) === true) scope.add("outbox").add("outboxFibers");
    if (rowsWritten(group) && keys?.ready(group) !== true) scope.add("handles").add("journalSegments");
    if (journalWritten(group)) scope.add("journalSegments");
    if (group.snapshot !== undefined) scope.add("stashes");
    if (patchesInput(group)) scope.add("inputs");
    if ((group.chunks?.length ?? 0) > 0) scope.add("streamChunks");
    if ((group.consumeEvents?.length ?? 0) > 0 || suspends(group)) scope.add("inboxEvents");
  }
  return [...scope];
}

/**
 * Thrown (after aborting, so nothing was written) by a commit whose fence failed for `groups`:
 * another runner claimed the fiber, or (`away`) another home runs it (continuity).
 */
export class FenceFailed extends AbortedOnPurpose {
  readonly groups: WriteGroup[];
  constructor(groups: WriteGroup[]) {
    super(`fenced: ${groups.map((group) => group.fiberId).join(", ")}`);
    this.groups = groups;
  }
}

/** Thrown (after aborting) when remembered handles turned out stale for `fiberIds`. */
export class StaleKeys extends AbortedOnPurpose {
  readonly fiberIds: string[];
  constructor(fiberIds: string[]) {
    super(`stale handles: ${fiberIds.join(", ")}`);
    this.fiberIds = fiberIds;
  }
}

/**
 * Where one commit writes: each fiber's handle and, per writer (fiber and generation), the next
 * journal segment. Taken from `FiberKeys` when the commit starts (or read, for what it does not
 * know), then used alone: another call evicting or forgetting keys meanwhile cannot misdirect
 * this commit's writes.
 */
/** Who writes `group`: one fiber under one generation. */
function writerOf(group: WriteGroup): string {
  return `${group.generation}:${group.fiberId}`;
}

class RowPlaces {
  readonly handles = new Map<string, number>();
  readonly #segments = new Map<string, number>();
  /** The segment each group wrote, in order. */
  readonly written: Written[] = [];

  /** Places `group`'s rows under `handle`, its writer's segments from `nextSegment` on. */
  place(group: WriteGroup, handle: number, nextSegment: number | undefined): void {
    this.handles.set(group.fiberId, handle);
    const writer = writerOf(group);
    if (nextSegment !== undefined && !this.#segments.has(writer)) this.#segments.set(writer, nextSegment);
  }

  /** The next segment of `group`'s writer (placed with one), mirrored into `keys`. */
  takeSegment(group: WriteGroup, handle: number, keys: FiberKeys): number {
    const writer = writerOf(group);
    const segment = this.#segments.get(writer) as number;
    this.#segments.set(writer, segment + 1);
    keys.rememberWriter(group.fiberId, handle, group.generation, segment + 1);
    this.written.push({ group, handle, segment });
    return segment;
  }
}

/** A journal segment a commit wrote for `group`, at `[handle, segment]`. */
export interface Written {
  group: WriteGroup;
  handle: number;
  segment: number;
}

/** What a commit leaves for its store to finish. */
export interface Committed {
  /** Every group's segment, once the transaction is complete: their writers are confirmed. */
  written: readonly Written[];
  /**
   * Stash-only groups whose fiber no longer existed: their stash rows were written as orphans.
   * The store removes them and reports the groups fenced.
   */
  orphaned: WriteGroup[];
  /** Outbox entries written, to report to the caller's `OutboxWrite` now that they are durable. */
  placed: readonly Placed[];
}

/**
 * Writes `groups` in `tx` (raw API: the commit path is hot). With `stashesOnly` (every group
 * only stashes, as the caller decided for `commitScope` too), the batch goes out in one round
 * trip (`commitStashes`). Otherwise: reads what `keys` does not know yet (a
 * round trip, only the first time a store writes a fiber under a generation), then issues every
 * row write with the fence reads, checks the fences and commits. Throws `FenceFailed` or
 * `StaleKeys` after aborting. With `outbox`, the groups of the fibers it names replicated also
 * go into the outbox (`idb-outbox.ts`): their heads are read with the fences, in the same round
 * trip, and a head that says `away` fails the group's fence.
 */
export async function commitGroups(
  tx: IDBTransaction,
  groups: WriteGroup[],
  keys: FiberKeys,
  stashesOnly = false,
  outbox?: OutboxWrite,
): Promise<Committed> {
  keys.bind(tx.db);
  if (stashesOnly) {
    const orphaned = await commitStashes(tx, groups, (group) => keys.stashGuarded(group));
    return { orphaned, placed: NONE_PLACED, written: [] };
  }
  const places = new RowPlaces();
  const cold: WriteGroup[] = [];
  for (const group of groups) {
    if (!rowsWritten(group)) continue;
    const handle = keys.ready(group) ? keys.handle(group.fiberId) : undefined;
    if (handle === undefined) cold.push(group);
    else places.place(group, handle, keys.nextSegment(group));
  }
  if (cold.length > 0) {
    // Keys forgotten since the scope was chosen (another call evicted them): run again with it.
    if (!tx.objectStoreNames.contains("handles")) {
      abort(tx);
      throw new StaleKeys(cold.map((group) => group.fiberId));
    }
    await learnKeys(tx, cold, keys, places);
  }

  // The groups fenced by their record, read here; the others by their append
  // (`FiberKeys.fenceless`, decided before any group takes a segment).
  const readFence = groups.filter((group) => !keys.fenceless(group, outbox?.replicated));
  if (readFence.length > 0 && !tx.objectStoreNames.contains("fibers")) {
    // A writer unconfirmed since the scope was chosen (another call failed or forgot it).
    abort(tx);
    throw new StaleKeys(readFence.map((group) => group.fiberId));
  }
  if (readFence.length === 0) {
    // Every group appends journal entries and nothing else, fenced by its own `add`: nothing to
    // read, patch or fold (a step loop's commit, the hot path: no awaits, no per-commit maps).
    const folds: Fold[] = [];
    for (const group of groups) writeRows(tx, group, keys, places, folds, false);
    commitNow(tx);
    return { orphaned: [], placed: NONE_PLACED, written: places.written };
  }
  const [only] = readFence;
  const ids =
    readFence.length === 1 && only ? [only.fiberId] : [...new Set(readFence.map((group) => group.fiberId))];
  const fibers = ids.length === 0 ? undefined : tx.objectStore("fibers");
  const consumed = groups.flatMap((group) =>
    (group.consumeEvents ?? []).map((c) => ({ group, seq: c.seq, consumedBy: c.consumedBy })),
  );
  // A suspension reads its fiber's inbox for the events stored while it ran (`dueForInbox`: those
  // past what the run saw), once per fiber, judged on the record and inbox the whole commit leaves.
  // The ranges first: one that cannot be made (`inboxSeen` not a finite number) throws before the
  // commit reads anything.
  const suspending = suspensionsOf(readFence);
  const inboxRanges = [...suspending].map(([id, group]) => inboxOf(id, group.inboxSeen));
  const fenceReads = Promise.all(
    ids.map((id) => result(fibers?.get(id) as IDBRequest<StoredFiber | undefined>)),
  );
  const replicatedIds = outbox === undefined ? [] : ids.filter((id) => outbox.replicated.has(id));
  const headReads =
    replicatedIds.length === 0
      ? undefined
      : Promise.all(
          replicatedIds.map((id) =>
            result(tx.objectStore("outboxFibers").get(id) as IDBRequest<OutboxHeadRow | undefined>),
          ),
        );
  headReads?.catch(() => undefined);
  const inbox = consumed.length > 0 || suspending.size > 0 ? tx.objectStore("inboxEvents") : undefined;
  const eventReads = Promise.all(
    consumed.map((c) => result(inbox?.get([c.group.fiberId, c.seq]) as IDBRequest<InboxRow | undefined>)),
  );
  const inboxReads =
    suspending.size === 0
      ? undefined
      : Promise.all(inboxRanges.map((range) => result(inbox?.getAll(range) as IDBRequest<InboxRow[]>)));
  // If a write below throws (a value that cannot be cloned), the abort rejects these reads too.
  fenceReads.catch(() => undefined);
  eventReads.catch(() => undefined);
  inboxReads?.catch(() => undefined);
  const folds: Fold[] = [];
  for (const group of groups) writeRows(tx, group, keys, places, folds, readFence.includes(group));
  const current = await fenceReads;
  // Issued with the fence reads: this await costs no round trip of its own.
  // Unreplicated commits (the hot path) allocate and read nothing for the outbox.
  const outboxHeads = headReads === undefined ? undefined : new Map<string, OutboxHeadRow>();
  if (headReads !== undefined && outboxHeads !== undefined) {
    const read = await headReads;
    replicatedIds.forEach((id, i) => {
      const head = read[i];
      if (head !== undefined) outboxHeads.set(id, head);
    });
  }

  const records = new Map<string, StoredFiber | undefined>();
  ids.forEach((id, i) => {
    records.set(id, current[i]);
  });
  const failed = readFence.filter(
    (group) =>
      records.get(group.fiberId)?.generation !== group.generation ||
      outboxHeads?.get(group.fiberId)?.away !== undefined,
  );
  if (failed.length > 0) {
    abort(tx);
    throw new FenceFailed(failed);
  }
  const stale: string[] = [];
  for (const [id, handle] of places.handles) {
    if (records.has(id) && records.get(id)?.handle !== handle) stale.push(id);
  }
  if (stale.length > 0) {
    abort(tx);
    throw new StaleKeys(stale);
  }
  const heads = new Map<string, number>();
  for (const group of groups) {
    if ((group.chunks?.length ?? 0) === 0) continue;
    const head = heads.get(group.fiberId) ?? (records.get(group.fiberId) as StoredFiber).streamHead;
    try {
      heads.set(group.fiberId, continueStream(group.fiberId, head, group.chunks));
    } catch (error) {
      abort(tx);
      throw error;
    }
  }
  const patched = new Set<string>();
  for (const group of groups) {
    if (group.fiber === undefined) continue;
    const stored = records.get(group.fiberId) as StoredFiber;
    records.set(group.fiberId, mergeFiberPatch(stored, recordPatch(tx, group, stored)));
    patched.add(group.fiberId);
  }
  // The stream head is the last chunk written, whatever a patch said.
  for (const [id, streamHead] of heads) {
    const record = records.get(id) as StoredFiber;
    if (record.streamHead === streamHead) continue;
    records.set(id, { ...record, streamHead });
    patched.add(id);
  }
  if (inboxReads !== undefined) {
    const inboxes = await inboxReads;
    const now = Date.now();
    [...suspending].forEach(([id, group], i) => {
      const record = records.get(id) as StoredFiber;
      const due = dueForInbox(record, group, afterConsuming(id, inboxes[i] ?? [], consumed), now);
      if (due === undefined) return;
      records.set(id, due);
      patched.add(id);
    });
  }
  for (const id of patched) fibers?.put(records.get(id));
  if (consumed.length > 0) consumeEvents(tx, consumed, await eventReads);
  const now = Date.now();
  for (const fold of folds) {
    const fences = recentFences(records.get(fold.fiberId), now);
    writeFold(tx, fold, await fold.segments, fences);
  }
  // A restart from scratch deleted the journal's rows: the fence rows among them go back.
  for (const group of readFence) {
    if (group.clearJournal !== true) continue;
    const handle = places.handles.get(group.fiberId);
    if (handle === undefined) continue;
    const journal = tx.objectStore("journalSegments");
    // Fences stand below every segment a writer of this generation wrote (each came after its
    // claim's fence); one that does not is left out rather than put over a segment.
    const written = places.written.filter((w) => w.group.fiberId === group.fiberId);
    const lowest = Math.min(...written.map((w) => w.segment));
    for (const [segment, at] of recentFences(records.get(group.fiberId), now)) {
      if (segment < lowest) journal.put(fenceRow(at), [handle, segment]);
    }
  }
  // A replicated fiber without a head (never, while its writes go through one store) ships nothing.
  let placed = NONE_PLACED;
  if (outbox !== undefined && outboxHeads !== undefined && outboxHeads.size > 0) {
    const appends = groups.flatMap((group) => {
      const head = outboxHeads.get(group.fiberId);
      return head === undefined
        ? []
        : [{ fiberId: group.fiberId, head, body: { type: "commit" as const, group } }];
    });
    placed = appendToOutbox(tx, appends);
  }
  // Everything is issued: commit now instead of waiting a round trip for the requests to settle.
  commitNow(tx);
  return { orphaned: [], placed, written: places.written };
}

/** `rows`, a fiber's inbox, with the consumed marks of this commit's `consumed` applied. */
function afterConsuming(
  fiberId: string,
  rows: readonly InboxRow[],
  consumed: ReadonlyArray<{ group: WriteGroup; seq: number; consumedBy: number | null }>,
): InboxRow[] {
  const marks = consumed.filter((c) => c.group.fiberId === fiberId);
  if (marks.length === 0) return rows as InboxRow[];
  return rows.map((row) => {
    const mark = marks.findLast((c) => c.seq === row.seq);
    return mark === undefined ? row : withConsumer(row, mark.consumedBy);
  });
}

/** True when `group` patches the fiber's input (the continuity mirror copies every field). */
function patchesInput(group: WriteGroup): boolean {
  return group.fiber !== undefined && Object.hasOwn(group.fiber, "input");
}

/**
 * `group`'s patch of the record: an input it carries goes to the fiber's `inputs` row instead
 * (a record written before schema v8 keeps its own, as it is).
 */
function recordPatch(tx: IDBTransaction, group: WriteGroup, stored: StoredFiber): Partial<FiberRecord> {
  const patch = group.fiber as Partial<FiberRecord>;
  if (!patchesInput(group) || hasInlineInput(stored)) return patch;
  const { input, ...rest } = patch;
  tx.objectStore("inputs").put(input, group.fiberId);
  return rest;
}

/** What a commit of no replicated fiber placed in the outbox (shared: never written to). */
const NONE_PLACED: readonly Placed[] = [];

/** Aborts `tx`, unless it already ended (a failed request aborted it first). */
function abort(tx: IDBTransaction): void {
  try {
    tx.abort();
  } catch {
    // Already aborted: nothing of it was written either way.
  }
}

/**
 * Reads, for groups `keys` cannot place yet, the fiber's handle (unless known) and, for journal
 * writers, the last segment key, and remembers them (in `places` for this commit, in `keys` for
 * the next). A fiber without a handle row (missing) stays unplaced; its group then fails its
 * fence.
 */
async function learnKeys(
  tx: IDBTransaction,
  groups: WriteGroup[],
  keys: FiberKeys,
  places: RowPlaces,
): Promise<void> {
  const handles = tx.objectStore("handles");
  const segments = tx.objectStore("journalSegments");
  await Promise.all(
    groups.map(async (group) => {
      // A handle already known (the claim just read it) is checked against the fence read later.
      const handle =
        keys.handle(group.fiberId) ?? ((await result(handles.get(group.fiberId))) as number | undefined);
      if (handle === undefined) return;
      const last = await result(segments.openKeyCursor(rowsOf(handle), "prev"));
      const lastSegment = last === null ? 0 : (last.key as RowKey)[1];
      places.place(group, handle, lastSegment + 1);
      keys.rememberWriter(group.fiberId, handle, group.generation, lastSegment + 1);
    }),
  );
}

/**
 * Issues one group's row writes (journal segment, snapshot, chunks): no promise per request; a
 * failing request aborts the transaction, and the caller rejects with its error. A group whose
 * fiber has no handle writes no rows: its fence fails before the commit.
 */
function writeRows(
  tx: IDBTransaction,
  group: WriteGroup,
  keys: FiberKeys,
  places: RowPlaces,
  folds: Fold[],
  recordRead: boolean,
): void {
  if (group.snapshot !== undefined) writeStash(tx, group);
  const handle = places.handles.get(group.fiberId);
  if (handle === undefined) return;
  if (journalWritten(group)) {
    const journal = tx.objectStore("journalSegments");
    if (group.clearJournal === true) {
      journal.delete(rowsOf(handle));
      // A fold read before this delete (an earlier group of the fiber in this commit) would put
      // the cleared rows back.
      for (let i = folds.length - 1; i >= 0; i--) if (folds[i]?.handle === handle) folds.splice(i, 1);
    }
    if ((group.journal?.length ?? 0) > 0) {
      const row = encodeSegment(group.journal ?? []);
      const segment = places.takeSegment(group, handle, keys);
      // `add`, not `put`: a segment another store wrote under the same generation (two contexts
      // writing one fiber, as the continuity mirror of an old and a new worker can) collides and
      // aborts the commit, which then reads the last segment from disk, instead of replacing it.
      journal.add(row, [handle, segment]);
      const every = keys.foldEvery;
      if (every > 1) {
        // Fold ranges are [1, every], [every + 1, 2 * every]...; weighed as stored, like the
        // rows read back (an entry object, with its fiber id and field names, counts ~5x more).
        const from = segment - ((segment - 1) % every);
        const weight = keys.weigh(group, from, segment, estimateSize(row, FOLD_MAX_BYTES + 1));
        // A fold puts back the fence rows it deletes, from the record (`FiberKeys.fenceless`
        // reads it for such a segment; a later group of a fenceless writer in the same commit
        // leaves this range unfolded).
        if (segment % every === 0 && weight !== "over" && recordRead) {
          folds.push(readFold(journal, group.fiberId, handle, from, segment, weight === "under"));
        }
      }
    }
  }
  if ((group.chunks?.length ?? 0) > 0) {
    const chunks = tx.objectStore("streamChunks");
    for (const chunk of group.chunks ?? []) chunks.put(encodeChunk(chunk), [handle, chunk.seq]);
  }
}

/**
 * A fold of one fiber's journal segments `[from, to]` into one row at `to`, so a long journal
 * is read back as a few large rows holding each position once, instead of one row per commit
 * holding every `started` entry its `completed` one superseded. Read in the commit's own
 * transaction, issued with its fence reads (no round trip of its own); written before it commits.
 */
interface Fold {
  fiberId: string;
  handle: number;
  from: number;
  to: number;
  /** Whether this store wrote and weighed every row of the range: they need no weighing again. */
  weighed: boolean;
  segments: Promise<SegmentRow[]>;
}

function readFold(
  journal: IDBObjectStore,
  fiberId: string,
  handle: number,
  from: number,
  to: number,
  weighed: boolean,
): Fold {
  const segments = result(
    journal.getAll(IDBKeyRange.bound([handle, from], [handle, to])) as IDBRequest<SegmentRow[]>,
  );
  // A fence that fails aborts the transaction before the fold is awaited.
  segments.catch(() => undefined);
  return { fiberId, handle, from, to, weighed, segments };
}

/**
 * Replaces the rows of `fold` by their fold. Segment keys only grow and a later segment replaces
 * an earlier entry at the same position, so the rows of `[from, to]` read in key order (the
 * segment just written, `to`, among them) fold to one row that stands for all of them at `to`:
 * every row written before has a lower key, every row written later a higher one, and the
 * highest key on disk stays where it was (a writer that learns the next segment from disk goes
 * on after it). Rows missing from the range (never written after a restart from scratch, or by
 * a commit that failed) change nothing.
 */
function writeFold(tx: IDBTransaction, fold: Fold, segments: SegmentRow[], fences: readonly Fence[]): void {
  // Large rows gain little from a fold (a row's overhead is small next to its bytes) and would
  // be rewritten whole: those stay as they are (weighed here unless the writes were).
  if (segments.length < 2) return;
  if (!fold.weighed && estimateSize(segments, FOLD_MAX_BYTES) > FOLD_MAX_BYTES) return;
  const journal = tx.objectStore("journalSegments");
  const entries = foldSegments(fold.fiberId, segments);
  journal.delete(IDBKeyRange.bound([fold.handle, fold.from], [fold.handle, fold.to], false, true));
  journal.put(encodeSegment(entries), [fold.handle, fold.to]);
  for (const [segment, at] of fences) {
    if (segment >= fold.from && segment < fold.to) journal.put(fenceRow(at), [fold.handle, segment]);
  }
}

/** Marks the buffered events the groups consumed (read in the same transaction). */
function consumeEvents(
  tx: IDBTransaction,
  consumed: Array<{ group: WriteGroup; seq: number; consumedBy: number | null }>,
  rows: Array<InboxRow | undefined>,
): void {
  const inbox = tx.objectStore("inboxEvents");
  consumed.forEach((c, i) => {
    const row = rows[i];
    if (row === undefined) return;
    inbox.put(withConsumer(row, c.consumedBy), [c.group.fiberId, c.seq]);
  });
}

/**
 * A record as the engine sees it: without the store's handle, with its input (`input`, read from
 * the `inputs` store, unless the record still carries its own: see `StoredFiber.input`).
 */
export function publicRecord(stored: StoredFiber, input: unknown): FiberRecord {
  const { handle: _handle, fences: _fences, ...record } = stored;
  return hasInlineInput(stored) ? (record as FiberRecord) : { ...record, input };
}

/** `record` as `IdbStore` stores it: with its handle, and without its input (`inputs` keeps it). */
export function storedRecord(record: FiberRecord, handle: number): StoredFiber {
  const { input: _input, ...rest } = record;
  return { ...rest, handle };
}
