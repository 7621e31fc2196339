/**
 * The IndexedDB schema of `IdbStore`: the typed `DBSchema` and its stepwise migrations.
 *
 * To change the schema, bump `DB_VERSION` and add an `if (oldVersion < N)` step; never edit a
 * step that has shipped, because databases in the field have already run it.
 */

import type { DBSchema, IDBPDatabase, IDBPTransaction, StoreNames } from "idb";
import type { FiberRecord, FiberStatus, InboxEvent, JournalEntry, SnapshotRecord, StreamChunk } from "../core/records";

/** The current schema version. */
export const DB_VERSION = 1;

/** What `IdbStore` keeps, by object store. Per-fiber rows are keyed `[fiberId, n]`. */
export interface FiberlineSchema extends DBSchema {
  fibers: {
    key: string;
    value: FiberRecord;
    // Records without an idempotency key are simply absent from that (unique) index.
    indexes: { status: FiberStatus; idempotencyKey: string; createdAt: number };
  };
  journal: { key: [string, number]; value: JournalEntry };
  snapshots: { key: string; value: SnapshotRecord };
  chunks: { key: [string, number]; value: StreamChunk };
  inbox: { key: [string, number]; value: InboxEvent };
}

/** Brings a database from `oldVersion` (0 when new) to `DB_VERSION`, inside the versionchange transaction. */
export function upgradeSchema(
  db: IDBPDatabase<FiberlineSchema>,
  oldVersion: number,
  _tx: IDBPTransaction<FiberlineSchema, StoreNames<FiberlineSchema>[], "versionchange">,
): void {
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
}
