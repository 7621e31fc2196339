/**
 * `SqliteStore`: the `Store` contract on a Durable Object's synchronous SQLite (`ctx.storage.sql`).
 * Used by the edge host (`createDurableObjectHost`); any code running inside a SQLite-backed
 * Durable Object can use it directly.
 *
 * Each method is one `transactionSync`, so it commits or rolls back as a whole, with no `await`
 * inside. Records are kept as JSON text through `value-codec.ts` (structured-clone fidelity), with
 * the columns queries need (status, name, idempotency key, wake time) beside them.
 */

import { FiberlineError, StoreError } from "../core/errors";
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
import {
  aboveGenerationFloor,
  assertTakesEvents,
  continueStream,
  decideClaim,
  deletable,
  dueForBuffered,
  dueForEvent,
  dueForInbox,
  effectiveLimit,
  finishListing,
  inboxSeenError,
  mergeFiberPatch,
  queriedStatuses,
  raiseGenerationFloor,
  storeClosedError,
  suspends,
  toStoreError,
  withConsumer,
} from "../store/fiber-rules";
import type { DurableObjectStorageLike, SqlStorageLike, SqlValue } from "./platform";
import { migrate, SCHEMA_VERSION } from "./sqlite-schema";
import { decodeValue, encodeValue } from "./value-codec";

type Row = Record<string, SqlValue>;

/**
 * A `Store` on the SQLite storage of a Durable Object.
 *
 * Failure semantics: every method is one synchronous SQLite transaction; a method that rejects
 * wrote nothing. A resolved write is durable once the Durable Object's output gate opens, which
 * happens before any response or outgoing message that could reveal it (Cloudflare's storage
 * guarantees). A value that is not structured-cloneable, an invalid key, a taken idempotency key
 * or a row over Cloudflare's 2 MB limit rejects with `store_error`; after `close()` every call
 * rejects with `store_closed`. The tables (prefix `fiberline_`) live beside the object's own.
 *
 * @example
 * export class Chat extends DurableObject {
 *   store = new SqliteStore(this.ctx.storage);
 * }
 */
export class SqliteStore implements Store {
  readonly kind = "sqlite";
  readonly #storage: DurableObjectStorageLike;
  readonly #sql: SqlStorageLike;
  #closed = false;

  /** Opens the store on `storage` (`ctx.storage`), creating or upgrading its tables. */
  constructor(storage: DurableObjectStorageLike) {
    this.#storage = storage;
    this.#sql = storage.sql;
    this.#transaction("open", () => {
      migrate(this.#sql);
      this.#makeBufferedDue();
    });
  }

  /**
   * Makes due every waiting fiber whose inbox holds an unconsumed event it waits for
   * (`dueForBuffered`), as an earlier release could leave one (it crashed between a suspension
   * and its inbox check); this release's commits do it themselves (`dueForInbox`), and
   * `recover()` reads no inbox. At every open, not once under a flag: an earlier Worker may
   * still open the database (a rollback) and leave one again. Local SQLite, one read per
   * waiting fiber. With no run's `inboxSeen` to go by, it also wakes a fiber for an event its
   * run knew and left (stamped past a wait's deadline by a clock ahead): once per open, until
   * that deadline, each such pick-up suspending it again with what it saw.
   */
  #makeBufferedDue(): void {
    const now = Date.now();
    const waiting = decodeAll<FiberRecord>(
      this.#sql.exec<Row>("SELECT record FROM fiberline_fibers WHERE status = 'waiting'"),
      "record",
    );
    for (const record of waiting) {
      if ((record.waitingFor ?? []).length === 0) continue;
      const due = dueForBuffered(record, this.#inbox(record.id), now);
      if (due !== undefined) this.#updateFiber(due);
    }
  }

  /** The schema version this release writes. */
  static readonly schemaVersion = SCHEMA_VERSION;

  async getFiber(id: string): Promise<FiberRecord | undefined> {
    return this.#read("getFiber", () => this.#fiber(id));
  }

  async findByIdempotencyKey(key: string): Promise<FiberRecord | undefined> {
    return this.#read("findByIdempotencyKey", () =>
      decodeFirst<FiberRecord>(
        this.#sql.exec<Row>("SELECT record FROM fiberline_fibers WHERE idempotency_key = ?", key),
        "record",
      ),
    );
  }

  async listFibers(query?: FiberQuery): Promise<FiberRecord[]> {
    return this.#read("listFibers", () => {
      const statuses = queriedStatuses(query);
      if (statuses?.length === 0 || effectiveLimit(query?.limit) === 0) return [];
      const where: string[] = [];
      const bindings: unknown[] = [];
      if (statuses !== undefined) {
        where.push(`status IN (${statuses.map(() => "?").join(", ")})`);
        bindings.push(...statuses);
      }
      if (query?.name !== undefined) {
        where.push("name = ?");
        bindings.push(query.name);
      }
      const sql = `SELECT record FROM fiberline_fibers${where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""}`;
      const records = decodeAll<FiberRecord>(this.#sql.exec<Row>(sql, ...bindings), "record");
      // The shared rules order and cut, so the listing matches IndexedDB's key order exactly.
      return finishListing(records, query);
    });
  }

  async readJournal(fiberId: string): Promise<JournalEntry[]> {
    return this.#read("readJournal", () =>
      decodeAll<JournalEntry>(
        this.#sql.exec<Row>("SELECT entry FROM fiberline_journal WHERE fiber_id = ? ORDER BY pos", fiberId),
        "entry",
      ),
    );
  }

  async readSnapshot(fiberId: string): Promise<SnapshotRecord | undefined> {
    return this.#read("readSnapshot", () =>
      decodeFirst<SnapshotRecord>(
        this.#sql.exec<Row>("SELECT snapshot FROM fiberline_snapshots WHERE fiber_id = ?", fiberId),
        "snapshot",
      ),
    );
  }

  async readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]> {
    return this.#read("readStream", () => this.#chunksAfter(fiberId, after, limit));
  }

  async readStreamAndRecord(fiberId: string, after: number, limit?: number): Promise<StreamAndRecord> {
    // One synchronous run of statements: nothing else runs in the object between them.
    return this.#read("readStreamAndRecord", () => ({
      chunks: this.#chunksAfter(fiberId, after, limit),
      record: this.#fiber(fiberId),
    }));
  }

  #chunksAfter(fiberId: string, after: number, limit?: number): StreamChunk[] {
    const max = effectiveLimit(limit);
    return decodeAll<StreamChunk>(
      this.#sql.exec<Row>(
        "SELECT chunk FROM fiberline_chunks WHERE fiber_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        fiberId,
        after,
        max ?? -1,
      ),
      "chunk",
    );
  }

  async readInbox(fiberId: string): Promise<InboxEvent[]> {
    return this.#read("readInbox", () => this.#inbox(fiberId));
  }

  async createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    return this.#transaction("createFiber", () => {
      requireKey("fiber id", record?.id);
      const encoded = encodeValue(record);
      const encodedChunks = chunks.map((chunk) => {
        requireKeys("stream chunk", chunk.fiberId, chunk.seq);
        return [chunk.fiberId, chunk.seq, encodeValue(chunk)] as const;
      });
      const existing =
        this.#fiber(record.id) ??
        (record.idempotencyKey === undefined
          ? undefined
          : decodeFirst<FiberRecord>(
              this.#sql.exec<Row>(
                "SELECT record FROM fiberline_fibers WHERE idempotency_key = ?",
                record.idempotencyKey,
              ),
              "record",
            ));
      if (existing !== undefined) return { status: "exists", record: existing };
      const stored = aboveGenerationFloor(decodeValue(encoded) as FiberRecord, this.#generationFloor());
      const storedEncoded =
        stored.generation === record.generation && stored.createdGeneration === record.createdGeneration
          ? encoded
          : encodeValue(stored);
      this.#insertFiber(stored, storedEncoded);
      for (const [fiberId, seq, chunk] of encodedChunks) {
        this.#sql.exec("INSERT OR REPLACE INTO fiberline_chunks VALUES (?, ?, ?)", fiberId, seq, chunk);
      }
      return { status: "created", record: decodeValue(storedEncoded) as FiberRecord };
    });
  }

  async claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    return this.#transaction("claimFiber", () => {
      const result = decideClaim(this.#fiber(id), request);
      if (result.status === "claimed") this.#updateFiber(result.record);
      return result;
    });
  }

  async commit(groups: WriteGroup[]): Promise<CommitResult> {
    return this.#transaction("commit", () => {
      const fenced: string[] = [];
      const heads = new Map<string, number>();
      const suspending = new Map<string, WriteGroup>();
      for (const group of groups) {
        const current = this.#fiber(group.fiberId);
        if (current === undefined || current.generation !== group.generation) {
          if (!fenced.includes(group.fiberId)) fenced.push(group.fiberId);
          continue;
        }
        const head = heads.get(group.fiberId) ?? current.streamHead;
        this.#apply(group);
        // After the rows (whose keys `#apply` checks first); throwing rolls everything back.
        const streamHead = continueStream(group.fiberId, head, group.chunks);
        heads.set(group.fiberId, streamHead);
        // The record is written once, patched and with its stream head, from the one read above.
        const patched = group.fiber === undefined ? current : mergeFiberPatch(current, group.fiber);
        if (group.fiber !== undefined || patched.streamHead !== streamHead)
          this.#updateFiber({ ...patched, streamHead });
        if (suspends(group)) suspending.set(group.fiberId, group);
      }
      // A suspension finds the events stored while its fiber ran, judged on the record and inbox
      // the whole commit leaves (`dueForInbox`).
      const now = Date.now();
      for (const [id, group] of suspending) {
        const record = this.#fiber(id);
        const inbox = this.#inbox(id, group.inboxSeen);
        const due = record === undefined ? undefined : dueForInbox(record, group, inbox, now);
        if (due !== undefined) this.#updateFiber(due);
      }
      return { fenced };
    });
  }

  async enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    return this.#transaction("enqueueEvent", () => {
      const { fiberId, name, payload, at, eventId } = event;
      const record = this.#fiber(fiberId);
      assertTakesEvents(fiberId, record);
      if (eventId !== undefined) {
        const held = this.#inbox(fiberId).find((e) => e.eventId === eventId);
        if (held !== undefined) return held;
      }
      const due = dueForEvent(record as FiberRecord, event, Date.now());
      if (due !== undefined) this.#updateFiber(due);
      const { next } = this.#sql
        .exec<{ next: number }>(
          "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM fiberline_inbox WHERE fiber_id = ?",
          fiberId,
        )
        .one();
      const stored: InboxEvent = {
        fiberId,
        seq: next,
        name,
        payload,
        at,
        ...(eventId === undefined ? {} : { eventId }),
      };
      const encoded = encodeValue(stored);
      this.#sql.exec("INSERT INTO fiberline_inbox VALUES (?, ?, ?)", fiberId, next, encoded);
      return decodeValue(encoded) as InboxEvent;
    });
  }

  async deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    return this.#transaction("deleteFibers", () => {
      const deleted: string[] = [];
      let floor = this.#generationFloor();
      const before = floor;
      for (const id of new Set(ids)) {
        const record = this.#fiber(id);
        if (record !== undefined) {
          if (!deletable(id, record.generation, options)) continue;
          // A fiber created again under this id starts above every generation it reached.
          floor = raiseGenerationFloor(floor, record.generation);
          deleted.push(id);
        }
        this.#sql.exec("DELETE FROM fiberline_fibers WHERE id = ?", id);
        for (const table of ["journal", "snapshots", "chunks", "inbox"]) {
          this.#sql.exec(`DELETE FROM fiberline_${table} WHERE fiber_id = ?`, id);
        }
      }
      if (floor !== undefined && floor !== before) {
        this.#sql.exec(
          "INSERT OR REPLACE INTO fiberline_meta (key, value) VALUES ('generation_floor', ?)",
          String(floor),
        );
      }
      return deleted;
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /**
   * The earliest `wakeAt` of a sleeping or waiting fiber, or `undefined`: when the host's alarm
   * must fire next. Not part of `Store`; the edge host uses it to drive the single alarm slot.
   */
  nextWakeAt(skip?: ReadonlySet<string>): number | undefined {
    return this.#read("nextWakeAt", () => {
      if (skip !== undefined && skip.size > 0) {
        // Fibers another home runs (continuity) are due there, not here: the first due one that
        // is not among them (few: the replicas a browser holds).
        for (const row of this.#sql.exec<{ id: string; at: number }>(
          "SELECT id, wake_at AS at FROM fiberline_fibers WHERE status IN ('sleeping', 'waiting') AND wake_at IS NOT NULL ORDER BY wake_at",
        )) {
          if (!skip.has(row.id)) return row.at;
        }
        return undefined;
      }
      const { at } = this.#sql
        .exec<{ at: number | null }>(
          "SELECT MIN(wake_at) AS at FROM fiberline_fibers WHERE status IN ('sleeping', 'waiting')",
        )
        .one();
      return at ?? undefined;
    });
  }

  // ---- inside a transaction -------------------------------------------------------------------

  /** The highest generation a deleted fiber reached (`aboveGenerationFloor`); none before any. */
  #generationFloor(): number | undefined {
    for (const row of this.#sql.exec<{ value: string }>(
      "SELECT value FROM fiberline_meta WHERE key = 'generation_floor'",
    )) {
      return Number(row.value);
    }
    return undefined;
  }

  /** Fiber `fiberId`'s buffered events, or those past `after`. */
  #inbox(fiberId: string, after?: number): InboxEvent[] {
    const rows =
      after === undefined
        ? this.#sql.exec<Row>("SELECT event FROM fiberline_inbox WHERE fiber_id = ? ORDER BY seq", fiberId)
        : this.#sql.exec<Row>(
            "SELECT event FROM fiberline_inbox WHERE fiber_id = ? AND seq > ? ORDER BY seq",
            fiberId,
            after,
          );
    return decodeAll<InboxEvent>(rows, "event");
  }

  #fiber(id: string): FiberRecord | undefined {
    return decodeFirst<FiberRecord>(
      this.#sql.exec<Row>("SELECT record FROM fiberline_fibers WHERE id = ?", id),
      "record",
    );
  }

  #insertFiber(record: FiberRecord, encoded: string): void {
    this.#sql.exec(
      "INSERT INTO fiberline_fibers (id, name, status, idempotency_key, created_at, wake_at, record) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ...fiberColumns(record),
      encoded,
    );
  }

  #updateFiber(record: FiberRecord): void {
    const [id, ...columns] = fiberColumns(record);
    this.#sql.exec(
      "UPDATE fiberline_fibers SET name = ?, status = ?, idempotency_key = ?, created_at = ?, wake_at = ?, record = ? WHERE id = ?",
      ...columns,
      encodeValue(record),
      id,
    );
  }

  /** Writes `group`'s rows; its record is the caller's to write (once, with the stream head). */
  #apply(group: WriteGroup): void {
    const { fiberId } = group;
    const seen = inboxSeenError(group);
    if (seen !== undefined) throw seen;
    if (group.clearJournal === true)
      this.#sql.exec("DELETE FROM fiberline_journal WHERE fiber_id = ?", fiberId);
    for (const entry of group.journal ?? []) {
      requireKeys("journal entry", entry.fiberId, entry.pos);
      this.#sql.exec(
        "INSERT OR REPLACE INTO fiberline_journal VALUES (?, ?, ?)",
        entry.fiberId,
        entry.pos,
        encodeValue(entry),
      );
    }
    if (group.snapshot === null) {
      this.#sql.exec("DELETE FROM fiberline_snapshots WHERE fiber_id = ?", fiberId);
    } else if (group.snapshot !== undefined) {
      requireKey("snapshot", group.snapshot.fiberId);
      this.#sql.exec(
        "INSERT OR REPLACE INTO fiberline_snapshots VALUES (?, ?)",
        group.snapshot.fiberId,
        encodeValue(group.snapshot),
      );
    }
    for (const chunk of group.chunks ?? []) {
      requireKeys("stream chunk", chunk.fiberId, chunk.seq);
      this.#sql.exec(
        "INSERT OR REPLACE INTO fiberline_chunks VALUES (?, ?, ?)",
        chunk.fiberId,
        chunk.seq,
        encodeValue(chunk),
      );
    }
    for (const { seq, consumedBy } of group.consumeEvents ?? []) {
      requireKeys("consumed event", fiberId, seq);
      const event = decodeFirst<InboxEvent>(
        this.#sql.exec<Row>("SELECT event FROM fiberline_inbox WHERE fiber_id = ? AND seq = ?", fiberId, seq),
        "event",
      );
      if (event === undefined) continue;
      this.#sql.exec(
        "UPDATE fiberline_inbox SET event = ? WHERE fiber_id = ? AND seq = ?",
        encodeValue(withConsumer(event, consumedBy)),
        fiberId,
        seq,
      );
    }
  }

  // ---- transactions and errors ----------------------------------------------------------------

  #read<T>(operation: string, body: () => T): T {
    return this.#transaction(operation, body);
  }

  #transaction<T>(operation: string, body: () => T): T {
    if (this.#closed) throw storeClosedError(this.kind);
    try {
      return this.#storage.transactionSync(body);
    } catch (error) {
      throw sqlStoreError(operation, error);
    }
  }
}

/** The indexed columns of a fiber row, in table order (the encoded record follows). */
function fiberColumns(record: FiberRecord): [string, string, string, string | null, number, number | null] {
  return [
    record.id,
    record.name,
    record.status,
    record.idempotencyKey ?? null,
    record.createdAt,
    record.wakeAt ?? null,
  ];
}

function decodeFirst<T>(rows: Iterable<Row>, column: string): T | undefined {
  for (const row of rows) return decodeValue(row[column] as string) as T;
  return undefined;
}

function decodeAll<T>(rows: Iterable<Row>, column: string): T[] {
  const out: T[] = [];
  for (const row of rows) out.push(decodeValue(row[column] as string) as T);
  return out;
}

function requireKeys(what: string, fiberId: unknown, position: unknown): void {
  requireKey(what, fiberId);
  requireKey(what, position);
}

/** The keys IndexedDB would accept for these records: strings and non-NaN numbers. */
function requireKey(what: string, key: unknown): void {
  const valid = typeof key === "string" || (typeof key === "number" && !Number.isNaN(key));
  if (!valid) throw new DOMException(`the ${what} has an invalid key (${String(key)})`, "DataError");
}

/**
 * Wraps what a transaction threw: Fiberline errors pass through, DOM-named errors (clone, key)
 * get the shared advice, SQLite's own failures an edge-specific one.
 */
function sqlStoreError(operation: string, error: unknown): FiberlineError {
  if (error instanceof FiberlineError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/UNIQUE constraint failed: fiberline_fibers\.idempotency_key/.test(message)) {
    const clash = new DOMException("another fiber already uses this idempotency key", "ConstraintError");
    return toStoreError(operation, Object.assign(clash, { cause: error }));
  }
  if (error instanceof Error && error.name !== "Error") return toStoreError(operation, error);
  const advice = /SQLITE_TOOBIG|too big/i.test(message)
    ? "A row is over Cloudflare's 2 MB limit per value: keep large results outside the fiber (R2, KV) and store a reference."
    : /SQLITE_FULL|disk is full/i.test(message)
      ? "The Durable Object's storage is full: delete finished fibers (or shorten retentionMs)."
      : "Nothing was written; retry, and if it keeps failing check the Durable Object's storage (SQLite backend enabled with new_sqlite_classes).";
  return new StoreError("store_error", `Storage failed during ${operation} (${message}). ${advice}`, {
    cause: error,
  });
}
