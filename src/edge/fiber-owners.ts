/**
 * `FiberOwners`: which principal started each fiber of a Durable Object, in a table of its own
 * (`fiberline_owners`) beside `SqliteStore`'s, so the store contract stays free of callers. The
 * host with an `authorize` hook writes a row before a start and reads it on every later request.
 */

import { ForwardingStore } from "../continuity/forwarding-store";
import type { DeleteOptions, Store } from "../core/store";
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

  /**
   * Records `principal` as the owner of `id` unless a row stands: after a start or a shipment
   * that found the fiber its principal's, the collector may have deleted that fiber and its row
   * meanwhile, and the request then created a new one under the id.
   */
  keep(id: string, principal: string): void {
    this.#sql.exec(
      "INSERT INTO fiberline_owners (fiber_id, principal) VALUES (?, ?) ON CONFLICT (fiber_id) DO NOTHING",
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

/**
 * The runtime's store in a host with owners: a fiber the runtime deletes (its collector, which
 * deletes ended fibers and ended replicas) loses its owner row too, so the rows do not outlive
 * their fibers (each start with a limit, each `list` and each first shipment reads a principal's
 * rows), and a collected id is free for anyone. A start or a shipment that found its principal's
 * fiber puts the row back (`keep`) if that fiber was collected meanwhile and the request made a
 * new one; the arbiter's deletions (a replica replaced by a new fiber of its id) do not go
 * through here.
 */
export class OwnedStore extends ForwardingStore {
  readonly #owners: FiberOwners;

  constructor(inner: Store, owners: FiberOwners) {
    super(inner);
    this.#owners = owners;
  }

  override async deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    const deleted = await super.deleteFibers(ids, options);
    for (const id of deleted) this.#owners.release(id);
    return deleted;
  }
}
