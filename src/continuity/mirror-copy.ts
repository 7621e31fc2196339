/**
 * The writes a `Mirror` makes to its local copy of a replica, with the store's ordinary calls:
 * an answer of `GET .../replica` (whole or a delta) applied in one `commit` under the copy's
 * generation (chunks past the copy's head, so `stream_gap` keeps it contiguous), the replica's
 * events the copy lacks enqueued first at the replica's seqs, and a copy rebuilt from scratch
 * when it diverged. Used by `mirror.ts` only.
 */

import { type FiberRecord, type InboxEvent, isTerminal, type StreamChunk } from "../core/records";
import type { Store, WriteGroup } from "../core/store";
import type { ReplicaAnswer, ReplicaSnapshot } from "../edge/replica-read";
import { encodeValue } from "../edge/value-codec";

/** Record fields a mirror copies from the replica (the rest are the local store's own). */
const MIRRORED_FIELDS = [
  "version",
  "input",
  "status",
  "updatedAt",
  "emitOrdinal",
  "epoch",
  "recovery",
  "stalledRecoveries",
  "progressMark",
  "wakeAt",
  "waitingFor",
  "result",
  "error",
  "endedAt",
  "home",
] as const satisfies ReadonlyArray<keyof FiberRecord>;

/**
 * What became of the answer's inbox: copied (`aligned`); left as it was because the copy holds
 * events the replica never got (`diverged`: a hand-back rebuilds it); for a fiber that ended,
 * the consumed marks of the events the copy holds copied and no event added (`ended`: an ended
 * fiber takes no events); or the answer carried none (`unchanged`).
 */
export type InboxOutcome = "aligned" | "diverged" | "ended" | "unchanged";

/** What `applyAnswer` wrote. */
export interface AppliedAnswer {
  record: FiberRecord;
  appended: number;
  inbox: InboxOutcome;
}

/** The copy changed under the mirror (another writer's claim): it must be compared whole again. */
export class CopyChangedError extends Error {
  override name = "CopyChangedError";
}

/**
 * Applies `answer` to the local copy `local` (which holds the replica as the answer's request
 * said: its head was `after`, and for a delta it held the cursor's state). A whole answer from an
 * edge without cursors that shows no new chunk and the same `updatedAt`, status and home epoch is
 * not written again (each such answer carries the whole journal).
 *
 * Failure semantics: the events are enqueued first, then one `commit`; a failure in between
 * leaves events the replica holds at their seqs, which the next answer finds in place. A fenced
 * commit rejects with `CopyChangedError`, a `stream_gap` with the store's error, writing nothing.
 */
export async function applyAnswer(
  store: Store,
  local: FiberRecord,
  answer: ReplicaAnswer,
): Promise<AppliedAnswer> {
  const fiberId = local.id;
  const chunks = answer.chunks.filter((c) => c.seq > local.streamHead);
  // Unclaimed: the mirror of another worker (an old and a new version) may write this copy too.
  const group: WriteGroup = { fiberId, generation: local.generation, unclaimed: true };
  if (answer.type === "delta") {
    if (answer.record) group.fiber = mirroredFields(answer.record);
    if (answer.journal) {
      if (answer.journal.from === 0) group.clearJournal = true;
      group.journal = answer.journal.entries;
    }
    if (answer.snapshot !== undefined) group.snapshot = answer.snapshot;
  } else {
    const { record } = answer;
    const unchanged =
      answer.cursor === undefined &&
      chunks.length === 0 &&
      record.updatedAt === local.updatedAt &&
      record.status === local.status &&
      record.home?.epoch === local.home?.epoch;
    if (!unchanged) {
      group.fiber = mirroredFields(record);
      group.clearJournal = true;
      group.journal = answer.journal;
      group.snapshot = answer.snapshot ?? null;
    }
  }
  if (chunks.length > 0) group.chunks = chunks;
  let inbox: InboxOutcome = "unchanged";
  if (answer.inbox !== undefined) {
    const ended = isTerminal((answer.record ?? local).status);
    const copied = await copyEvents(store, fiberId, answer.inbox, !ended);
    if (copied === "diverged") inbox = copied;
    else {
      inbox = ended ? "ended" : "aligned";
      if (copied.marks.length > 0) group.consumeEvents = copied.marks;
      // An event enqueued for a wait moves the copy's `wakeAt` (the store's `dueForEvent`):
      // the replica's fields are written over it (unchanged since the cursor, when not sent).
      if (copied.added > 0) group.fiber ??= mirroredFields(answer.record ?? local);
    }
  }
  const { fiberId: _id, generation: _generation, unclaimed: _unclaimed, ...writes } = group;
  if (Object.keys(writes).length === 0) return { record: local, appended: 0, inbox };
  const result = await store.commit([group]);
  if (result.fenced.length > 0)
    throw new CopyChangedError(
      `The local copy of fiber ${fiberId} changed while it was mirrored; it is read again.`,
    );
  const record = (await store.getFiber(fiberId)) ?? local;
  return { record, appended: chunks.length, inbox };
}

/**
 * Replaces the local copy with the replica (`replica` read from seq 0): one create with every
 * chunk, the replica's events enqueued, then the journal, snapshot and consumed marks.
 * Resolves with the new copy's record.
 *
 * Failure semantics: the old copy is deleted first; a failure after leaves a partial copy that
 * the next first read finds diverged (or missing) and rebuilds again.
 */
export async function rebuildCopy(
  store: Store,
  local: FiberRecord | undefined,
  replica: ReplicaSnapshot,
): Promise<FiberRecord> {
  const fiberId = replica.record.id;
  if (local !== undefined) await store.deleteFibers([fiberId]);
  const { owner: _owner, leaseUntil: _leaseUntil, ...rest } = replica.record;
  const head = replica.chunks.at(-1)?.seq ?? 0;
  const created = await store.createFiber({ ...rest, streamHead: head }, replica.chunks);
  if (created.status === "exists")
    throw new CopyChangedError(
      `Fiber ${fiberId} was created here while it was restored from the edge; it is read again.`,
    );
  const copied = await copyEvents(store, fiberId, replica.inbox, !isTerminal(replica.record.status));
  await store.commit([
    {
      fiberId,
      generation: created.record.generation,
      unclaimed: true,
      // Over what enqueuing the events changed (`wakeAt`).
      fiber: mirroredFields(replica.record),
      clearJournal: true,
      journal: replica.journal,
      snapshot: replica.snapshot ?? null,
      ...(copied !== "diverged" && copied.marks.length > 0 ? { consumeEvents: copied.marks } : {}),
    },
  ]);
  return (await store.getFiber(fiberId)) ?? created.record;
}

/** Whether every local chunk is the replica's chunk at the same seq (the copy only lags). */
export async function isStreamPrefix(
  store: Store,
  fiberId: string,
  replicaChunks: readonly StreamChunk[],
): Promise<boolean> {
  const localChunks = await store.readStream(fiberId, 0);
  if (localChunks.length > replicaChunks.length) return false;
  return localChunks.every((chunk, i) => sameChunk(chunk, replicaChunks[i]));
}

/**
 * Enqueues the replica's events the local inbox lacks (they get the replica's seqs; with `add`
 * only) and returns how many it added and the consumed marks that make the events the copy then
 * holds match, or `"diverged"` when the local inbox is not a prefix of the replica's (events
 * buffered here and never shipped, dropped by a fence).
 */
async function copyEvents(
  store: Store,
  fiberId: string,
  replicaInbox: readonly InboxEvent[],
  add: boolean,
): Promise<{ added: number; marks: Array<{ seq: number; consumedBy: number | null }> } | "diverged"> {
  const local = await store.readInbox(fiberId);
  if (local.length > replicaInbox.length || !local.every((e, i) => sameEvent(e, replicaInbox[i])))
    return "diverged";
  const inbox = add ? replicaInbox : replicaInbox.slice(0, local.length);
  for (const event of inbox.slice(local.length)) {
    const { name, payload, at, eventId } = event;
    const stored = await store.enqueueEvent({ fiberId, name, payload, at, ...(eventId ? { eventId } : {}) });
    if (stored.seq !== event.seq)
      throw new CopyChangedError(
        `Fiber ${fiberId}'s inbox took seq ${stored.seq} where the replica has ${event.seq}.`,
      );
  }
  const consumed = new Map(local.map((e) => [e.seq, e.consumedBy]));
  const marks = inbox
    .filter((e) => consumed.get(e.seq) !== e.consumedBy)
    .map((e) => ({ seq: e.seq, consumedBy: e.consumedBy ?? null }));
  return { added: inbox.length - local.length, marks };
}

/** The replica's record fields a mirror keeps (`undefined` ones delete the local field). */
export function mirroredFields(record: FiberRecord): Partial<FiberRecord> {
  const patch: Record<string, unknown> = {};
  for (const key of MIRRORED_FIELDS) patch[key] = record[key];
  return patch as Partial<FiberRecord>;
}

function sameEvent(a: InboxEvent, b: InboxEvent | undefined): boolean {
  return (
    b !== undefined &&
    a.seq === b.seq &&
    a.name === b.name &&
    a.at === b.at &&
    encodeValue(a.payload) === encodeValue(b.payload)
  );
}

function sameChunk(a: StreamChunk, b: StreamChunk | undefined): boolean {
  return (
    b !== undefined &&
    a.seq === b.seq &&
    a.type === b.type &&
    a.at === b.at &&
    encodeValue(a.data) === encodeValue(b.data)
  );
}
