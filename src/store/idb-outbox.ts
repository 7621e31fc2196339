/**
 * The continuity outbox in `IdbStore` (schema v6; docs/design/continuity.md, "Shipping"): for
 * each replicated fiber, the commits its arbiter has not acknowledged yet, written **in the same
 * transaction as the commit itself**. A commit that is durable is therefore in the outbox and a
 * commit that failed (fenced, `stream_gap`, quota) is not, whatever moment the browser dies at.
 *
 * Two object stores:
 * - `outboxFibers`, one head row per replicated fiber (`fiberId`): its home epoch, the position
 *   its next entry gets, the position the arbiter acknowledged, the highest acknowledged chunk
 *   seq (Rule B's visible head), whether its last commit ended it, and `away` once another home
 *   took it over (a restarted browser must not run it again).
 * - `outbox`, the entries, keyed `[fiberId, epoch, pos]`, each the `ShippedEntry` the shipper
 *   sends (`src/continuity/protocol.ts`).
 *
 * A write reads the fiber's head in its own transaction, beside the reads it makes anyway (the
 * fence read of a commit, the record of `createFiber` / `enqueueEvent`), so replication costs a
 * replicated fiber no extra round trip; it puts the entry at the head's next position and the
 * head one further. A fiber whose head is `away` is refused there, as a fence. Writes of
 * fibers not named replicated by the caller (`OutboxWrite.replicated`) read and write nothing
 * here. Acknowledgements and fences arrive later, in transactions of their own (`saveOutbox`):
 * losing one to a crash only means positions the arbiter already holds are sent again, which it
 * ignores.
 *
 * The types here are the store's side of the port that `src/continuity/outbox-log.ts` names
 * (`OutboxStore`); they are written out rather than imported so `src/store` depends on the engine
 * alone.
 */

import { unwrap } from "idb";
import { FencedError } from "../core/errors";
import type { FiberRecord, InboxEvent, StreamChunk } from "../core/records";
import { isTerminal } from "../core/records";
import type { WriteGroup } from "../core/store";
import { commitNow, type IdbConnection } from "./idb-connection";

/** One commit of a replicated fiber at its outbox position (the `ShippedEntry` of the protocol). */
export type OutboxEntry =
  | { pos: number; type: "create"; record: FiberRecord; chunks: StreamChunk[] }
  | { pos: number; type: "commit"; group: WriteGroup }
  | { pos: number; type: "event"; event: InboxEvent; eventId: string };

/** An entry before the store gives it its position. */
export type OutboxBody = OutboxEntry extends infer E
  ? E extends OutboxEntry
    ? Omit<E, "pos">
    : never
  : never;

/** Where another home runs a fiber this one was fenced from. */
export interface AwayFrom {
  epoch: number;
  home: string;
}

/** The key of an entry: `[fiberId, epoch, pos]`. */
export type OutboxKey = [string, number, number];

/** An entry as stored (the entry itself: rows are few and short-lived). */
export type OutboxEntryRow = OutboxEntry;

/** A replicated fiber's head row in `outboxFibers`. */
export interface OutboxHeadRow {
  /** The home epoch its positions count in (1 from `createFiber`). */
  epoch: number;
  /** The position the next entry gets. */
  next: number;
  /** The last position the arbiter acknowledged. */
  acked: number;
  /** The highest chunk seq among acknowledged entries (what readers may see, Rule B). */
  shippedSeq: number;
  /** An entry ended the fiber (a terminal status): once acknowledged, nothing more ships. */
  ended: boolean;
  /** Set once fenced: another home runs the fiber, and this one writes it no more. */
  away?: AwayFrom;
  /**
   * The fiber's `createdAt`: a fiber collected and started again under its id (by another worker
   * of the origin) gets a new head, and a worker still holding the old one tells them apart by it.
   * Absent in heads written before it was kept, and after a copy was rebuilt (`adoptOutbox`).
   */
  createdAt?: number;
}

/**
 * How a caller asks `IdbStore` to put its writes into the outbox: which fibers of the call are
 * replicated, this browser's home (an event's id is `homeEventId`'s), and who learns of each
 * entry once its transaction committed (before the write's call resolves).
 */
export interface OutboxWrite {
  home: string;
  replicated: ReadonlySet<string>;
  appended(fiberId: string, epoch: number, entry: OutboxEntry): void;
}

/** A replicated fiber's outbox as loaded at start: its head and its unacknowledged entries. */
export interface SavedOutbox {
  fiberId: string;
  epoch: number;
  next: number;
  acked: number;
  shippedSeq: number;
  ended: boolean;
  away?: AwayFrom;
  createdAt?: number;
  /** Entries past `acked` in this epoch, ascending by position. */
  entries: OutboxEntry[];
}

/** What an acknowledgement (and with `away`, a fence) changed for one fiber. */
export interface OutboxProgress {
  fiberId: string;
  epoch: number;
  /** Every position up to here is held by the arbiter: their rows go. */
  acked: number;
  shippedSeq: number;
  /** The fiber moved to another home: every row goes, and the head says so. */
  away?: AwayFrom;
}

/** A fiber handed back to this home (`adoptOutbox`): its new epoch and the replica's position. */
export interface AdoptedOutbox {
  fiberId: string;
  epoch: number;
  /** The replica's applied position: the next entry gets `acked + 1`. */
  acked: number;
  /** The replica's last chunk seq. */
  shippedSeq: number;
  /** The fiber's `createdAt`, kept in the head (else the head's own, if it had one). */
  createdAt?: number;
}

/**
 * The error of a write to a fiber another home runs (`fenced`, with `{ epoch, home }` as its
 * `data`, as continuity's `changedHomeError`): the host reads it from there instead.
 */
export function awayError(fiberId: string, away: AwayFrom): FencedError {
  const error = new FencedError(
    "fenced",
    `Fiber ${fiberId} now runs at ${away.home} (home epoch ${away.epoch}); this home stopped writing it and reads it from there.`,
  );
  (error as { data?: unknown }).data = { epoch: away.epoch, home: away.home };
  return error;
}

/** The key range of one fiber's entries. */
export function outboxOf(fiberId: string): IDBKeyRange {
  return IDBKeyRange.bound(
    [fiberId, Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY],
    [fiberId, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY],
  );
}

/** The head of a fiber that `createFiber` just made replicated, with its first entry written. */
export function firstHead(record: FiberRecord): OutboxHeadRow {
  return {
    epoch: 1,
    next: 1,
    acked: 0,
    shippedSeq: 0,
    ended: isTerminal(record.status),
    createdAt: record.createdAt,
  };
}

/** A write of one replicated fiber, with the head read in the same transaction. */
export interface OutboxAppend {
  fiberId: string;
  head: OutboxHeadRow;
  body: OutboxBody;
}

/** An entry written in a transaction, to report once the transaction committed (`reportPlaced`). */
export interface Placed {
  fiberId: string;
  epoch: number;
  entry: OutboxEntry;
}

/**
 * Puts `appends` into the outbox of `tx` at their fibers' next positions (consecutive for several
 * of one fiber, in the order given) and moves each head on. Issues requests only: the caller
 * commits, then reports what was placed (`reportPlaced`).
 */
export function appendToOutbox(tx: IDBTransaction, appends: readonly OutboxAppend[]): Placed[] {
  if (appends.length === 0) return [];
  const rows = tx.objectStore("outbox");
  const heads = new Map<string, OutboxHeadRow>();
  const placed: Placed[] = [];
  for (const { fiberId, head, body } of appends) {
    const current = heads.get(fiberId) ?? { ...head };
    const entry = { ...body, pos: current.next } as OutboxEntry;
    rows.put(entry, [fiberId, current.epoch, entry.pos]);
    current.next += 1;
    if (endsFiber(entry)) current.ended = true;
    heads.set(fiberId, current);
    placed.push({ fiberId, epoch: current.epoch, entry });
  }
  const headRows = tx.objectStore("outboxFibers");
  for (const [fiberId, head] of heads) headRows.put(head, fiberId);
  return placed;
}

/**
 * Tells `write` of the entries a committed transaction placed. Not from the transaction's
 * `complete` event: a browser runs microtasks between listeners, so the write's own caller would
 * resume before such a listener ran; reported here, before the call resolves, `ReplicatingStore`'s
 * outbox holds a commit's entry by the time the engine hears the commit is durable.
 */
export function reportPlaced(write: OutboxWrite | undefined, placed: readonly Placed[]): void {
  if (write === undefined) return;
  for (const { fiberId, epoch, entry } of placed) write.appended(fiberId, epoch, entry);
}

/** Whether `entry` ends its fiber (a commit to a terminal status). */
function endsFiber(entry: OutboxEntry): boolean {
  if (entry.type === "create") return isTerminal(entry.record.status);
  return (
    entry.type === "commit" && entry.group.fiber?.status !== undefined && isTerminal(entry.group.fiber.status)
  );
}

/**
 * Every replicated fiber's head and unacknowledged entries of its epoch, in one readonly
 * transaction; with `fiberId`, only that fiber's (key ranges: no other fiber's rows are read).
 */
export function loadOutbox(db: IdbConnection, fiberId?: string): Promise<SavedOutbox[]> {
  return db.read("loadOutbox", ["outbox", "outboxFibers"], async (tx) => {
    const heads = tx.objectStore("outboxFibers");
    const rows = tx.objectStore("outbox");
    const range = fiberId === undefined ? undefined : outboxOf(fiberId);
    const [ids, headRows, keys, entries] = await Promise.all([
      fiberId === undefined ? heads.getAllKeys() : heads.getAllKeys(fiberId),
      fiberId === undefined ? heads.getAll() : heads.getAll(fiberId),
      rows.getAllKeys(range),
      rows.getAll(range),
    ]);
    const saved = new Map<string, SavedOutbox>();
    ids.forEach((id, i) => {
      const head = headRows[i] as OutboxHeadRow;
      saved.set(id, { fiberId: id, ...head, entries: [] });
    });
    keys.forEach(([fiberId, epoch, pos], i) => {
      const fiber = saved.get(fiberId);
      // Rows of another epoch or already acknowledged are leftovers of a save that had not landed.
      if (fiber === undefined || epoch !== fiber.epoch || pos <= fiber.acked || fiber.away !== undefined)
        return;
      fiber.entries.push(entries[i] as OutboxEntry);
    });
    return [...saved.values()];
  });
}

/**
 * Applies acknowledgements and fences in one transaction: the acknowledged rows go, a fenced
 * fiber's rows all go and its head says `away`. A fiber whose head is gone (deleted) or in
 * another epoch is left alone.
 */
export function saveOutbox(db: IdbConnection, progress: readonly OutboxProgress[]): Promise<void> {
  if (progress.length === 0) return db.nothing(undefined);
  return db.write("saveOutbox", ["outbox", "outboxFibers"], async (tx) => {
    const heads = tx.objectStore("outboxFibers");
    const current = await Promise.all(progress.map((p) => heads.get(p.fiberId)));
    // Writes on the raw API: no promise per request (a failed one aborts the transaction).
    const rows = unwrap(tx.objectStore("outbox"));
    const headRows = unwrap(heads);
    progress.forEach((p, i) => {
      const head = current[i];
      if (head === undefined || head.epoch !== p.epoch || head.away !== undefined) return;
      const acked = Math.min(Math.max(head.acked, p.acked), head.next - 1);
      const next: OutboxHeadRow = { ...head, acked, shippedSeq: Math.max(head.shippedSeq, p.shippedSeq) };
      if (p.away !== undefined) {
        next.away = { epoch: p.away.epoch, home: p.away.home };
        rows.delete(outboxOf(p.fiberId));
      } else if (acked > head.acked) {
        rows.delete(
          IDBKeyRange.bound([p.fiberId, p.epoch, Number.NEGATIVE_INFINITY], [p.fiberId, p.epoch, acked]),
        );
      }
      headRows.put(next, p.fiberId);
    });
    commitNow(unwrap(tx));
  });
}

/** Makes a fiber this home's again at `head` (`OutboxLog.adoptOutbox`), in one transaction. */
export function adoptOutbox(db: IdbConnection, head: AdoptedOutbox): Promise<void> {
  return db.write("adoptOutbox", ["outbox", "outboxFibers"], async (tx) => {
    const heads = tx.objectStore("outboxFibers");
    const current = await heads.get(head.fiberId);
    // Adopted already under this epoch: what was written since keeps its positions.
    if (current !== undefined && current.epoch === head.epoch && current.away === undefined) {
      commitNow(unwrap(tx));
      return;
    }
    unwrap(tx.objectStore("outbox")).delete(outboxOf(head.fiberId));
    const row: OutboxHeadRow = {
      epoch: head.epoch,
      next: head.acked + 1,
      acked: head.acked,
      shippedSeq: head.shippedSeq,
      ended: false,
      ...((head.createdAt ?? current?.createdAt) === undefined
        ? {}
        : { createdAt: head.createdAt ?? current?.createdAt }),
    };
    unwrap(heads).put(row, head.fiberId);
    commitNow(unwrap(tx));
  });
}
