/**
 * `Mirror`: the handoff back (docs/design/continuity.md). A replicated fiber that another home
 * runs (the browser was fenced, or it never had the fiber: restore) is kept in the browser's own
 * store as a copy of the replica, so pages read the local stream as always and the page client
 * never knows where the fiber runs. The mirror reads `GET .../replica?after=<local head>` and
 * writes what it got with the store's ordinary calls (`mirror-copy.ts`): one `commit` per read,
 * under the local record's generation, with the chunks past the local head (the store's
 * `stream_gap` rule keeps the copy contiguous), the journal, snapshot and record fields the
 * replica has, `home` included, which marks the local record as a mirror for good, and the
 * replica's inbox while the copy's is a prefix of it.
 *
 * The first read of a fiber in a worker's life is whole and compares the whole local stream with
 * the replica's. A browser killed before shipping its last commits holds chunks the replica never
 * got (no page saw them: Rule B) where the edge wrote its own; such a copy is rebuilt: deleted
 * and created again from the replica (a reader open on it meanwhile gets `fiber_not_found`;
 * the host makes stream requests wait for the first read, so a page that opens one after the
 * worker started never sees the old copy). Each answer carries a cursor naming the state it
 * described; once applied, the next read sends it and gets only what changed since.
 *
 * Live: `follow` asks the edge to hold each read until the replica changed (`waitMs`, 20 s by
 * default, below the 30 s a browser lets an idle worker live) and asks again as soon as an answer
 * came, until the copy holds the fiber's end: one request per change of the replica, or per
 * `waitMs` while nothing changes. Readers poll the store on their own (`pollIntervalMs`). A held
 * read keeps a connection open, and a browser opens at most six per origin over HTTP/1.1, which
 * the shipper needs too: at most `maxHeldReads` are held at once, other fibers are read every
 * `pollMs`, as is an edge from before held reads. Events for a fiber that is away go to the edge.
 */

import { type FiberRecord, isTerminal } from "../core/records";
import type { Store } from "../core/store";
import { isNothingNew, type ReplicaAnswer, type ReplicaReadOptions } from "../edge/replica-read";
import {
  type AppliedAnswer,
  applyAnswer,
  CopyChangedError,
  isStreamPrefix,
  rebuildCopy,
} from "./mirror-copy";

/** Where the mirror reads the replica (an `EdgeLink`). */
export interface ReplicaSource {
  /**
   * The replica with its chunks past `after` (whole, or what changed since `options.cursor`), or
   * `undefined` when the edge has no such fiber.
   */
  readReplica(
    fiberId: string,
    after: number,
    options?: ReplicaReadOptions,
  ): Promise<ReplicaAnswer | undefined>;
}

/** Options of `new Mirror`. */
export interface MirrorOptions {
  /** The browser's own store (not the replicating wrapper, which refuses writes of away fibers). */
  store: Store;
  source: ReplicaSource;
  /**
   * How long the edge may hold a followed fiber's read until the replica changed (default 20 s;
   * the edge holds at most 25 s). `0`: no held reads, a read every `pollMs`.
   */
  waitMs?: number;
  /**
   * The least time between two reads of a fiber when the first one brought changes (default
   * 100 ms): a fiber streaming at the edge is read at most about ten times a second, not once per
   * round trip (every answer costs the edge a read of the whole replica).
   */
  minGapMs?: number;
  /** At most this many reads held at once (default 4); other followed fibers are read every `pollMs`. */
  maxHeldReads?: number;
  /**
   * The pause before the next read of a followed fiber whose read was not held (an edge from
   * before held reads, `waitMs: 0`, more fibers than `maxHeldReads`), and, four times it, after
   * a failed read (default 500 ms).
   */
  pollMs?: number;
  /** Where failures of a followed fiber are reported (default `console.error`); it is read again later. */
  onError?(error: unknown, fiberId: string): void;
  /** Told of the local copy after each read of a followed fiber (continuity's `comeHome` looks). */
  onSynced?(fiberId: string, record: FiberRecord): void;
  /**
   * Taken around every write of a copy (default: none): the fiber's runner lock, if it is free,
   * and whether the fiber is this browser's own again (it came home in another worker of the
   * origin, which runs it now). `null`: the lock is held here (a runner, or the other worker's
   * mirror or hand-back), so nothing is written and the fiber is read again later; `home`: the
   * mirror lets the fiber go, as after `handBack`. `copyHold` is a browser home's.
   * Two worker versions share one store: without it, the mirror of the one the fiber did not come
   * home to would write (or rebuild) the copy the other runs.
   */
  hold?(fiberId: string): Promise<{ home: boolean; release(): void } | null>;
}

/** What one `sync` did. */
export type MirrorSync =
  /** The local copy holds the replica as read (`rebuilt`: the old copy diverged, or there was none). */
  | { status: "mirrored"; record: FiberRecord; rebuilt: boolean; appended: number }
  /** The edge has no replica of the fiber. */
  | { status: "missing" }
  /** The fiber was handed back to this home (`handBack`), here or in another worker: the mirror writes it no more. */
  | { status: "home" }
  /** The fiber's lock is held here (a runner, or the other worker's mirror or hand-back; `MirrorOptions.hold`): nothing was written. */
  | { status: "busy" };

/** A `sync` as the mirror ran it: what it did, and how the read went (for `follow`). */
type Synced = MirrorSync & {
  /** The edge held the read (a delta answer to a read that asked it to wait). */
  held?: boolean;
  /** The answer had nothing new. */
  nothingNew?: boolean;
  /** The answer was the whole replica. */
  whole?: boolean;
  /** How long the read took (ms). */
  readMs?: number;
  inbox?: AppliedAnswer["inbox"];
};

/**
 * Keeps local copies of replicas.
 *
 * Failure semantics: each `sync` is one read and a few store calls (events enqueued, then one
 * commit); a failed read writes nothing, and a write the store refuses (fenced by a concurrent
 * writer, `stream_gap`) leaves the copy as it was, to be read again whole. Syncs of one fiber run
 * one at a time; `sync` and `handBack` cut a held read of the fiber short rather than wait for it.
 */
export class Mirror {
  readonly #store: Store;
  readonly #source: ReplicaSource;
  readonly #pollMs: number;
  readonly #waitMs: number;
  readonly #maxHeldReads: number;
  readonly #minGapMs: number;
  readonly #report: (error: unknown, fiberId: string) => void;
  /** Fibers whose local copy was compared whole with the replica in this worker's life. */
  readonly #checked = new Set<string>();
  /** Per fiber, the cursor of the last answer its copy took whole (the next read sends it). */
  readonly #cursors = new Map<string, string>();
  /** Held reads in flight, by fiber: aborted by `sync`, `handBack`, `unfollow` and `stop`. */
  readonly #holding = new Map<string, AbortController>();
  /** Fibers whose held read was cut short (their next read follows at once, unreported). */
  readonly #cut = new Set<string>();
  readonly #queues = new Map<string, Promise<unknown>>();
  readonly #followed = new Map<string, ReturnType<typeof setTimeout> | undefined>();
  /** Fibers handed back to this home: their copy is the fiber itself now, not the mirror's. */
  readonly #released = new Set<string>();
  /** Per fiber, the replica's stream head this worker's last write brought the copy up to. */
  readonly #heads = new Map<string, number>();
  readonly #hold: MirrorOptions["hold"];
  readonly #onSynced: MirrorOptions["onSynced"];
  #stopped = false;

  constructor(options: MirrorOptions) {
    this.#store = options.store;
    this.#source = options.source;
    this.#pollMs = options.pollMs ?? 500;
    this.#waitMs = options.waitMs ?? 20_000;
    this.#maxHeldReads = options.maxHeldReads ?? 4;
    this.#minGapMs = options.minGapMs ?? 100;
    this.#onSynced = options.onSynced;
    this.#hold = options.hold;
    this.#report =
      options.onError ??
      ((error, id) => console.error(`[fiberline/continuity] mirroring fiber ${id}:`, error));
  }

  /** Fibers being followed now. */
  get following(): string[] {
    return [...this.#followed.keys()];
  }

  /** Whether the local copy of `fiberId` was brought up to the replica in this worker's life. */
  synced(fiberId: string): boolean {
    return this.#checked.has(fiberId);
  }

  /**
   * The highest seq of `fiberId`'s copy this worker wrote from the replica (`undefined` before its
   * first write). Of a fiber that is away, the copy holds nothing past it that any page may see:
   * another worker of the origin the fiber came home to may have appended chunks it has not
   * shipped yet (Rule B), which this one learns only at its next write.
   */
  copiedHead(fiberId: string): number | undefined {
    return this.#checked.has(fiberId) ? this.#heads.get(fiberId) : undefined;
  }

  /** Brings the local copy of `fiberId` up to the replica, once. */
  async sync(fiberId: string): Promise<MirrorSync> {
    this.#cutHeldRead(fiberId);
    const {
      held: _held,
      nothingNew: _nothingNew,
      readMs: _readMs,
      inbox: _inbox,
      ...result
    } = await this.#queued(fiberId, () => this.#sync(fiberId, {}));
    return result;
  }

  /**
   * The handoff back (`comeHome`), once the arbiter granted this home the fiber: in the fiber's
   * turn (no read of the mirror runs beside it; a held one is cut short), brings the local copy
   * up to the replica with a whole read, its inbox included (so the events this home enqueues
   * next get the seqs the replica expects), then calls `adopt` with the copy's record, and stops
   * mirroring the fiber for good if `adopt` resolves (`track` starts again, should the fiber move
   * away later). A copy whose inbox diverged from the replica's (events this home buffered and
   * never shipped) is rebuilt.
   *
   * Resolves with the copy's record once `adopt` resolved; with `"home"` when the fiber came home
   * in another worker of the origin (`MirrorOptions.hold`: nothing written, `adopt` not called,
   * the mirror lets it go), or `"busy"` while its lock is held here (nothing written: ask again).
   *
   * Failure semantics: a failed read or write rejects before `adopt` runs, and the fiber stays
   * mirrored; the caller asks again (the arbiter grants the same home the same epoch again).
   */
  handBack(
    fiberId: string,
    adopt: (record: FiberRecord) => Promise<void>,
  ): Promise<FiberRecord | "home" | "busy"> {
    this.#cutHeldRead(fiberId);
    return this.#queued(fiberId, async () => {
      // Held from the read to the adoption: no runner here, and no other worker's mirror or
      // hand-back, writes the copy between the two.
      const held = await this.#held(fiberId);
      if (held === "home" || held === "busy") return held;
      try {
        const synced = await this.#sync(fiberId, { whole: true, held: true });
        if (synced.status !== "mirrored")
          throw new Error(`Fiber ${fiberId} has no replica at the edge to take back from.`);
        let record = synced.record;
        if (synced.inbox === "diverged") {
          const replica = await this.#source.readReplica(fiberId, 0);
          if (replica === undefined) throw new Error(`Fiber ${fiberId} has no replica at the edge any more.`);
          if (replica.type === "delta")
            throw new Error(`The edge answered a whole read of ${fiberId} with a delta.`);
          this.#cursors.delete(fiberId);
          record = await rebuildCopy(this.#store, record, replica);
        }
        await adopt(record);
        this.#letGo(fiberId);
        return record;
      } finally {
        held?.release();
      }
    });
  }

  /** Writes `fiberId`'s copy no more: it is this browser's own again (`handBack`, here or in another worker). */
  #letGo(fiberId: string): void {
    this.#released.add(fiberId);
    this.#checked.delete(fiberId);
    this.#cursors.delete(fiberId);
    this.#heads.delete(fiberId);
    this.unfollow(fiberId);
  }

  /**
   * `MirrorOptions.hold` for a write of `fiberId`'s copy: `undefined` without the hook, `"busy"`
   * when its lock is held here, `"home"` (the fiber let go) when it came home in
   * another worker, or the hold to release once written.
   */
  async #held(fiberId: string): Promise<{ release(): void } | "home" | "busy" | undefined> {
    if (this.#hold === undefined) return undefined;
    const held = await this.#hold(fiberId);
    if (held === null) return "busy";
    if (!held.home) return held;
    held.release();
    this.#letGo(fiberId);
    return "home";
  }

  /** Mirrors `fiberId` again (it moved away once more after `handBack`). */
  track(fiberId: string): void {
    this.#released.delete(fiberId);
  }

  /**
   * Forgets all it knew of `fiberId`'s copy (a fiber under that id was collected or created here:
   * whatever comes next under the id is another fiber) and stops following it.
   */
  forget(fiberId: string): void {
    this.unfollow(fiberId);
    this.#released.delete(fiberId);
    this.#checked.delete(fiberId);
    this.#cursors.delete(fiberId);
    this.#heads.delete(fiberId);
  }

  /** Stops following `fiberId` (its copy is kept). */
  unfollow(fiberId: string): void {
    const timer = this.#followed.get(fiberId);
    if (timer !== undefined) clearTimeout(timer);
    this.#followed.delete(fiberId);
    this.#cutHeldRead(fiberId);
  }

  /**
   * Syncs `fiberId` until its local copy holds the fiber's end (or `stop`): at once, then again
   * as soon as a held read was answered with nothing new, `minGapMs` after one that brought
   * changes, after `pollMs` when the read was not held, after four times that when it failed.
   */
  follow(fiberId: string): void {
    if (this.#stopped || this.#followed.has(fiberId)) return;
    this.#followed.set(fiberId, undefined);
    // The first read is answered at once, so `onSynced` hears of the copy before any read waits.
    let first = true;
    const tick = async (): Promise<void> => {
      let pause = this.#pollMs;
      try {
        const opening = first;
        first = false;
        const hold = !opening && this.#waitMs > 0 && this.#holding.size < this.#maxHeldReads;
        const result = await this.#queued(fiberId, () =>
          this.#sync(fiberId, { waitMs: hold ? this.#waitMs : 0 }),
        );
        if (result.status === "busy") {
          // Its lock is held here (a claim the guard refuses, a come-home, the other worker's
          // mirror): read again later.
        } else if (result.status !== "mirrored" || isTerminal(result.record.status)) {
          this.#followed.delete(fiberId);
          return;
        } else {
          this.#onSynced?.(fiberId, result.record);
          if (this.#cut.delete(fiberId)) pause = 0;
          else if (this.#asksAtOnce(fiberId, result, opening))
            // An answer that carried changes: the next one waits `minGapMs`, so a fiber the edge
            // streams fast is read a few times a second, each answer carrying what came meanwhile.
            pause = result.nothingNew === true || opening ? 0 : this.#minGapMs;
        }
      } catch (error) {
        if (this.#cut.delete(fiberId)) pause = 0;
        else {
          this.#report(error, fiberId);
          pause = this.#pollMs * 4;
        }
      }
      if (this.#stopped || !this.#followed.has(fiberId)) return;
      this.#followed.set(
        fiberId,
        setTimeout(() => void tick(), pause),
      );
    };
    void tick();
  }

  /** Stops following every fiber. */
  stop(): void {
    this.#stopped = true;
    for (const timer of this.#followed.values()) if (timer !== undefined) clearTimeout(timer);
    this.#followed.clear();
    for (const id of [...this.#holding.keys()]) this.#cutHeldRead(id);
  }

  #queued<T>(fiberId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(fiberId) ?? Promise.resolve();
    const next = previous.then(work, work);
    this.#queues.set(fiberId, next);
    const done = () => {
      if (this.#queues.get(fiberId) === next) this.#queues.delete(fiberId);
    };
    next.then(done, done);
    return next;
  }

  /**
   * Whether the next read of a followed fiber goes at once: after a held read (the edge waited),
   * and after the opening read or a whole answer with a cursor (the next read can be held). An
   * edge that answers "nothing new" long before the wait is not holding reads: it is polled.
   */
  #asksAtOnce(fiberId: string, result: Synced, opening: boolean): boolean {
    if (this.#waitMs === 0 || !this.#cursors.has(fiberId)) return false;
    if (result.held) return !(result.nothingNew === true && (result.readMs ?? 0) < this.#waitMs / 2);
    return opening || result.whole === true;
  }

  #cutHeldRead(fiberId: string): void {
    const held = this.#holding.get(fiberId);
    if (held === undefined) return;
    this.#holding.delete(fiberId);
    this.#cut.add(fiberId);
    held.abort();
  }

  /**
   * One read and its writes. `whole`: without the cursor (a hand-back). `waitMs`: the edge may
   * hold the read that long (only with a cursor: a whole read is answered at once).
   */
  async #sync(
    fiberId: string,
    { whole = false, waitMs = 0, held = false }: { whole?: boolean; waitMs?: number; held?: boolean },
  ): Promise<Synced> {
    if (this.#released.has(fiberId)) return { status: "home" };
    const store = this.#store;
    const local = await store.getFiber(fiberId);
    const checked = local !== undefined && this.#checked.has(fiberId);
    const cursor = checked && !whole ? this.#cursors.get(fiberId) : undefined;
    const options: ReplicaReadOptions = {};
    let holding: AbortController | undefined;
    if (cursor !== undefined) {
      options.cursor = cursor;
      if (waitMs > 0) {
        holding = new AbortController();
        this.#holding.set(fiberId, holding);
        options.waitMs = waitMs;
        options.signal = holding.signal;
      }
    }
    const startedAt = Date.now();
    let answer: ReplicaAnswer | undefined;
    try {
      answer = await this.#source.readReplica(fiberId, checked ? local.streamHead : 0, options);
    } finally {
      if (holding !== undefined && this.#holding.get(fiberId) === holding) this.#holding.delete(fiberId);
    }
    const readMs = Date.now() - startedAt;
    if (answer === undefined) return { status: "missing" };
    if (answer.type === "delta" && cursor === undefined)
      throw new Error(`The edge answered a whole read of fiber ${fiberId} with a delta.`);
    const hold = held ? undefined : await this.#held(fiberId);
    if (hold === "home" || hold === "busy") return { status: hold };
    try {
      return await this.#write(fiberId, local, answer, checked, holding !== undefined, readMs);
    } finally {
      hold?.release();
    }
  }

  /** The writes of one `#sync` read: `answer` onto the copy `local` (`checked`: compared whole before). */
  async #write(
    fiberId: string,
    local: FiberRecord | undefined,
    answer: ReplicaAnswer,
    checked: boolean,
    heldRead: boolean,
    readMs: number,
  ): Promise<Synced> {
    const store = this.#store;
    // The copy is about to change: the cursor is taken again once this answer is written (a
    // failure from here on reads whole next time; one before it left the copy as the cursor says).
    this.#cursors.delete(fiberId);
    if (!checked) {
      const replica = answer as Exclude<ReplicaAnswer, { type: "delta" }>;
      const kept = local !== undefined && (await isStreamPrefix(store, fiberId, replica.chunks));
      if (!kept) {
        // Synced only once rebuilt: the host shows a synced copy whole (Rule B for an away
        // fiber), and until the delete lands the old copy still holds chunks no page may see.
        const record = await rebuildCopy(store, local, replica);
        this.#heads.set(fiberId, record.streamHead);
        this.#checked.add(fiberId);
        if (replica.cursor !== undefined) this.#cursors.set(fiberId, replica.cursor);
        return {
          status: "mirrored",
          record,
          rebuilt: true,
          appended: replica.chunks.length,
          inbox: "aligned",
          whole: true,
        };
      }
      this.#checked.add(fiberId);
    }
    let applied: AppliedAnswer;
    try {
      applied = await applyAnswer(store, local as FiberRecord, answer);
    } catch (error) {
      // Someone else wrote the copy meanwhile: compare it whole at the next read.
      if (error instanceof CopyChangedError) this.#checked.delete(fiberId);
      throw error;
    }
    this.#heads.set(fiberId, applied.record.streamHead);
    if (answer.cursor !== undefined) this.#cursors.set(fiberId, answer.cursor);
    return {
      status: "mirrored",
      record: applied.record,
      rebuilt: false,
      appended: applied.appended,
      inbox: applied.inbox,
      held: heldRead && answer.type === "delta",
      nothingNew: isNothingNew(answer),
      whole: answer.type !== "delta",
      readMs,
    };
  }
}
