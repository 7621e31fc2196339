/**
 * Stashes in `IdbStore` (schema v3): how a stash is written in one round trip, fenced by its own
 * row. Every fiber has exactly one row in `stashes`, keyed `[fiberId, generation]` at its
 * record's generation (`createFiber` puts it, each claim moves it), and a unique index on the
 * fiber id (`StashRow`). A stash put under a stale generation collides with the current row, the
 * failed request aborts the transaction, and nothing is written: the fence is checked inside
 * IndexedDB, with no read for the writer to wait on before `commit()`.
 */

import { unwrap } from "idb";
import type { WriteGroup } from "../core/store";
import { AbortedOnPurpose, commitNow, type IdbConnection, result } from "./idb-connection";
import { emptyStash, encodeStash } from "./idb-rows";

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

/**
 * Thrown (the transaction aborted, nothing written) when a stash of the batch collided with its
 * fiber's row: some group is stale. The store then writes the batch again with fence reads, which
 * tell which groups are stale. Engines differ in what the failed request reports (Chromium:
 * `ConstraintError`; the spec: `AbortError`, with `ConstraintError` as the transaction's error),
 * so nothing here depends on knowing which put collided.
 */
export class StashCollided extends AbortedOnPurpose {
  constructor() {
    super("a stash collided with its fiber's row");
  }
}

/**
 * Writes stash-only groups and commits at once; resolves with the groups written where no row
 * stood (see `dropOrphans`). One case the unique index cannot see: a fiber deleted with no
 * tombstone left (`stashTombstoneKey`: it is collected after `FENCE_KEEP_MS`) has no row to
 * collide with. So the put of a group not `guarded` by its own row (`FiberKeys.stashGuarded`) is
 * preceded by a look for the row it replaces, read in the same transaction but not waited on
 * before committing. Throws `StashCollided` when a row collided, and the transaction's error for
 * any other failure.
 */
export async function commitStashes(
  tx: IDBTransaction,
  groups: WriteGroup[],
  guarded: (group: WriteGroup) => boolean,
): Promise<WriteGroup[]> {
  const stashes = tx.objectStore("stashes");
  const looked = groups.filter((group) => !guarded(group));
  const replaced = Promise.all(
    looked.map((group) => result(stashes.getKey([group.fiberId, group.generation]))),
  );
  // A write that throws as it is issued (a value that cannot be cloned) aborts these reads too.
  replaced.catch(() => undefined);
  const writes = Promise.all(groups.map((group) => result(writeStash(tx, group))));
  commitNow(tx);
  try {
    const [keys] = await Promise.all([replaced, writes]);
    return looked.filter((_, i) => keys[i] === undefined);
  } catch (error) {
    if (isConstraintError(error) || isConstraintError(tx.error)) throw new StashCollided();
    throw error;
  }
}

/** Whether `error` is IndexedDB's `ConstraintError` (a key or unique index already taken). */
export function isConstraintError(error: unknown): boolean {
  return (error as { name?: unknown } | null)?.name === "ConstraintError";
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
  // Should the cleanup fail, its groups still count as fenced: their runner must stop. An
  // orphan left behind is hidden from readers and cleared if the id is created again.
  const late = await db
    .write("commit", ["fibers", "stashes"], async (tx) => {
      const byFiber = tx.objectStore("stashes").index("fiber");
      const [records, rows] = await Promise.all([
        Promise.all(orphaned.map((group) => tx.objectStore("fibers").get(group.fiberId))),
        // The unique index holds at most one row per fiber id: the orphan, or a newer fiber's row
        // or tombstone.
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
    })
    .catch(() => orphaned);
  for (const group of late) if (!fenced.includes(group.fiberId)) fenced.push(group.fiberId);
}
