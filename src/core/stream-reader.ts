/**
 * Reading a fiber's durable stream and waiting for its end: replay from storage, then live chunks
 * from the runtime's `StreamHub`, falling back to storage on any gap and, when nothing arrives, on
 * a poll (another runtime may be writing the fiber). Used by `Runtime.events` and `Runtime.result`.
 */

import { CancelledError, deserializeError, FiberNotFoundError } from "./errors";
import { type FiberEvent, type FiberRecord, pastTheEnd, type StreamChunk } from "./records";
import { readStreamAndRecord, type Store } from "./store";
import { ChunkInbox, type StreamHub, startsWithin } from "./stream-hub";

/** Where a reader reads from. */
export interface StreamSource {
  store: Store;
  hub: StreamHub;
  /** How long to wait for live chunks before looking at storage again. */
  pollIntervalMs: number;
  /**
   * The highest seq readers may see of a fiber (continuity's Rule B: shipped chunks only); all
   * that is durable when omitted.
   */
  visibleHead?: (fiberId: string) => number;
}

const PAGE = 512;

/**
 * Yields the chunks of fiber `id` with `seq > after`, each once and in order, ending after
 * `fiber.end` or when `signal` aborts. Rejects with `fiber_not_found` for an unknown fiber.
 */
export async function* readStream(
  source: StreamSource,
  id: string,
  after: number,
  signal?: AbortSignal,
): AsyncGenerator<FiberEvent> {
  for await (const batch of readStreamBatches(source, id, after, signal)) yield* batch;
}

/**
 * The same stream as `readStream`, in batches of whatever is available at once (a page of storage,
 * or the chunks one commit made durable), so a transport can send each batch in one write.
 *
 * Ends after `fiber.end`, at once when `after` is at or past the end of an ended fiber, and with
 * `fiber_not_found` when the fiber is collected mid-read or its id comes to name another fiber
 * (collected and started again): a reader never yields another fiber's chunks. It never spins:
 * when storage has nothing new (or, which the stores refuse, a hole) it waits for a commit or a
 * poll interval.
 */
export async function* readStreamBatches(
  source: StreamSource,
  id: string,
  after: number,
  signal?: AbortSignal,
  opened?: OpenedReader,
): AsyncGenerator<FiberEvent[]> {
  const { store, hub, pollIntervalMs } = source;
  // Subscribe before the first read of chunks, so nothing committed in between is missed (an
  // `opened` reader subscribed before its first page was read).
  const inbox = opened?.inbox ?? new ChunkInbox();
  const unsubscribe = opened?.unsubscribe ?? hub.subscribe(id, inbox.push);
  // In the same turn, the first chunks of a fiber this runtime started and runs, if it still
  // keeps them (`StreamHub.track`): they and what the subscription receives from now on are the
  // stream from the tail's first chunk, with no gap and no overlap, and no read of storage.
  const tail = opened ? undefined : hub.tail(id);
  // Only a tail with something to send after the cursor proves the fiber exists and has not
  // ended; at or past its end the reader asks storage, which also answers for an end written
  // by another runtime.
  const fromMemory = tail !== undefined && startsWithin(tail.chunks, after);
  // The page an `opened` reader has already read: its first read of storage.
  let firstPage = opened?.first;
  try {
    let identity: string;
    if (fromMemory) {
      identity = tail.identity;
    } else {
      const first = firstPage ? firstPage.record : await store.getFiber(id);
      if (!first) throw new FiberNotFoundError(id);
      identity = identityOf(first);
      if (pastTheEnd(first, after)) return;
    }
    let cursor = after;
    let fromTail = fromMemory && tail.identity === identity;
    let fromStore = !fromTail;
    while (!signal?.aborted) {
      let chunks: readonly StreamChunk[];
      if (fromTail && tail !== undefined) {
        chunks = tail.chunks.filter((c) => c.seq > cursor);
        fromTail = false;
      } else if (fromStore) {
        // The page an `opened` reader read after subscribing comes first; what was published
        // since stays in the inbox for the live path (overlapping the page, never past a gap).
        const live = firstPage ? [] : inbox.take();
        if (startsWithin(live, cursor) && !restarted(live, cursor)) {
          // A commit published what storage would give (e.g. one big batch landed while a page
          // was being read): take it from memory instead of reading it again page by page.
          chunks = live.filter((c) => c.seq > cursor);
          fromStore = false;
        } else {
          // Live chunks taken and dropped here are durable, so the read below sees them.
          const page = firstPage ?? (await readPage(source, id, cursor));
          firstPage = undefined;
          chunks = page.chunks;
          fromStore = page.more;
          const current = page.record;
          if (!current || identityOf(current) !== identity) throw new FiberNotFoundError(id);
          if (chunks.length === 0 && pastTheEnd(current, cursor)) return;
        }
      } else {
        const live = inbox.take();
        if (restarted(live, cursor)) {
          // A new fiber under this id started in this runtime: storage will say whose it is.
          fromStore = true;
          continue;
        }
        if (live[0] && live[0].seq > cursor + 1) {
          // A gap (chunks published before we subscribed, or by a commit we missed): read storage.
          fromStore = true;
          continue;
        }
        chunks = live.filter((c) => c.seq > cursor);
      }
      const batch: FiberEvent[] = [];
      let ended = false;
      let hole = false;
      for (const chunk of chunks) {
        if (chunk.seq !== cursor + 1) {
          hole = true;
          break;
        }
        cursor = chunk.seq;
        batch.push({ seq: chunk.seq, type: chunk.type, data: chunk.data, at: chunk.at });
        if (chunk.type === "fiber.end") {
          ended = true;
          break;
        }
      }
      if (batch.length > 0) yield batch;
      if (ended) return;
      if (hole) {
        // Never a tight loop: read storage again after the next commit or poll.
        fromStore = true;
        await inbox.wait(pollIntervalMs, signal);
        continue;
      }
      if (fromStore) continue;
      await inbox.wait(pollIntervalMs, signal);
      // Nothing arrived live: another runtime may be writing this fiber, so look at storage.
      if (inbox.size === 0) fromStore = true;
    }
  } finally {
    unsubscribe();
  }
}

/** One page of a fiber's stream read from storage, with the record read beside it. */
export interface StreamPage {
  /** The record as read with the chunks (`undefined`: no such fiber). */
  record: FiberRecord | undefined;
  /** The chunks after the cursor that readers may see, in order. */
  chunks: StreamChunk[];
  /** Whether storage may hold more right after these chunks (the page was full). */
  more: boolean;
}

/** A reader subscribed to a fiber's live chunks, with the first page it read after subscribing. */
export interface OpenedReader {
  inbox: ChunkInbox;
  unsubscribe: () => void;
  first: StreamPage;
}

/**
 * Reads one page of `id`'s stream after `cursor`: the chunks and the record in one transaction
 * where the store can (`readStreamAndRecord`), cut at what readers may see.
 */
async function readPage(source: StreamSource, id: string, cursor: number): Promise<StreamPage> {
  // How far readers may see (continuity's Rule B), asked before the read: it only rises, and
  // what is at or below it is the replica's and is never rewritten, while a chunk above it may be
  // (a continuity mirror rebuilds an unshipped tail) between a read and a later look at the head,
  // which would then show the old chunk.
  const visible = source.visibleHead?.(id);
  // Read first, then the caller checks whose chunks they were: the id may have been collected and
  // started again (a new fiber's stream starts over at seq 1).
  const read = await readStreamAndRecord(source.store, id, cursor, PAGE);
  if (visible !== undefined && read.chunks.some((c) => c.seq > visible)) {
    // Not shipped yet: the live path hands them over once they are.
    return { record: read.record, chunks: read.chunks.filter((c) => c.seq <= visible), more: false };
  }
  return { record: read.record, chunks: read.chunks, more: read.chunks.length === PAGE };
}

/**
 * Subscribes to `id`'s live chunks, then reads the first page after `after` (one read of storage,
 * the record with it): for a caller that must answer from the record before it streams (the event
 * route's 404 and 204), so the stream's first chunk does not wait for a second read. The caller
 * either reads the batches of `readStreamBatches(..., opened)` or calls `opened.unsubscribe()`.
 */
export async function openReader(source: StreamSource, id: string, after: number): Promise<OpenedReader> {
  const inbox = new ChunkInbox();
  const unsubscribe = source.hub.subscribe(id, inbox.push);
  try {
    return { inbox, unsubscribe, first: await readPage(source, id, after) };
  } catch (error) {
    unsubscribe();
    throw error;
  }
}

/** What tells one fiber from a later one under the same id (see `FiberRecord.createdGeneration`). */
export function identityOf(record: FiberRecord): string {
  return `${record.createdAt}:${record.createdGeneration ?? ""}`;
}

/** The `createdAt` an identity of `identityOf` was made from. */
export function createdAtOf(identity: string): number {
  return Number(identity.slice(0, identity.indexOf(":")));
}

/**
 * Resolves with fiber `id`'s result once it completes; rejects with its error, class and `code`
 * kept. With `visibleHead` (continuity's Rule B), only once the end is shipped too: an end the
 * other home never received may be replaced by what it does after a takeover.
 */
export async function awaitResult(source: StreamSource, id: string): Promise<unknown> {
  const { store, hub, pollIntervalMs, visibleHead } = source;
  const inbox = new ChunkInbox();
  const unsubscribe = hub.subscribe(id, inbox.push);
  try {
    for (;;) {
      // Emptied before the read, not after: a chunk published while the record is being read
      // (the fiber's end, as it happens) must wake the wait below, not be dropped with the rest.
      inbox.take();
      const record = await store.getFiber(id);
      if (!record) throw new FiberNotFoundError(id);
      const shown = visibleHead === undefined || visibleHead(id) >= record.streamHead;
      if (record.status === "completed" && shown) return record.result;
      if ((record.status === "failed" || record.status === "cancelled") && shown) {
        throw record.error ? deserializeError(record.error) : new CancelledError();
      }
      // Any chunk of this fiber (fiber.end among them) wakes us; the poll covers other runtimes.
      await inbox.wait(pollIntervalMs * 4);
    }
  } finally {
    unsubscribe();
  }
}

/**
 * Whether `live` holds the start of a new fiber under this id (collected, then started again in
 * this runtime) while the reader is past the old one's first chunk: only storage can say whose
 * stream it is, and it answers that this one is gone.
 */
function restarted(live: readonly StreamChunk[], cursor: number): boolean {
  return cursor >= 1 && live.some((c) => c.seq === 1 && c.type === "fiber.start");
}
