/**
 * `FiberOwners`: which principal started each fiber of a Durable Object, in a table of its own
 * (`fiberline_owners`) beside `SqliteStore`'s, so the store contract stays free of callers. The
 * host with an `authorize` hook writes a row before a start and reads it on every later request.
 */

import type { SqlStorageLike } from "./platform";

/** The owner rows of one Durable Object. */
export class FiberOwners {
  readonly #sql: SqlStorageLike;

  constructor(sql: SqlStorageLike) {
    this.#sql = sql;
    sql.exec(
      "CREATE TABLE IF NOT EXISTS fiberline_owners (fiber_id TEXT PRIMARY KEY, principal TEXT NOT NULL)",
    );
  }

  /** The principal that started `id`, or `undefined` when nobody recorded one. */
  ownerOf(id: string): string | undefined {
    const rows = this.#sql
      .exec<{ principal: string }>("SELECT principal FROM fiberline_owners WHERE fiber_id = ?", id)
      .toArray();
    return rows[0]?.principal;
  }

  /** Records `principal` as the owner of `id` (replacing a row left by a fiber that is gone). */
  claim(id: string, principal: string): void {
    this.#sql.exec(
      "INSERT INTO fiberline_owners (fiber_id, principal) VALUES (?, ?) ON CONFLICT (fiber_id) DO UPDATE SET principal = excluded.principal",
      id,
      principal,
    );
  }

  /** Forgets the owner of `id` (a start that did not create its fiber). */
  release(id: string): void {
    this.#sql.exec("DELETE FROM fiberline_owners WHERE fiber_id = ?", id);
  }

  /** The ids `principal` owns. */
  idsOf(principal: string): Set<string> {
    const rows = this.#sql
      .exec<{ fiber_id: string }>("SELECT fiber_id FROM fiberline_owners WHERE principal = ?", principal)
      .toArray();
    return new Set(rows.map((row) => row.fiber_id));
  }
}
