/**
 * The persistence port of `Outbox` (docs/design/continuity.md, "Shipping"): how a browser store
 * keeps each replicated fiber's outbox across restarts. `IdbStore` implements it
 * (`src/store/idb-outbox.ts`); `MemoryStore` does not, and an `Outbox` made with `new Outbox()`
 * keeps everything in memory, as before.
 *
 * The shape, smallest that keeps "a durable commit is in the outbox, a failed one is not":
 * - the **store** writes a replicated fiber's entries itself, in the transaction of the write
 *   (`createFiber` / `commit` / `enqueueEvent` take an `OutboxWrite` naming the replicated fibers)
 *   and gives each its position there, from the fiber's head row read in that transaction. It
 *   reports each entry through `OutboxWrite.appended` once the transaction committed, before the
 *   call resolves; `ReplicatingStore` passes that on to the `Outbox`.
 * - the **Outbox** reads everything once at start (`Outbox.open(store)` calls `loadOutbox`) and
 *   writes acknowledgements and fences back (`saveOutbox`, in transactions of their own: a lost
 *   one only sends positions again, which the arbiter ignores).
 * - what is not persisted: the Rule C deadline. A restarted browser has none until its first
 *   answer; Rules A and B keep what it writes meanwhile from mattering (no step starts and no
 *   chunk is shown before the arbiter acknowledged it).
 */

import type { FiberRecord, InboxEvent, StreamChunk } from "../core/records";
import type { CommitResult, CreateResult, Store, WriteGroup } from "../core/store";
import type { ShippedEntry } from "./protocol";

/** Where another home runs a fiber this one was fenced from. */
export interface AwayFrom {
  epoch: number;
  home: string;
}

/**
 * How a write of a replicated fiber goes into the store's outbox: the fibers of the call that
 * are replicated, this browser's home (an event's id is `homeEventId`'s), and who learns of each
 * entry the store wrote, once its transaction committed and before the call resolves.
 */
export interface OutboxWrite {
  home: string;
  replicated: ReadonlySet<string>;
  appended(fiberId: string, epoch: number, entry: ShippedEntry): void;
}

/** One replicated fiber's outbox as its store kept it: the head and the unacknowledged entries. */
export interface SavedOutbox {
  fiberId: string;
  /** The home epoch its positions count in. */
  epoch: number;
  /** The position the next entry gets. */
  next: number;
  /** The last position the arbiter acknowledged. */
  acked: number;
  /** The highest chunk seq the arbiter acknowledged (Rule B). */
  shippedSeq: number;
  /** An entry ended the fiber. */
  ended: boolean;
  /** Set once fenced: this home does not run the fiber again. */
  away?: AwayFrom;
  /** The fiber's `createdAt` (tells it from a later fiber under its id), when its head keeps it. */
  createdAt?: number;
  /** Entries past `acked`, ascending by position. */
  entries: ShippedEntry[];
}

/** An acknowledgement (and, with `away`, a fence) of one fiber, to be recorded. */
export interface OutboxProgress {
  fiberId: string;
  epoch: number;
  acked: number;
  shippedSeq: number;
  away?: AwayFrom;
}

/** What `Outbox.open` reads and writes. */
export interface OutboxLog {
  /** Every replicated fiber's saved outbox; with `fiberId`, only that fiber's (none or one). */
  loadOutbox(fiberId?: string): Promise<SavedOutbox[]>;
  /** Records acknowledgements and fences: acknowledged entries go, a fenced fiber's all go. */
  saveOutbox(progress: readonly OutboxProgress[]): Promise<void>;
  /**
   * Makes `head.fiberId` this home's again (the arbiter handed it back, `comeHome`): its head
   * becomes `head` (no longer away; the next position `acked + 1`) and its old entries go, in
   * one transaction.
   */
  adoptOutbox(head: AdoptedOutbox): Promise<void>;
}

/** A fiber handed back to this home: its new epoch and how far the replica holds it. */
export interface AdoptedOutbox {
  fiberId: string;
  epoch: number;
  /** The replica's applied position: this home's next entry gets `acked + 1`. */
  acked: number;
  /** The replica's last chunk seq (all of it is the replica's: readers may see it). */
  shippedSeq: number;
  /** The fiber's `createdAt` (the copy's record): kept in the head, to tell it from a later fiber. */
  createdAt?: number;
}

/**
 * A store that keeps the outbox in its own transactions (`IdbStore`). `ReplicatingStore` over it
 * passes an `OutboxWrite` with each write of a replicated fiber instead of appending after it.
 */
export interface OutboxStore extends Store, OutboxLog {
  createFiber(record: FiberRecord, chunks: StreamChunk[], outbox?: OutboxWrite): Promise<CreateResult>;
  commit(groups: WriteGroup[], outbox?: OutboxWrite): Promise<CommitResult>;
  enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">, outbox?: OutboxWrite): Promise<InboxEvent>;
}

/** Whether `store` keeps the outbox itself. */
export function writesOutbox(store: Store): store is OutboxStore {
  const candidate = store as Partial<OutboxLog>;
  return (
    typeof candidate.loadOutbox === "function" &&
    typeof candidate.saveOutbox === "function" &&
    typeof candidate.adoptOutbox === "function"
  );
}
