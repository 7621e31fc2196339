/**
 * The SQLite schema of `SqliteStore` and its stepwise migrations. Tables carry the `fiberline_`
 * prefix so they sit beside the Durable Object's own; the schema version lives in
 * `fiberline_meta`. `SqliteStore`'s constructor runs `migrate` inside one transaction.
 */

import type { SqlStorageLike } from "./platform";

/** The version `migrate` brings a database to. */
export const SCHEMA_VERSION = 1;

/**
 * Creates or upgrades the tables. Each step runs only for databases older than it
 * (`if (version < N)`), so a database written by any earlier release is brought forward in order.
 */
export function migrate(sql: SqlStorageLike): void {
  sql.exec("CREATE TABLE IF NOT EXISTS fiberline_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
  const version = currentVersion(sql);
  if (version > SCHEMA_VERSION) {
    throw new Error(
      `its fiberline tables have schema version ${version}, newer than this release's ${SCHEMA_VERSION}; deploy the newer Worker`,
    );
  }
  if (version < 1) {
    // One row per fiber: the encoded record plus the columns queries filter and order on.
    sql.exec(`CREATE TABLE fiberline_fibers (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      status TEXT NOT NULL,
      idempotency_key TEXT UNIQUE,
      created_at REAL NOT NULL,
      wake_at REAL,
      record TEXT NOT NULL
    )`);
    sql.exec("CREATE INDEX fiberline_fibers_by_status ON fiberline_fibers (status, created_at, id)");
    sql.exec("CREATE INDEX fiberline_fibers_by_wake ON fiberline_fibers (wake_at) WHERE wake_at IS NOT NULL");
    for (const [table, key, column] of [
      ["journal", "pos", "entry"],
      ["chunks", "seq", "chunk"],
      ["inbox", "seq", "event"],
    ] as const) {
      sql.exec(`CREATE TABLE fiberline_${table} (
        fiber_id TEXT NOT NULL,
        ${key} INTEGER NOT NULL,
        ${column} TEXT NOT NULL,
        PRIMARY KEY (fiber_id, ${key})
      ) WITHOUT ROWID`);
    }
    sql.exec(
      "CREATE TABLE fiberline_snapshots (fiber_id TEXT PRIMARY KEY, snapshot TEXT NOT NULL) WITHOUT ROWID",
    );
  }
  if (version !== SCHEMA_VERSION) {
    sql.exec(
      "INSERT OR REPLACE INTO fiberline_meta (key, value) VALUES ('schema_version', ?)",
      String(SCHEMA_VERSION),
    );
  }
}

function currentVersion(sql: SqlStorageLike): number {
  for (const row of sql.exec<{ value: string }>(
    "SELECT value FROM fiberline_meta WHERE key = 'schema_version'",
  )) {
    return Number(row.value);
  }
  return 0;
}
