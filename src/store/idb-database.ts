/**
 * The IndexedDB database behind `IdbStore`: its typed `DBSchema`, its stepwise migrations and
 * how a connection is opened and given up.
 *
 * To change the schema, bump `DB_VERSION` and add an `if (oldVersion < N)` step; never edit a
 * step that has shipped, because databases in the field have already run it.
 */

import { type DBSchema, type IDBPDatabase, type IDBPTransaction, type StoreNames, wrap } from "idb";
import { StoreError } from "../core/errors";
import type {
  FiberRecord,
  FiberStatus,
  InboxEvent,
  JournalEntry,
  SnapshotRecord,
  StreamChunk,
} from "../core/records";
import { storeClosedError, toStoreError } from "./fiber-rules";

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

/** An open connection to the Fiberline database. */
export type FiberlineDatabase = IDBPDatabase<FiberlineSchema>;

type UpgradeTransaction = IDBPTransaction<FiberlineSchema, StoreNames<FiberlineSchema>[], "versionchange">;

/** Brings a database from `oldVersion` (0 when new) to `DB_VERSION`, inside the versionchange transaction. */
export function upgradeSchema(db: FiberlineDatabase, oldVersion: number, _tx: UpgradeTransaction): void {
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
      const db = wrap(request.result) as unknown as FiberlineDatabase;
      const tx = wrap(request.transaction as IDBTransaction) as unknown as UpgradeTransaction;
      upgradeSchema(db, event.oldVersion, tx);
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
