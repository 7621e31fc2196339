/**
 * How `IdbStore` lays out per-fiber rows on disk (schema v3), and how it reads them back.
 *
 * Journal and stream rows are keyed `[handle, n]`, where `handle` is a small integer given to the
 * fiber when it is created: IndexedDB encodes key strings as UTF-16, so a UUID in every key cost
 * ~75 bytes a row. (Buffered events, few, stay keyed `[fiberId, seq]`.) Values leave out what the
 * key already says (`fiberId`) and are tuples rather than objects, so V8's serializer writes no
 * field names.
 *
 * The journal is append-only: each commit writes one row per fiber (a *segment*) holding the
 * entries of that commit, and `foldSegments` replays segments in key order, a later entry
 * replacing an earlier one at the same `pos`. A sequential step therefore costs one put (its
 * `started` entry rides with the previous step's `completed` one), nothing is overwritten in
 * place, and the superseded `started` entries (a few dozen bytes each) stay until the fiber is
 * deleted or restarted from scratch (`clearJournal`).
 *
 * The tuples are an internal format: the engine and other stores only see `JournalEntry`,
 * `StreamChunk` and `InboxEvent`. Changing them means a schema step in `idb-database.ts`.
 */

import type { SerializedError } from "../core/errors";
import type {
  InboxEvent,
  JournalEntry,
  JournalKind,
  ResumePoint,
  SnapshotRecord,
  StreamChunk,
} from "../core/records";

const KINDS: readonly JournalKind[] = ["step", "sleep", "event", "now", "random", "uuid"];
const STATUSES: readonly JournalEntry["status"][] = ["started", "completed", "failed"];

/**
 * A journal entry as stored: `[pos, meta, key, startedAt, duration, error, dueAt, streamFrom,
 * result]`, absent fields `null` (a step's result, the only field that may itself be `null`, is
 * last: absent when the row is shorter). `meta` packs status, kind and attempt into one small
 * integer (`status + 3 * kind + 18 * attempt`, indexes into the lists above), or is `[kind,
 * status, attempt]` for values outside them, `[kind, status, attempt, settled, calls, emits]`
 * with a settle order (`JournalEntry.order`; rows written before it have three members); `duration` is `endedAt - startedAt` when both are
 * whole numbers (a few bytes instead of an 8-byte double), else `[endedAt]`.
 *
 * In a segment (schema v5) `startedAt` is relative to the segment's time base, its first member
 * (a whole number), or `[startedAt]` when not a whole number: a timestamp is an 8-byte double
 * while the distance between two entries of one commit fits in a byte or two. Segments written
 * before v5 have no base (their first member is a row) and absolute `startedAt`s.
 */
export type EntryRow = unknown[];

/** A journal segment as stored: `[base, ...rows]` (v5), or `[...rows]` (written before v5). */
export type SegmentRow = unknown[];

/**
 * A stream chunk as stored: `[type, data, at, step, ordinal]`, absent `step` `null`, trailing
 * absent fields cut off. Its `seq` is the second part of its key. Rows written before schema v5
 * begin with the `seq` (`[seq, type, data, at, step, ordinal]`); a chunk's type is a string, so the
 * first member tells the two apart.
 */
export type ChunkRow = unknown[];

/** A buffered event as stored (the key holds the fiber; `seq` stays in the value for readers). */
export interface InboxRow {
  seq: number;
  name: string;
  payload: unknown;
  at: number;
  consumedBy?: number;
  /** The id another home gave the event (continuity: an event the edge pushed); absent otherwise. */
  eventId?: string;
}

/** The entries of one commit, in the order written, one per `pos` (the last one wins). */
export function encodeSegment(entries: readonly JournalEntry[]): SegmentRow {
  const first = entries[0] as JournalEntry;
  const base = Number.isInteger(first.startedAt) ? first.startedAt : 0;
  if (entries.length === 1) return [base, encodeEntry(first, base)];
  const last = new Map<number, JournalEntry>();
  for (const entry of entries) {
    last.delete(entry.pos);
    last.set(entry.pos, entry);
  }
  const segment: SegmentRow = [base];
  for (const entry of last.values()) segment.push(encodeEntry(entry, base));
  return segment;
}

function encodeEntry(entry: JournalEntry, base: number): EntryRow {
  const row = [
    entry.pos,
    encodeMeta(entry),
    entry.key,
    Number.isInteger(entry.startedAt) ? entry.startedAt - base : [entry.startedAt],
    encodeDuration(entry.startedAt, entry.endedAt),
    entry.error ?? null,
    entry.dueAt ?? null,
    entry.streamFrom ?? null,
  ];
  if (entry.result !== undefined) return [...row, entry.result];
  let length = row.length;
  while (length > 4 && row[length - 1] === null) length--;
  return length === row.length ? row : row.slice(0, length);
}

function encodeMeta({ kind, status, attempt, order }: JournalEntry): number | unknown[] {
  // The settle order (rare: only operations that ran concurrently) rides in the long form.
  if (order !== undefined) return [kind, status, attempt, order.settled, order.calls, order.emits];
  const k = KINDS.indexOf(kind);
  const st = STATUSES.indexOf(status);
  if (k === -1 || st === -1 || !Number.isSafeInteger(attempt) || attempt < 0) return [kind, status, attempt];
  return st + STATUSES.length * k + STATUSES.length * KINDS.length * attempt;
}

function encodeDuration(startedAt: number, endedAt: number | undefined): number | [number] | null {
  if (endedAt === undefined) return null;
  return Number.isInteger(startedAt) && Number.isInteger(endedAt) ? endedAt - startedAt : [endedAt];
}

/**
 * The journal of `fiberId` from its segments in key order: the last entry written at each `pos`,
 * ordered by `pos`. Only the surviving entries are decoded.
 *
 * A run takes positions from 0 up, so they index plain arrays, and when they are every index
 * from 0 (a run's journal always is) they come out in order with no sort: a long journal (10,000
 * steps, each written twice, `started` then settled) folds without a map entry per row. Positions
 * that are not array indexes (no engine writes them) fold through a map.
 */
export function foldSegments(fiberId: string, segments: readonly SegmentRow[]): JournalEntry[] {
  const rows: EntryRow[] = [];
  const bases: Array<number | undefined> = [];
  /** Each index position once. */
  const positions: number[] = [];
  let odd: Map<number, [EntryRow, number | undefined]> | undefined;
  const keep = (row: EntryRow, base: number | undefined) => {
    const pos = row[0] as number;
    if (Number.isInteger(pos) && pos >= 0 && pos <= MAX_INDEX) {
      if (rows[pos] === undefined) positions.push(pos);
      rows[pos] = row;
      bases[pos] = base;
    } else {
      odd ??= new Map();
      odd.set(pos, [row, base]);
    }
  };
  for (const segment of segments) {
    const base = segment[0];
    if (typeof base === "number") {
      for (let i = 1; i < segment.length; i++) keep(segment[i] as EntryRow, base);
    } else {
      // Written before v5: absolute times.
      for (const row of segment as EntryRow[]) keep(row, undefined);
    }
  }
  const journal: JournalEntry[] = [];
  if (positions.length === rows.length) {
    for (let pos = 0; pos < rows.length; pos++) {
      journal.push(decodeEntry(fiberId, rows[pos] as EntryRow, bases[pos]));
    }
  } else {
    // Gaps (a foreign or damaged journal): walk the positions held, not every index below them.
    for (const pos of positions.sort((x, y) => x - y)) {
      journal.push(decodeEntry(fiberId, rows[pos] as EntryRow, bases[pos]));
    }
  }
  if (odd === undefined) return journal;
  for (const [row, base] of odd.values()) journal.push(decodeEntry(fiberId, row, base));
  return journal.sort((x, y) => x.pos - y.pos);
}

/** The highest array index. */
const MAX_INDEX = 2 ** 32 - 2;

/** One entry; `base` is its segment's time base (v5), `undefined` for a row with absolute times. */
function decodeEntry(fiberId: string, row: EntryRow, base: number | undefined): JournalEntry {
  const [pos, meta, key, stored, duration, error, dueAt, streamFrom, result] = row;
  const startedAt =
    base === undefined
      ? (stored as number)
      : Array.isArray(stored)
        ? (stored[0] as number)
        : base + (stored as number);
  let kind: unknown;
  let status: unknown;
  let attempt: unknown;
  let settled: unknown;
  let calls: unknown;
  let emits: unknown;
  if (typeof meta === "number") {
    status = STATUSES[meta % STATUSES.length];
    kind = KINDS[Math.floor(meta / STATUSES.length) % KINDS.length];
    attempt = Math.floor(meta / (STATUSES.length * KINDS.length));
  } else {
    [kind, status, attempt, settled, calls, emits] = meta as unknown[];
  }
  const entry: JournalEntry = {
    fiberId,
    pos: pos as number,
    kind: kind as JournalKind,
    key: key as string,
    status: status as JournalEntry["status"],
    attempt: attempt as number,
    startedAt,
  };
  if (typeof duration === "number") entry.endedAt = startedAt + duration;
  else if (Array.isArray(duration)) entry.endedAt = duration[0] as number;
  if (row.length > 8) entry.result = result;
  if (error !== undefined && error !== null) entry.error = error as SerializedError;
  if (dueAt !== undefined && dueAt !== null) entry.dueAt = dueAt as number;
  if (streamFrom !== undefined && streamFrom !== null) entry.streamFrom = streamFrom as number;
  if (typeof settled === "number") {
    entry.order = { settled, calls: calls as number, emits: emits as number };
  }
  return entry;
}

export function encodeChunk(chunk: StreamChunk): ChunkRow {
  if (chunk.ordinal !== undefined)
    return [chunk.type, chunk.data, chunk.at, chunk.step ?? null, chunk.ordinal];
  if (chunk.step !== undefined) return [chunk.type, chunk.data, chunk.at, chunk.step];
  return [chunk.type, chunk.data, chunk.at];
}

/** The chunk at `seq` (the second part of its key) from its row, in either layout. */
export function decodeChunk(fiberId: string, seq: number, row: ChunkRow): StreamChunk {
  const fields = typeof row[0] === "number" ? row.slice(1) : row;
  const [type, data, at, step, ordinal] = fields;
  const chunk: StreamChunk = { fiberId, seq, type: type as string, data, at: at as number };
  if (step !== undefined && step !== null) chunk.step = step as number;
  if (ordinal !== undefined) chunk.ordinal = ordinal as number;
  return chunk;
}

export function encodeInboxEvent(event: InboxEvent): InboxRow {
  const row: InboxRow = { seq: event.seq, name: event.name, payload: event.payload, at: event.at };
  if (event.consumedBy !== undefined) row.consumedBy = event.consumedBy;
  if (event.eventId !== undefined) row.eventId = event.eventId;
  return row;
}

/** The key range of one fiber's buffered events (`[fiberId, seq]`), or of those past `after`. */
export function inboxOf(fiberId: string, after?: number): IDBKeyRange {
  return IDBKeyRange.bound(
    [fiberId, after ?? Number.NEGATIVE_INFINITY],
    [fiberId, Number.POSITIVE_INFINITY],
    after !== undefined,
  );
}

export function decodeInboxEvent(fiberId: string, row: InboxRow): InboxEvent {
  return { fiberId, ...row };
}

/**
 * A fiber's stash row (schema v3), keyed `[fiberId, generation]` in `stashes`, whose unique index
 * on `fiber` makes the row its own fence: every fiber has exactly one row, at the generation of
 * its record (created with the fiber, moved by each claim), so a stash put under any other
 * generation collides with it and fails in IndexedDB itself, without a read first. `at` is
 * absent while the fiber has no snapshot (a stashed `undefined` still has its `at`).
 */
export interface StashRow {
  fiber: string;
  value?: unknown;
  at?: number;
  /** `SnapshotRecord.ordinal`, when the snapshot has one. */
  ordinal?: number;
  /** `SnapshotRecord.resume`, when the snapshot has one. */
  resume?: ResumePoint;
}

/** The row that stands for "no snapshot": it still holds the fiber's place in the index. */
export function emptyStash(fiberId: string): StashRow {
  return { fiber: fiberId };
}

/** The row of `snapshot`, or of no snapshot for `null`. */
export function encodeStash(fiberId: string, snapshot: SnapshotRecord | null): StashRow {
  if (snapshot === null) return emptyStash(fiberId);
  const row: StashRow = { fiber: fiberId, value: snapshot.value, at: snapshot.at };
  if (snapshot.ordinal !== undefined) row.ordinal = snapshot.ordinal;
  if (snapshot.resume !== undefined) row.resume = snapshot.resume;
  return row;
}

export function decodeStash(row: StashRow | undefined): SnapshotRecord | undefined {
  if (row?.at === undefined) return undefined;
  const snapshot: SnapshotRecord = { fiberId: row.fiber, value: row.value, at: row.at };
  if (row.ordinal !== undefined) snapshot.ordinal = row.ordinal;
  if (row.resume !== undefined) snapshot.resume = row.resume;
  return snapshot;
}

/**
 * Where a deleted fiber's stash tombstone stands: `[fiberId, -(generation + 1)]`, below every
 * key a writer uses (generations start at 0, and IndexedDB compares -0 equal to 0) and apart from
 * the tombstone of any other fiber of the id (a fiber created again starts above every generation
 * the id reached). Its row is `emptyStash`, so that a stash of the deleted fiber, under any
 * generation, collides on the unique index.
 */
export function stashTombstoneKey(fiberId: string, generation: number): [string, number] {
  return [fiberId, -(generation + 1)];
}

/**
 * The key range of a fiber's stash rows that writers put (its own, or an orphan), without its
 * tombstone (`stashTombstoneKey`): a deletion of an id already deleted keeps the tombstone.
 */
export function writtenStashesOf(fiberId: string): IDBKeyRange {
  return IDBKeyRange.bound([fiberId, 0], [fiberId, Number.POSITIVE_INFINITY]);
}

/**
 * The key range of all stash rows of one fiber id: its own, or an orphan awaiting its cleanup, or
 * the tombstone of a deleted fiber of the id (one of them, by the unique index).
 */
export function stashesOf(fiberId: string): IDBKeyRange {
  return IDBKeyRange.bound([fiberId, Number.NEGATIVE_INFINITY], [fiberId, Number.POSITIVE_INFINITY]);
}
