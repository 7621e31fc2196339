/**
 * Stashes in `IdbStore` (schema v3): how a stash is written in one round trip, fenced by its own
 * row. Every fiber has exactly one row in `stashes`, keyed `[fiberId, generation]` at its
 * record's generation (`createFiber` puts it, each claim moves it), and a unique index on the
 * fiber id (`StashRow`). A stash put under a stale generation collides with the current row, the
 * failed request aborts the transaction, and nothing is written: the fence is checked inside
 * IndexedDB, with no read for the writer to wait on before `commit()`.
 */

import { unwrap } from "idb";
import { commitNow, type IdbConnection, result } from "./idb-connection";
import { emptyStash, encodeStash } from "./idb-rows";
import type { WriteGroup } from "./store";

/** True when `group` only replaces or removes the snapshot: its stash row is its whole fence. */
export function stashOnly(group: WriteGroup): boolean {
  return (
    group.snapshot !== undefined &&
    group.fiber === undefined &&
    group.clearJournal !== true &&
    (group.journal?.length ?? 0) === 0 &&
    (group.chunks?.length ?? 0) === 0 &&
    (group.consumeEvents?.length ?? 0) === 0
  );
}

/** Puts `group`'s stash row (an empty one when the snapshot is removed) under its generation. */
export function writeStash(tx: IDBTransaction, group: WriteGroup): IDBRequest {
  const row = encodeStash(group.fiberId, group.snapshot ?? null);
  return tx.objectStore("stashes").put(row, [group.fiberId, group.generation]);
}

/** How a batch of stash-only groups went. */
export interface StashOutcome {
  /** Groups whose put collided with their fiber's row: stale, and nothing was written. */
  collided: WriteGroup[];
  /** Groups written where no row stood: their fiber was deleted (see `dropOrphans`). */
  orphaned: WriteGroup[];
}

/**
 * Writes stash-only groups and commits at once. One case the unique index cannot see: a fiber
 * deleted meanwhile has no row left to collide with. So each put is preceded by a look for the
 * row it replaces, read in the same transaction but not waited on before committing: where none
 * stood, the stash was written as an orphan. Rejects with the transaction's error for any other
 * failure.
 */
export async function commitStashes(tx: IDBTransaction, groups: WriteGroup[]): Promise<StashOutcome> {
  const stashes = tx.objectStore("stashes");
  const replaced = Promise.all(
    groups.map((group) => result(stashes.getKey([group.fiberId, group.generation]))),
  );
  const collided: WriteGroup[] = [];
  const writes = groups.map((group) =>
    result(writeStash(tx, group)).catch((error: unknown) => {
      if ((error as { name?: unknown } | null)?.name === "ConstraintError") collided.push(group);
      throw error;
    }),
  );
  commitNow(tx);
  try {
    const [keys] = await Promise.all([replaced, Promise.all(writes)]);
    return { collided, orphaned: groups.filter((_, i) => keys[i] === undefined) };
  } catch (error) {
    if (collided.length > 0) return { collided, orphaned: [] };
    throw error;
  }
}

/**
 * After stash-only groups were written where no row stood: the fiber was deleted while a stale
 * runner still ran. Its row is an orphan, removed here unless the fiber was created again
 * meanwhile (creating it cleared the orphan); such a group is added to `fenced`. Should a fiber
 * exist without its row (never, while every write goes through `IdbStore`), the row is put back
 * at the record's generation, so the fence keeps working.
 */
export async function dropOrphans(
  db: IdbConnection,
  orphaned: WriteGroup[],
  fenced: string[],
): Promise<void> {
  const late = await db.write("commit", ["fibers", "stashes"], async (tx) => {
    const byFiber = tx.objectStore("stashes").index("fiber");
    const [records, rows] = await Promise.all([
      Promise.all(orphaned.map((group) => tx.objectStore("fibers").get(group.fiberId))),
      // The unique index holds at most one row per fiber: the orphan, or a newer fiber's row.
      Promise.all(orphaned.map((group) => byFiber.getKey(group.fiberId))),
    ]);
    const stashes = unwrap(tx.objectStore("stashes"));
    const stale = orphaned.filter((group, i) => {
      const record = records[i];
      if (record?.generation === group.generation) return false;
      if (rows[i]?.[1] === group.generation) {
        stashes.delete([group.fiberId, group.generation]);
        if (record !== undefined) stashes.put(emptyStash(record.id), [record.id, record.generation]);
      }
      return true;
    });
    commitNow(unwrap(tx));
    return stale;
  });
  for (const group of late) if (!fenced.includes(group.fiberId)) fenced.push(group.fiberId);
}
