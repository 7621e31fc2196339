/**
 * `MemoryStore`: the `Store` contract held in plain maps, for tests and ephemeral hosts.
 *
 * It behaves like `IdbStore` where a caller could tell the difference: values are structured-cloned
 * (`cloneValue`) on the way in and out, keys must be valid IndexedDB keys, idempotency keys are unique, and each
 * method validates everything before it changes anything.
 */

import type { FiberRecord, InboxEvent, JournalEntry, SnapshotRecord, StreamChunk } from "../core/records";
import type {
  ClaimRequest,
  ClaimResult,
  CommitResult,
  CreateResult,
  DeleteOptions,
  FiberQuery,
  Store,
  StreamAndRecord,
  WriteGroup,
} from "../core/store";
import { cloneValue } from "./clone";
import {
  aboveGenerationFloor,
  assertTakesEvents,
  continueStream,
  decideClaim,
  deletable,
  dueForEvent,
  dueForInbox,
  effectiveLimit,
  finishListing,
  inboxSeenError,
  mergeFiberPatch,
  queriedStatuses,
  raiseGenerationFloor,
  storeClosedError,
  suspensionsOf,
  toStoreError,
  withConsumer,
} from "./fiber-rules";

/** Per-fiber rows keyed by a number (journal `pos`, stream `seq`, inbox `seq`). */
type Rows<T> = Map<string, Map<number, T>>;

/**
 * A `Store` in memory: nothing survives the process, everything else matches `IdbStore`.
 *
 * Failure semantics: every method is atomic. Inputs are cloned and validated first (a value that
 * is not structured-cloneable, an invalid key or a duplicate idempotency key rejects with
 * `store_error` and writes nothing); only then is state changed. After `close()` every call
 * rejects with `store_closed`.
 *
 * `clock` is the store's own time, for when an event makes a waiting fiber due (`dueForEvent`,
 * `dueForInbox`): `Date.now` unless a test or a simulation gives the store a host clock of its
 * own (the edge's, set apart from the browser's).
 *
 * @example
 * const runtime = createRuntime({ store: new MemoryStore(), fibers: [research] });
 */
export class MemoryStore implements Store {
  readonly kind = "memory";
  readonly #clock: () => number;
  #fibers = new Map<string, FiberRecord>();
  #journals: Rows<JournalEntry> = new Map();
  #snapshots = new Map<string, SnapshotRecord>();
  #streams: Rows<StreamChunk> = new Map();
  #inboxes: Rows<InboxEvent> = new Map();
  #closed = false;
  /** The highest generation a deleted fiber reached (`aboveGenerationFloor`). */
  #generationFloor: number | undefined;

  constructor(options: { clock?: () => number } = {}) {
    this.#clock = options.clock ?? Date.now;
  }

  async getFiber(id: string): Promise<FiberRecord | undefined> {
    this.#assertOpen();
    return cloneOut(this.#fibers.get(id));
  }

  async findByIdempotencyKey(key: string): Promise<FiberRecord | undefined> {
    this.#assertOpen();
    return cloneOut(this.#byIdempotencyKey(key));
  }

  async listFibers(query?: FiberQuery): Promise<FiberRecord[]> {
    this.#assertOpen();
    const statuses = queriedStatuses(query);
    const records = [...this.#fibers.values()].filter(
      (r) => statuses === undefined || statuses.includes(r.status),
    );
    return cloneValue(finishListing(records, query));
  }

  async readJournal(fiberId: string): Promise<JournalEntry[]> {
    this.#assertOpen();
    return cloneValue(sortedRows(this.#journals.get(fiberId)));
  }

  async readSnapshot(fiberId: string): Promise<SnapshotRecord | undefined> {
    this.#assertOpen();
    return cloneOut(this.#snapshots.get(fiberId));
  }

  async readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]> {
    this.#assertOpen();
    return cloneValue(this.#chunksAfter(fiberId, after, limit));
  }

  async readStreamAndRecord(fiberId: string, after: number, limit?: number): Promise<StreamAndRecord> {
    this.#assertOpen();
    return {
      chunks: cloneValue(this.#chunksAfter(fiberId, after, limit)),
      record: cloneOut(this.#fibers.get(fiberId)),
    };
  }

  #chunksAfter(fiberId: string, after: number, limit?: number): StreamChunk[] {
    const max = effectiveLimit(limit);
    const chunks = sortedRows(this.#streams.get(fiberId)).filter((chunk) => chunk.seq > after);
    return max === undefined ? chunks : chunks.slice(0, max);
  }

  async readInbox(fiberId: string): Promise<InboxEvent[]> {
    this.#assertOpen();
    return cloneValue(sortedRows(this.#inboxes.get(fiberId)));
  }

  async createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    this.#assertOpen();
    const [cloned, storedChunks] = cloneIn("createFiber", [record, chunks] as const);
    const stored = aboveGenerationFloor(cloned, this.#generationFloor);
    requireKey("createFiber", "fiber id", stored.id);
    for (const chunk of storedChunks) requireKeys("createFiber", "stream chunk", chunk.fiberId, chunk.seq);
    const existing =
      this.#fibers.get(stored.id) ??
      (stored.idempotencyKey === undefined ? undefined : this.#byIdempotencyKey(stored.idempotencyKey));
    if (existing !== undefined) return { status: "exists", record: cloneValue(existing) };
    this.#fibers.set(stored.id, stored);
    for (const chunk of storedChunks) rowsOf(this.#streams, chunk.fiberId).set(chunk.seq, chunk);
    return { status: "created", record: cloneValue(stored) };
  }

  async claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    this.#assertOpen();
    const result = decideClaim(this.#fibers.get(id), request);
    if (result.status === "claimed") this.#fibers.set(id, result.record);
    return result.status === "missing"
      ? result
      : { status: result.status, record: cloneValue(result.record) };
  }

  async commit(groups: WriteGroup[]): Promise<CommitResult> {
    this.#assertOpen();
    // Decide every fence, clone and merge every patch before touching state, as one transaction
    // would; a fenced group's values are never read (IndexedDB never clones them either).
    const records = new Map<string, FiberRecord>();
    const heads = new Map<string, number>();
    const fenced: string[] = [];
    const applied: WriteGroup[] = [];
    for (const group of groups) {
      const current = records.get(group.fiberId) ?? this.#fibers.get(group.fiberId);
      if (current === undefined || current.generation !== group.generation) {
        if (!fenced.includes(group.fiberId)) fenced.push(group.fiberId);
        continue;
      }
      const staged = cloneIn("commit", group);
      validateGroupKeys(staged);
      const head = heads.get(group.fiberId) ?? this.#fibers.get(group.fiberId)?.streamHead ?? 0;
      const streamHead = continueStream(group.fiberId, head, group.chunks);
      heads.set(group.fiberId, streamHead);
      const merged = staged.fiber === undefined ? current : mergeFiberPatch(current, staged.fiber);
      records.set(group.fiberId, streamHead === merged.streamHead ? merged : { ...merged, streamHead });
      applied.push(staged);
    }
    for (const record of records.values()) this.#assertUniqueIdempotencyKey(record, records);

    for (const [id, record] of records) this.#fibers.set(id, record);
    for (const group of applied) this.#applyGroup(group);
    // Judged on what the whole commit leaves: the fiber's last record and inbox.
    for (const group of suspensionsOf(applied).values()) {
      const record = this.#fibers.get(group.fiberId) as FiberRecord;
      const due = dueForInbox(record, group, this.#inboxes.get(group.fiberId)?.values() ?? [], this.#clock());
      if (due !== undefined) this.#fibers.set(group.fiberId, due);
    }
    return { fenced };
  }

  async enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    this.#assertOpen();
    const { fiberId, name, payload, at, eventId } = cloneIn("enqueueEvent", event);
    const record = this.#fibers.get(fiberId);
    assertTakesEvents(fiberId, record);
    const inbox = rowsOf(this.#inboxes, fiberId);
    if (eventId !== undefined) {
      const held = [...inbox.values()].find((e) => e.eventId === eventId);
      if (held !== undefined) return cloneValue(held);
    }
    const due = dueForEvent(record as FiberRecord, { name, at }, this.#clock());
    if (due !== undefined) this.#fibers.set(fiberId, due);
    let seq = 1;
    for (const taken of inbox.keys()) seq = Math.max(seq, taken + 1);
    const stored: InboxEvent = {
      fiberId,
      seq,
      name,
      payload,
      at,
      ...(eventId === undefined ? {} : { eventId }),
    };
    inbox.set(seq, stored);
    return cloneValue(stored);
  }

  async deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    this.#assertOpen();
    const deleted: string[] = [];
    for (const id of new Set(ids)) {
      const record = this.#fibers.get(id);
      if (record !== undefined) {
        if (!deletable(id, record.generation, options)) continue;
        this.#generationFloor = raiseGenerationFloor(this.#generationFloor, record.generation);
        deleted.push(id);
      }
      this.#fibers.delete(id);
      this.#journals.delete(id);
      this.#snapshots.delete(id);
      this.#streams.delete(id);
      this.#inboxes.delete(id);
    }
    return deleted;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#fibers.clear();
    this.#journals.clear();
    this.#snapshots.clear();
    this.#streams.clear();
    this.#inboxes.clear();
  }

  #applyGroup(group: WriteGroup): void {
    if (group.clearJournal === true) this.#journals.delete(group.fiberId);
    for (const entry of group.journal ?? []) rowsOf(this.#journals, entry.fiberId).set(entry.pos, entry);
    if (group.snapshot === null) this.#snapshots.delete(group.fiberId);
    else if (group.snapshot !== undefined) this.#snapshots.set(group.snapshot.fiberId, group.snapshot);
    for (const chunk of group.chunks ?? []) rowsOf(this.#streams, chunk.fiberId).set(chunk.seq, chunk);
    const inbox = this.#inboxes.get(group.fiberId);
    for (const { seq, consumedBy } of group.consumeEvents ?? []) {
      const event = inbox?.get(seq);
      if (inbox !== undefined && event !== undefined) inbox.set(seq, withConsumer(event, consumedBy));
    }
  }

  #byIdempotencyKey(key: string): FiberRecord | undefined {
    for (const record of this.#fibers.values()) if (record.idempotencyKey === key) return record;
    return undefined;
  }

  /** Mirrors IndexedDB's unique `idempotencyKey` index: a commit may not give two fibers one key. */
  #assertUniqueIdempotencyKey(record: FiberRecord, pending: Map<string, FiberRecord>): void {
    const key = record.idempotencyKey;
    if (key === undefined) return;
    const clash = [...this.#fibers.values(), ...pending.values()].some((other) => {
      const current = pending.get(other.id) ?? other;
      return current.id !== record.id && current.idempotencyKey === key;
    });
    if (clash)
      throw toStoreError("commit", new DOMException(`idempotency key "${key}" is taken`, "ConstraintError"));
  }

  #assertOpen(): void {
    if (this.#closed) throw storeClosedError(this.kind);
  }
}

function cloneOut<T>(value: T | undefined): T | undefined {
  return value === undefined ? undefined : cloneValue(value);
}

/** Clones caller input, so later mutation by the caller cannot reach stored state. */
function cloneIn<T>(operation: string, value: T): T {
  try {
    return cloneValue(value);
  } catch (error) {
    throw toStoreError(operation, error);
  }
}

function rowsOf<T>(rows: Rows<T>, fiberId: string): Map<number, T> {
  let map = rows.get(fiberId);
  if (map === undefined) {
    map = new Map();
    rows.set(fiberId, map);
  }
  return map;
}

function sortedRows<T>(rows: Map<number, T> | undefined): T[] {
  if (rows === undefined) return [];
  return [...rows.entries()].sort(([a], [b]) => a - b).map(([, row]) => row);
}

function validateGroupKeys(group: WriteGroup): void {
  for (const entry of group.journal ?? []) requireKeys("commit", "journal entry", entry.fiberId, entry.pos);
  if (group.snapshot) requireKey("commit", "snapshot", group.snapshot.fiberId);
  for (const chunk of group.chunks ?? []) requireKeys("commit", "stream chunk", chunk.fiberId, chunk.seq);
  for (const { seq } of group.consumeEvents ?? [])
    requireKeys("commit", "consumed event", group.fiberId, seq);
  const seen = inboxSeenError(group);
  if (seen !== undefined) throw toStoreError("commit", seen);
}

function requireKeys(operation: string, what: string, fiberId: unknown, position: unknown): void {
  requireKey(operation, what, fiberId);
  requireKey(operation, what, position);
}

/** The subset of IndexedDB key validity the records use: strings and non-NaN numbers. */
function requireKey(operation: string, what: string, key: unknown): void {
  const valid = typeof key === "string" || (typeof key === "number" && !Number.isNaN(key));
  if (!valid) {
    throw toStoreError(
      operation,
      new DOMException(`the ${what} has an invalid key (${String(key)})`, "DataError"),
    );
  }
}
