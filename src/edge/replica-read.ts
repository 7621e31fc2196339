/**
 * Reading a replica for a browser that mirrors it (docs/design/continuity.md, "Handoff back"):
 * `readReplica`, the one reader behind `GET {prefix}/fibers/:id/replica` and the simulator's
 * mirror source, and `readReplicaWhenChanged`, the same read held until the replica has something
 * the mirror lacks (the route's `wait`).
 *
 * A read without a cursor answers the whole replica (record, journal, snapshot, inbox) with the
 * chunks past `after`: the first read of a mirror, a hand-back, an old client. Every answer carries
 * a `cursor` naming the state it described; a mirror that applied the answer sends it back and
 * gets a delta: only the parts that changed since, and the journal from the first entry that could
 * have (entries a run settled never change within its epoch: every later one is resent). A part
 * is compared by a 53-bit hash of its encoded value, so the edge still reads the whole replica per
 * answer; only the wire carries less. A cursor this reader cannot use (another version, a replica
 * restarted from scratch) gets the whole answer again.
 */

import type { FiberRecord, InboxEvent, JournalEntry, SnapshotRecord, StreamChunk } from "../core/records";
import type { Store } from "../core/store";
import { encodeValue } from "./value-codec";

/** The whole replica: what `GET .../replica?after=N` answers without a cursor. */
export interface ReplicaSnapshot {
  /** Absent in answers of an edge from before cursors. */
  type?: "full";
  record: FiberRecord;
  journal: JournalEntry[];
  snapshot: SnapshotRecord | undefined;
  inbox: InboxEvent[];
  /** Chunks with `seq > after`. */
  chunks: StreamChunk[];
  /** Names the state this answer describes, for the next read (absent from an older edge). */
  cursor?: string;
}

/** What changed since the state the request's cursor named (`GET .../replica?cursor=`). */
export interface ReplicaDelta {
  type: "delta";
  /** The record, when any field a mirror copies changed. */
  record?: FiberRecord;
  /**
   * The journal from `from` on, when it changed: `from: 0` replaces the whole journal, otherwise
   * `entries` replace the mirror's entries at the same `pos` and those below `from` stay.
   */
  journal?: { from: number; entries: JournalEntry[] };
  /** The snapshot, when it changed (`null`: there is none any more). */
  snapshot?: SnapshotRecord | null;
  /** The whole inbox, when anything in it changed (an event added, consumed or released). */
  inbox?: InboxEvent[];
  /** Chunks with `seq > after`. */
  chunks: StreamChunk[];
  cursor: string;
}

/** An answer of `GET .../replica`. */
export type ReplicaAnswer = ReplicaSnapshot | ReplicaDelta;

/** How a mirror asks for a replica beyond `after`. */
export interface ReplicaReadOptions {
  /** The `cursor` of the last answer the mirror applied: only what changed since comes back. */
  cursor?: string;
  /** With a cursor: hold the read up to this long (ms) until something changed (capped). */
  waitMs?: number;
  /** Cuts a held read short (the answer is then the one at that moment, or a rejection). */
  signal?: AbortSignal;
}

/** The longest the edge holds a read (25 s): below the 30 s a browser lets an idle worker live. */
export const MAX_REPLICA_WAIT_MS = 25_000;

/** Tells a held read of a fiber's replica that it was written. */
export interface ReplicaWrites {
  /** Resolves at the next write of `fiberId` after this call; `cancel` stops watching. */
  nextWrite(fiberId: string): { written: Promise<void>; cancel(): void };
}

const CURSOR_VERSION = "1";

/**
 * The replica of `fiberId` in `store` with its chunks past `after`, or `undefined` when `store`
 * holds no replica of it (no fiber, or one that is not replicated). With `cursor` (an earlier
 * answer's), a `ReplicaDelta` against the state it named; a cursor it cannot use gets the whole.
 * The reads are issued together: on `SqliteStore` (synchronous SQLite) they see one state.
 */
export async function readReplica(
  store: Store,
  fiberId: string,
  after: number,
): Promise<ReplicaSnapshot | undefined>;
export async function readReplica(
  store: Store,
  fiberId: string,
  after: number,
  cursor: string | undefined,
): Promise<ReplicaAnswer | undefined>;
export async function readReplica(
  store: Store,
  fiberId: string,
  after: number,
  cursor?: string,
): Promise<ReplicaAnswer | undefined> {
  const [record, journal, snapshot, inbox, chunks] = await Promise.all([
    store.getFiber(fiberId),
    store.readJournal(fiberId),
    store.readSnapshot(fiberId),
    store.readInbox(fiberId),
    store.readStream(fiberId, after),
  ]);
  if (record?.home === undefined) return undefined;
  const entries = journal.map(hashOf);
  const state = describe(record, journal, entries, snapshot, inbox);
  const held = cursor === undefined ? undefined : parseCursor(cursor);
  if (held === undefined || held.epoch !== record.epoch || journal.length < held.count)
    return { type: "full", record, journal, snapshot, inbox, chunks, cursor: state.cursor };
  const delta: ReplicaDelta = { type: "delta", chunks, cursor: state.cursor };
  if (state.record !== held.record) delta.record = record;
  if (!isSettledPrefix(journal, held.settled) || hashOfList(entries.slice(0, held.settled)) !== held.prefix)
    delta.journal = { from: 0, entries: journal };
  else if (hashOfList(entries.slice(held.settled)) !== held.tail)
    delta.journal = { from: held.settled, entries: journal.slice(held.settled) };
  if (state.snapshot !== held.snapshot) delta.snapshot = snapshot ?? null;
  if (state.inbox !== held.inbox) delta.inbox = inbox;
  return delta;
}

/**
 * `readReplica` with a cursor, held until the replica has something the cursor's state lacks, or
 * `waitMs` (at most `MAX_REPLICA_WAIT_MS`) passed, or `signal` aborted: then the answer says
 * nothing is new. A write that changes nothing a mirror copies (a claim's lease) keeps it held.
 * Without a cursor, or with no `waitMs`, it answers at once.
 */
export async function readReplicaWhenChanged(
  store: Store,
  writes: ReplicaWrites,
  fiberId: string,
  after: number,
  { cursor, waitMs = 0, signal }: ReplicaReadOptions = {},
): Promise<ReplicaAnswer | undefined> {
  return readUntil(
    writes,
    fiberId,
    Math.min(Math.max(0, waitMs), MAX_REPLICA_WAIT_MS),
    () => readReplica(store, fiberId, after, cursor),
    (answer) => cursor === undefined || answer === undefined || !isNothingNew(answer),
    signal,
  );
}

/**
 * Reads with `read` until `done` accepts what it read, reading again after each write that names
 * `fiberId`, for at most `waitMs` (or until `signal` aborts); then resolves with the last read.
 */
export async function readUntil<T>(
  writes: ReplicaWrites,
  fiberId: string,
  waitMs: number,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  signal?: AbortSignal,
): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    // Watched before reading: a write between the read and the wait still wakes it.
    const watch = writes.nextWrite(fiberId);
    try {
      const value = await read();
      const left = deadline - Date.now();
      if (done(value) || left <= 0) return value;
      if (!(await written(watch.written, left, signal))) return value;
    } finally {
      watch.cancel();
    }
  }
}

/** Whether `answer` is a delta with nothing in it (the mirror holds the replica as it is). */
export function isNothingNew(answer: ReplicaAnswer): boolean {
  return (
    answer.type === "delta" &&
    answer.chunks.length === 0 &&
    answer.record === undefined &&
    answer.journal === undefined &&
    answer.snapshot === undefined &&
    answer.inbox === undefined
  );
}

/** Resolves `true` once `write` settles, `false` after `ms` or when `signal` aborts. */
function written(write: Promise<void>, ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const done = (value: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", aborted);
      resolve(value);
    };
    const aborted = () => done(false);
    const timer = setTimeout(() => done(false), ms);
    signal?.addEventListener("abort", aborted, { once: true });
    write.then(() => done(true));
  });
}

/** The parts of one replica state, each as the hash the cursor keeps. */
interface ReplicaState {
  record: string;
  snapshot: string;
  inbox: string;
  cursor: string;
}

/** What a cursor says the mirror holds. */
interface HeldState {
  epoch: number;
  /** Journal entries at pos 0..settled-1, all settled: they do not change within the epoch. */
  settled: number;
  /** How many journal entries there were. */
  count: number;
  prefix: string;
  tail: string;
  record: string;
  snapshot: string;
  inbox: string;
}

function describe(
  record: FiberRecord,
  journal: readonly JournalEntry[],
  entries: readonly string[],
  snapshot: SnapshotRecord | undefined,
  inbox: readonly InboxEvent[],
): ReplicaState {
  let settled = 0;
  while (isSettledAt(journal[settled], settled)) settled++;
  // What a claim or its renewal changes is the replica's own business, not the mirror's.
  const { generation: _g, owner: _o, leaseUntil: _l, streamHead: _s, ...copied } = record;
  const state = {
    record: hashOf(copied),
    snapshot: hashOf(snapshot ?? null),
    inbox: hashOf(inbox),
  };
  const parts = [
    CURSOR_VERSION,
    record.epoch,
    settled,
    journal.length,
    hashOfList(entries.slice(0, settled)),
    hashOfList(entries.slice(settled)),
    state.record,
    state.snapshot,
    state.inbox,
  ];
  return { ...state, cursor: parts.join(".") };
}

function parseCursor(cursor: string): HeldState | undefined {
  const parts = cursor.split(".");
  if (parts.length !== 9 || parts[0] !== CURSOR_VERSION) return undefined;
  const [, epoch, settled, count, prefix, tail, record, snapshot, inbox] = parts as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const numbers = [epoch, settled, count].map(Number);
  if (!numbers.every((n) => Number.isSafeInteger(n) && n >= 0)) return undefined;
  const [e, s, c] = numbers as [number, number, number];
  if (s > c) return undefined;
  return { epoch: e, settled: s, count: c, prefix, tail, record, snapshot, inbox };
}

function isSettledAt(entry: JournalEntry | undefined, pos: number): boolean {
  return entry !== undefined && entry.pos === pos && entry.status !== "started";
}

/** Whether the first `count` entries are at pos 0..count-1 and settled. */
function isSettledPrefix(journal: readonly JournalEntry[], count: number): boolean {
  for (let i = 0; i < count; i++) if (!isSettledAt(journal[i], i)) return false;
  return true;
}

/** The hash of a list of hashes (a journal's entries, each hashed once per read). */
function hashOfList(hashes: readonly string[]): string {
  return hashText(hashes.join(","));
}

/** The hash of a value's encoding (`encodeValue`). */
function hashOf(value: unknown): string {
  return hashText(encodeValue(value));
}

/** A 53-bit hash (cyrb53) of `text`, in base 36. */
function hashText(text: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}
