/**
 * The simulator's mirror source: a browser's `Mirror` reads the edge's replica store through it,
 * with `readReplicaWhenChanged` (the edge route's reader, held until the replica changed), and it
 * checks the incremental path: when the mirror sends back the cursor of an answer, the local copy
 * must hold exactly the replica state that answer described (journal, snapshot, record fields, and
 * the inbox where the copy's was a prefix of it), whatever deltas built it, and its stream must
 * be the replica's prefix. A copy that differs is the `mirror-copy-differs` violation.
 */

import { isDeepStrictEqual } from "node:util";
import type { ReplicaSource } from "../continuity/mirror";
import { mirroredFields } from "../continuity/mirror-copy";
import { type InboxEvent, isTerminal } from "../core/records";
import type { Store } from "../core/store";
import {
  type ReplicaReadOptions,
  type ReplicaSnapshot,
  readReplica,
  readReplicaWhenChanged,
} from "../edge/replica-read";
import type { WatchedStore } from "../edge/watched-store";
import type { Findings } from "./findings";
import type { Trace } from "./trace";

/** What a `CheckedMirrorSource` reads, writes and reports to. */
export interface CheckedMirrorOptions {
  /** The edge's replica store. */
  edge: WatchedStore;
  /** The browser's own store (read directly: no faults). */
  local: Store;
  findings: Findings;
  trace: Trace;
  /** Answers served whole and as deltas, and copies checked (shared by every launch). */
  counts: { whole: number; delta: number; checked: number };
  /** The planted `lossy-delta`: deltas lose their journal and inbox on the way. */
  lossy?: boolean;
  /**
   * Per fiber, the latest answers any worker's mirror was served (shared by the sources of the
   * workers of one update, the last few kept): a copy another worker's mirror may have written
   * since this one's cursor must hold the state this cursor names or one served since.
   */
  served?: Map<string, Array<{ by: CheckedMirrorSource; n: number; state: ReplicaSnapshot | undefined }>>;
  /**
   * The network between the mirror and the edge, crossed before the read and by its answer:
   * resolves after the way's delay, or rejects when nothing got through (the edge down, the link
   * cut, a request or its answer lost). Default: always through at once.
   */
  cross?: (way: "request" | "answer") => Promise<void>;
}

/** Orders the answers served to every source of a schedule. */
let serves = 0;

/** Reads the edge for a mirror, and checks the copy at every cursor the mirror sends back. */
export class CheckedMirrorSource implements ReplicaSource {
  readonly #o: CheckedMirrorOptions;
  /** Per `fiberId|cursor`, the whole replica state an answer with that cursor described, and when. */
  readonly #served = new Map<string, { state: ReplicaSnapshot; n: number }>();

  constructor(options: CheckedMirrorOptions) {
    this.#o = options;
  }

  async readReplica(fiberId: string, after: number, options: ReplicaReadOptions = {}) {
    if (options.cursor !== undefined) await this.#check(fiberId, options.cursor);
    const { edge, counts, cross } = this.#o;
    await cross?.("request");
    const answer = await readReplicaWhenChanged(edge, edge, fiberId, after, options);
    // Lost on the way back: the read changed nothing at the edge, and the mirror reads again.
    await cross?.("answer");
    if (answer === undefined || answer.cursor === undefined) return answer;
    const n = ++serves;
    if (answer.type === "delta") counts.delta++;
    else counts.whole++;
    // The state the cursor names, read whole: kept only if nothing changed it in between.
    const whole = await readReplica(edge, fiberId, 0);
    const state = whole?.cursor === answer.cursor ? whole : undefined;
    if (state !== undefined) this.#served.set(`${fiberId}|${answer.cursor}`, { state, n });
    const shared = this.#o.served;
    if (shared !== undefined)
      shared.set(fiberId, [...(shared.get(fiberId) ?? []), { by: this, n, state }].slice(-16));
    if (this.#o.lossy && answer.type === "delta") {
      const { journal: _journal, inbox: _inbox, ...lossy } = answer;
      return lossy;
    }
    return answer;
  }

  async #check(fiberId: string, cursor: string): Promise<void> {
    const key = `${fiberId}|${cursor}`;
    const kept = this.#served.get(key);
    if (kept === undefined) return;
    this.#served.delete(key);
    // Another worker's mirror may have written the copy since with what it was served.
    const since = (this.#o.served?.get(fiberId) ?? []).filter((s) => s.n > kept.n);
    if (since.some((s) => s.by !== this && s.state === undefined)) {
      this.#o.trace.add(
        "mirror",
        `${fiberId} copy not checked: another worker's mirror read a state not kept`,
      );
      return;
    }
    const others = since.some((s) => s.by !== this);
    const candidates = others
      ? [kept.state, ...since.flatMap((s) => (s.state === undefined ? [] : [s.state]))]
      : [kept.state];
    const { edge, local, findings, trace, counts } = this.#o;
    counts.checked++;
    const [record, journal, snapshot, inbox, stream, edgeStream] = await Promise.all([
      local.getFiber(fiberId),
      local.readJournal(fiberId),
      local.readSnapshot(fiberId),
      local.readInbox(fiberId),
      local.readStream(fiberId, 0),
      edge.readStream(fiberId, 0),
    ]);
    const differsFrom = (served: ReplicaSnapshot): string[] => {
      const differs: string[] = [];
      if (record === undefined) differs.push("no copy");
      else if (!isDeepStrictEqual(mirroredFields(record), mirroredFields(served.record)))
        differs.push("record");
      if (!isDeepStrictEqual(journal, served.journal)) differs.push("journal");
      if (!isDeepStrictEqual(snapshot, served.snapshot)) differs.push("snapshot");
      // The copy's inbox follows the replica's while it is a prefix of it and the fiber has not ended.
      const prefix =
        inbox.length <= served.inbox.length &&
        inbox.every((e, i) => sameIdentity(e, served.inbox[i] as (typeof served.inbox)[number]));
      if (
        prefix &&
        !isTerminal(served.record.status) &&
        !isDeepStrictEqual(inbox.map(marks), served.inbox.map(marks))
      )
        differs.push("inbox");
      return differs;
    };
    const found = candidates.map(differsFrom);
    const differs = found.some((d) => d.length === 0) ? [] : (found[0] as string[]);
    const rewritten = stream.find((c, i) => !isDeepStrictEqual(c, edgeStream[i]));
    if (rewritten) differs.push(`chunk #${rewritten.seq}`);
    if (differs.length > 0)
      findings.add(
        "mirror-copy-differs",
        `the copy differs from the replica state its cursor names${others ? " (and from every state another worker's mirror was served since)" : ""}: ${differs.join(", ")}`,
        fiberId,
      );
    else trace.add("mirror", `${fiberId} copy holds cursor ${cursor.slice(0, 24)}…`);
  }
}

/**
 * An event as a mirror copies it. A browser home's id (`browser:<device>@<epoch>:<seq>`) is left
 * out: the replica keeps it on the events that home shipped (for a send-on to find), and the
 * browser's own row keeps it or not as its store mints one (`IdbStore` does, `MemoryStore` not).
 */
function marks(e: InboxEvent): unknown[] {
  const eventId = e.eventId?.startsWith("browser:") ? undefined : e.eventId;
  return [e.seq, e.name, e.at, e.payload, eventId, e.consumedBy];
}

function sameIdentity(
  a: { seq: number; name: string; at: number; payload: unknown },
  b: { seq: number; name: string; at: number; payload: unknown } | undefined,
): boolean {
  return (
    b !== undefined &&
    a.seq === b.seq &&
    a.name === b.name &&
    a.at === b.at &&
    isDeepStrictEqual(a.payload, b.payload)
  );
}
