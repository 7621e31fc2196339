/**
 * The IndexedDB database behind `IdbStore`: its typed `DBSchema`, its stepwise migrations and
 * how a connection is opened and given up.
 *
 * To change the schema, bump `DB_VERSION` and add an `if (oldVersion < N)` step; never edit a
 * step that has shipped, because databases in the field have already run it.
 */

import { type DBSchema, type IDBPDatabase, wrap } from "idb";
import { StoreError } from "../core/errors";
import type {
  FiberRecord,
  FiberStatus,
  InboxEvent,
  JournalEntry,
  SnapshotRecord,
  StreamChunk,
} from "../core/records";
import { dueForBuffered, storeClosedError, toStoreError } from "./fiber-rules";
import type { OutboxEntryRow, OutboxHeadRow, OutboxKey } from "./idb-outbox";
import {
  type ChunkRow,
  emptyStash,
  encodeChunk,
  encodeInboxEvent,
  encodeSegment,
  type InboxRow,
  inboxOf,
  type SegmentRow,
  type StashRow,
} from "./idb-rows";

/** The current schema version. */
export const DB_VERSION = 11;

/** A fiber record as stored: the record plus the fiber's `handle`, the first part of its rows' keys. */
export interface StoredFiber extends Omit<FiberRecord, "input"> {
  handle: number;
  /**
   * Where the claims of the last `FENCE_KEEP_MS` put their fence rows in the journal, and when
   * (`idb-commit.ts`, `Fence`): what deletes journal rows puts these back.
   */
  fences?: Array<[segment: number, at: number]>;
  /**
   * Only on records written before schema v8 (`hasInlineInput`). Since v8 the input lives in the
   * `inputs` store: a commit reads the record for its fence and writes it back with the stream's
   * new head, and an agent's input (its conversation) made each of those a copy of all of it.
   */
  input?: unknown;
}

/** Whether `stored` still carries its input itself (written before schema v8). */
export function hasInlineInput(stored: StoredFiber): boolean {
  return Object.hasOwn(stored, "input");
}

/** Per-fiber rows are keyed `[handle, n]`; their values are the tuples of `idb-rows.ts`. */
export type RowKey = [number, number];

/** What `IdbStore` keeps, by object store. */
export interface FiberlineSchema extends DBSchema {
  fibers: {
    key: string;
    value: StoredFiber;
    // Records without an idempotency key are simply absent from that (unique) index.
    indexes: { status: FiberStatus; idempotencyKey: string; createdAt: number; endedAt: number };
  };
  /** fiber id -> handle: the small read that maps an id to its rows. */
  handles: { key: string; value: number };
  /**
   * `nextHandle`: the next handle to give; handles are never reused. `generationFloor`: the highest
   * generation a deleted fiber reached (`aboveGenerationFloor`); absent before the first deletion.
   */
  meta: { key: string; value: number | Tombstones };
  /** The journal, append-only: one row per fiber per commit (`[handle, segment]`). */
  journalSegments: { key: RowKey; value: SegmentRow };
  /** The output stream (`[handle, seq]`). */
  streamChunks: { key: RowKey; value: ChunkRow };
  /**
   * Buffered events (`[fiberId, seq]`: few rows, and keyed by id, `recover()` reads a waiting
   * fiber's inbox without first looking up its handle).
   */
  inboxEvents: { key: [string, number]; value: InboxRow };
  /**
   * Each fiber's stash row, keyed `[fiberId, generation]`; the unique `fiber` index makes a stash
   * written under a stale generation fail by itself (see `StashRow`).
   */
  stashes: { key: [string, number]; value: StashRow; indexes: { fiber: string } };
  /**
   * The continuity outbox (v6, `idb-outbox.ts`): each replicated fiber's commits not yet
   * acknowledged by its arbiter, keyed `[fiberId, epoch, pos]`, written in the commit's own
   * transaction. Unreplicated fibers have no rows here.
   */
  outbox: { key: OutboxKey; value: OutboxEntryRow };
  /** Per replicated fiber (`fiberId`): its epoch, next position, acknowledged position and home. */
  outboxFibers: { key: string; value: OutboxHeadRow };
  /** Each fiber's input, by fiber id (schema v8; see `StoredFiber.input`). */
  inputs: { key: string; value: unknown };
}

/** An open connection to the Fiberline database. */
export type FiberlineDatabase = IDBPDatabase<FiberlineSchema>;

/** The key of `meta`'s handle counter. */
export const NEXT_HANDLE = "nextHandle";

/** The key of `meta`'s generation floor: a re-created fiber id starts above it. */
export const GENERATION_FLOOR = "generationFloor";

/**
 * `meta`'s key of the deleted fibers' tombstones still kept (`Tombstones`): where each is and
 * when it was put, so that a later deletion removes those older than `FENCE_KEEP_MS`.
 */
export const TOMBSTONES = "tombstones";

/** Each kept tombstone's journal key (`[handle, segment]`) and when it was put. */
export type Tombstones = Array<[handle: number, segment: number, at: number]>;

/**
 * `meta`'s key of the deleted fibers' stash tombstones still kept (`StashTombstones`): the row a
 * deletion leaves in `stashes` (`stashTombstoneKey`), collected by a later deletion once older
 * than `FENCE_KEEP_MS`.
 */
export const STASH_TOMBSTONES = "stashTombstones";

/** Each kept stash tombstone's key (`[fiberId, -(generation + 1)]`: its id and its second part) and when it was put. */
export type StashTombstones = Array<[fiberId: string, key: number, at: number]>;

/**
 * Brings a database from `oldVersion` (0 when new) to `DB_VERSION`, inside the versionchange
 * transaction. Steps run in order and each is final once shipped.
 */
export function upgradeSchema(db: IDBDatabase, oldVersion: number, tx: IDBTransaction): void {
  // Steps whose requests must follow v1's row moves, which finish only after chained requests.
  let afterV1Rows: (() => void) | undefined;
  if (oldVersion < 1) {
    const fibers = db.createObjectStore("fibers", { keyPath: "id" });
    fibers.createIndex("status", "status");
    fibers.createIndex("idempotencyKey", "idempotencyKey", { unique: true });
    fibers.createIndex("createdAt", "createdAt");
    db.createObjectStore("journal", { keyPath: ["fiberId", "pos"] });
    db.createObjectStore("snapshots", { keyPath: "fiberId" });
    db.createObjectStore("chunks", { keyPath: ["fiberId", "seq"] });
    db.createObjectStore("inbox", { keyPath: ["fiberId", "seq"] });
  }
  if (oldVersion < 2) {
    // v2: integer handles in keys, tuple values, an append-only journal (see idb-rows.ts).
    db.createObjectStore("handles");
    db.createObjectStore("meta");
    db.createObjectStore("journalSegments");
    db.createObjectStore("streamChunks");
    db.createObjectStore("inboxEvents");
    migrateV1Rows(tx, () => afterV1Rows?.());
  }
  if (oldVersion < 3) {
    // v3: snapshots become stash rows keyed [fiberId, generation], fenced by a unique index.
    db.createObjectStore("stashes").createIndex("fiber", "fiber", { unique: true });
    migrateV2Snapshots(tx);
  }
  if (oldVersion < 4) {
    // v4: `meta` keeps the generation floor (`GENERATION_FLOOR`). Nothing to move; the new version
    // exists to close every connection of an earlier build, which would not raise the floor.
  }
  if (oldVersion < 5) {
    // v5: journal segments carry a time base and chunk rows leave their seq to the key (see
    // idb-rows.ts). Rows written before stay as they are and read back in their own layout; the
    // new version keeps an earlier build, which cannot read the new rows, from opening the database.
  }
  if (oldVersion < 6) {
    // v6: the continuity outbox (idb-outbox.ts). New stores only; no fiber is replicated before it.
    db.createObjectStore("outbox");
    db.createObjectStore("outboxFibers");
  }
  if (oldVersion < 7) {
    // v7: an index of ended fibers by end time, so `collect()` reads only the expired ones instead
    // of every ended fiber's record. Records without `endedAt` are left out of it.
    const fibers = tx.objectStore("fibers");
    fibers.createIndex("endedAt", "endedAt");
    backfillEndedAt(fibers);
  }
  if (oldVersion < 8) {
    // v8: inputs move out of the fiber records into `inputs`, so the records that every commit
    // reads and rewrites stay small. Records written before keep theirs and are read as they are;
    // a claim (every recovery) moves it. Nothing is copied here: an upgrade of a database holding
    // thousands of conversations would hold every page of the origin at its open.
    db.createObjectStore("inputs");
  }
  if (oldVersion < 9) {
    // v9: the generation floor also stands in `stashes`, as a row keyed `[FLOOR_FENCE, floor]`
    // (`floorFenceKey`), so a registration written without reading the floor collides with it
    // when the floor moved (`IdbStore.createFiber`). The new version keeps an earlier build, which
    // would raise the floor without moving the row, from opening the database.
    const request = tx.objectStore("meta").get(GENERATION_FLOOR);
    request.onsuccess = () => {
      tx.objectStore("stashes").put(floorFenceRow(), floorFenceKey(request.result as number | undefined));
    };
  }
  if (oldVersion < 10) {
    // v10: a deleted fiber leaves a tombstone row in `stashes` (`stashTombstoneKey`), so that a
    // stash written without looking for the row it replaces (`commitStashes`) collides with it.
    // Nothing to move; the new version keeps an earlier build, which would delete a fiber
    // without leaving one, from opening the database.
  }
  if (oldVersion < 11) {
    // v11: a fiber that suspends waiting for an event already in its inbox is made due in the
    // same commit (`dueForInbox`), and `recover()` no longer reads every waiting fiber's inbox.
    // A fiber an earlier build left so (it crashed between the suspension and its inbox check)
    // is made due here, once: after v1's rows are moved when the database is that old (its
    // inbox rows reach `inboxEvents`, and its records get their handles, only then).
    if (oldVersion < 2) afterV1Rows = () => makeBufferedDue(tx);
    else makeBufferedDue(tx);
  }
}

/**
 * The first key member (and index value) of the generation floor's row in `stashes`: a number,
 * so it sorts apart from every fiber's rows (keyed by a string id) and collides with none.
 */
export const FLOOR_FENCE = 0;

/** The key of the floor's row in `stashes` while the floor is `floor` (-1: none yet). */
export function floorFenceKey(floor: number | undefined): [number, number] {
  return [FLOOR_FENCE, floor ?? -1];
}

/** The floor's row: its index value is what makes a second row of it collide. */
export function floorFenceRow(): { fiber: number } {
  return { fiber: FLOOR_FENCE };
}

/** Every key the floor's row may have. */
export function floorFenceKeys(): IDBKeyRange {
  return IDBKeyRange.bound([FLOOR_FENCE, Number.NEGATIVE_INFINITY], [FLOOR_FENCE, Number.POSITIVE_INFINITY]);
}

/**
 * Gives an ended fiber written without an `endedAt` (by hand, or by a build that did not set it)
 * its `updatedAt` as `endedAt`, which is what the collector used for it before v7, so the new index
 * holds it. Chained requests, like `migrateV1Rows`.
 */
function backfillEndedAt(fibers: IDBObjectStore): void {
  const ended: FiberStatus[] = ["completed", "failed", "cancelled"];
  const next = (index: number): void => {
    const status = ended[index];
    if (status === undefined) return;
    eachRow(
      fibers.index("status"),
      (cursor) => {
        const record = cursor.value as StoredFiber;
        if (record.endedAt === undefined) cursor.update({ ...record, endedAt: record.updatedAt });
      },
      () => next(index + 1),
      IDBKeyRange.only(status),
    );
  };
  next(0);
}

/**
 * Makes every waiting fiber with an unconsumed event it waits for due at the event's time
 * (`dueForBuffered`). Chained requests, like `migrateV1Rows`: one inbox read per waiting fiber
 * that waits for an event, none for the others.
 */
function makeBufferedDue(tx: IDBTransaction): void {
  const inbox = tx.objectStore("inboxEvents");
  const now = Date.now();
  eachRow(
    tx.objectStore("fibers").index("status"),
    (cursor) => {
      const record = cursor.value as StoredFiber;
      if ((record.waitingFor ?? []).length === 0) return;
      const read = inbox.getAll(inboxOf(record.id));
      read.onsuccess = () => {
        const due = dueForBuffered(record, read.result as InboxRow[], now);
        if (due !== undefined) tx.objectStore("fibers").put(due);
      };
    },
    () => undefined,
    IDBKeyRange.only("waiting"),
  );
}

/**
 * Moves v1's rows (keyed `[fiberId, n]`, whole records as values) into v2's stores, deletes
 * the v1 stores, then calls `done`: each fiber gets a handle in creation order, each v1 journal
 * entry becomes a one-entry segment keyed by its `pos + 1`. Rows of a fiber that no longer
 * exists are dropped.
 * Runs on the raw API inside the versionchange transaction, chaining requests, so the
 * transaction stays active throughout; on a new database every v1 store is empty.
 */
function migrateV1Rows(tx: IDBTransaction, done: () => void): void {
  const handles = new Map<string, number>();
  let next = 1;
  const fibers = tx.objectStore("fibers");
  eachRow(
    fibers.index("createdAt"),
    (cursor) => {
      const record = cursor.value as FiberRecord;
      const handle = next++;
      handles.set(record.id, handle);
      cursor.update({ ...record, handle } satisfies StoredFiber);
      tx.objectStore("handles").put(handle, record.id);
    },
    () => {
      tx.objectStore("meta").put(next, NEXT_HANDLE);
      const moves: Array<[string, (row: never, handle: number) => void]> = [
        [
          "journal",
          (entry: JournalEntry, handle) =>
            tx.objectStore("journalSegments").put(encodeSegment([entry]), [handle, entry.pos + 1]),
        ],
        [
          "chunks",
          (chunk: StreamChunk, handle) =>
            tx.objectStore("streamChunks").put(encodeChunk(chunk), [handle, chunk.seq]),
        ],
        [
          "inbox",
          (event: InboxEvent) =>
            tx.objectStore("inboxEvents").put(encodeInboxEvent(event), [event.fiberId, event.seq]),
        ],
      ];
      const move = (index: number): void => {
        const step = moves[index];
        if (step === undefined) {
          done();
          return;
        }
        const [name, put] = step;
        eachRow(
          tx.objectStore(name),
          (cursor) => {
            const row = cursor.value as { fiberId: string };
            const handle = handles.get(row.fiberId);
            if (handle !== undefined) put(row as never, handle);
          },
          () => {
            tx.db.deleteObjectStore(name);
            move(index + 1);
          },
        );
      };
      move(0);
    },
  );
}

/**
 * Gives every fiber its stash row at its record's generation (`StashRow`), carrying over its
 * snapshot if it had one, and deletes v2's `snapshots` store. Snapshots of fibers that no longer
 * exist are dropped. Chained requests, like `migrateV1Rows`; the fiber records it reads are the
 * same whether or not v2's step has already added their handles.
 */
function migrateV2Snapshots(tx: IDBTransaction): void {
  const generations = new Map<string, number>();
  eachRow(
    tx.objectStore("fibers"),
    (cursor) => {
      const record = cursor.value as FiberRecord;
      generations.set(record.id, record.generation);
    },
    () => {
      const stashes = tx.objectStore("stashes");
      eachRow(
        tx.objectStore("snapshots"),
        (cursor) => {
          const snapshot = cursor.value as SnapshotRecord;
          const generation = generations.get(snapshot.fiberId);
          if (generation === undefined) return;
          generations.delete(snapshot.fiberId);
          const row: StashRow = { fiber: snapshot.fiberId, value: snapshot.value, at: snapshot.at };
          stashes.put(row, [snapshot.fiberId, generation]);
        },
        () => {
          for (const [id, generation] of generations) stashes.put(emptyStash(id), [id, generation]);
          tx.db.deleteObjectStore("snapshots");
        },
      );
    },
  );
}

/** Walks `source` with a cursor, calling `visit` per row and `done` after the last. */
function eachRow(
  source: IDBObjectStore | IDBIndex,
  visit: (cursor: IDBCursorWithValue) => void,
  done: () => void,
  range?: IDBKeyRange,
): void {
  const request = source.openCursor(range);
  request.onsuccess = () => {
    const cursor = request.result;
    if (cursor === null) {
      done();
      return;
    }
    visit(cursor);
    cursor.continue();
  };
}

/** How the owner of a connection follows its life. */
export interface ConnectionHooks {
  /** Asked when the open succeeds: false if the owner was closed meanwhile (the connection is dropped). */
  wanted(): boolean;
  /** The connection is open and handed over. */
  opened(connection: IDBDatabase): void;
  /** The connection closed under its owner (another context upgrades or deletes the database, or the browser closed it). */
  gone(connection: IDBDatabase): void;
}

/**
 * Opens (creating or upgrading) database `name` on `factory`: `idb`'s `openDB`, but on an
 * injectable factory.
 *
 * Failure semantics: rejects with `StoreError` `store_error` when the open fails (a newer schema
 * already on disk: the message says to reload) or is blocked by a tab holding an older version
 * (waiting could hang forever; the message says to close the other tabs), and with `store_closed`
 * when the owner closed meanwhile. It never leaves a connection open that nobody holds.
 */
export function openFiberlineDatabase(
  factory: IDBFactory,
  name: string,
  hooks: ConnectionHooks,
): Promise<FiberlineDatabase> {
  return new Promise<FiberlineDatabase>((resolve, reject) => {
    let blocked = false;
    let request: IDBOpenDBRequest;
    try {
      request = factory.open(name, DB_VERSION);
    } catch (error) {
      reject(toStoreError("open", error));
      return;
    }
    request.addEventListener("upgradeneeded", (event) => {
      upgradeSchema(request.result, event.oldVersion, request.transaction as IDBTransaction);
    });
    request.addEventListener("blocked", () => {
      blocked = true;
      reject(
        new StoreError(
          "store_error",
          `The Fiberline database "${name}" is held open by another tab running an older version of this app: close or reload the other tabs, then retry.`,
        ),
      );
    });
    request.addEventListener("error", () => reject(toStoreError("open", request.error)));
    request.addEventListener("success", () => {
      const connection = request.result;
      if (blocked || !hooks.wanted()) {
        connection.close();
        reject(storeClosedError("idb"));
        return;
      }
      // Let another context upgrade or delete the database: close now, reopen on the next call.
      connection.addEventListener("versionchange", () => {
        connection.close();
        hooks.gone(connection);
      });
      // The browser closed it (site data cleared, disk error): reopen on the next call.
      connection.addEventListener("close", () => hooks.gone(connection));
      hooks.opened(connection);
      resolve(wrap(connection) as unknown as FiberlineDatabase);
    });
  });
}
