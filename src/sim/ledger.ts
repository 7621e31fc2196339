/**
 * The ledger: the simulator's own copy of what is durable, refreshed from the shared store
 * (through the `Store` interface) right after every write applies, before the writer learns the
 * outcome; a read that returns while a refresh is under way waits for it (`settled`), so the
 * ledger is never behind anything a runtime or a reader could have seen. Refreshes apply in the
 * order they were issued. On a `MemoryStore` a refresh reads exactly the state after its write,
 * so it re-reads only what the write can have changed; on an `IdbStore` its read transaction may
 * also see writes that committed after its own (their refreshes come later), so it re-reads the
 * whole fiber (the stream past what it holds: chunks are never rewritten). Each refresh checks the
 * write-time invariants: the stream grows by contiguous `seq` with no rewrite and `fiber.end`
 * last, a terminal fiber stays terminal, a consumed event is never consumed again, an event is
 * not accepted for an ended fiber, and a step chunk comes from the attempt the journal says is
 * running. The ledger keeps a fiber's last image after collection, for the final checks.
 */

import type { FiberRecord, InboxEvent, JournalEntry, StreamChunk } from "../core/records";
import { isTerminal } from "../core/records";
import type { Store } from "../core/store";
import type { Findings } from "./findings";
import type { Trace } from "./trace";

/** The suffix of a writer's name that marks a continuity mirror (`b4/mirror`): see `#checkStream`. */
export const MIRROR_WRITER = "/mirror";

/** The last durable state the simulator saw of one fiber. */
export interface FiberImage {
  record: FiberRecord | undefined;
  journal: JournalEntry[];
  stream: StreamChunk[];
  inbox: InboxEvent[];
  /** Virtual time at which each inbox event (by seq) was first seen durable. */
  inboxDurableAt: Map<number, number>;
  /** The fiber was deleted by a collection (its last image is kept). */
  collected: boolean;
}

/** What one write can have changed of one fiber besides its record. */
/** A write under way (`Ledger.begin`). */
export interface InFlight {
  readonly ids: readonly string[];
  readonly writer: string;
  end(): void;
}

export interface Touched {
  journal: boolean;
  inbox: boolean;
  /** Re-read the stream past this seq (a write touches no chunk at or below it); `undefined`: keep it. */
  streamFrom?: number;
}

/** The durable mirror of one schedule's store. */
export class Ledger {
  readonly #store: Store;
  readonly #findings: Findings;
  readonly #trace: Trace;
  readonly #now: () => number;
  readonly #exact: boolean;
  readonly images = new Map<string, FiberImage>();
  /** How many fibers under each id were seen created after an earlier one was collected. */
  readonly #lives = new Map<string, number>();
  /** Per id, the last image of each fiber under it that was collected and followed by another. */
  readonly #pastLives = new Map<string, FiberImage[]>();
  /** Called with each chunk the first time it is seen durable (after the write-time checks). */
  onChunk: ((chunk: StreamChunk) => void) | undefined;
  /**
   * Whether one write by `writer` may apply several of fiber `id`'s commits at once, a step's
   * start with chunks it emitted, its end, a later attempt, even a restart that cleared the
   * journal (the arbiter applying a shipment of an `awaitStart: false` fiber, whose steps begin
   * before their start is shipped). Each of those commits was checked on its own where it was
   * written; here a step chunk needs only its step's entry in the journal the write leaves (unless
   * the write restarted the run).
   */
  batched: ((writer: string, id: string) => boolean) | undefined;
  /** Settles once the last refresh issued has applied (and so every earlier one). */
  #tail: Promise<void> | undefined;
  readonly #inFlight = new Set<InFlight>();
  /** `<writer> <fiberId>` of each pick-up write (one holding `fiber.recovered`) under way. */
  readonly #pickUps = new Set<string>();

  /**
   * `store` reads the shared store directly (no delays, no faults). `exact`: a read issued right
   * after a write sees exactly that write's state, no later one (true of `MemoryStore`).
   */
  constructor(store: Store, findings: Findings, trace: Trace, now: () => number, exact = true) {
    this.#store = store;
    this.#findings = findings;
    this.#trace = trace;
    this.#now = now;
    this.#exact = exact;
  }

  /**
   * Marks a write on `ids` by `writer` as under way, until its refresh is issued (or it fails:
   * `end`). On a store that is not exact, a refresh's reads also see the writes under way when
   * they were issued: one that may hold a mirror's copy is checked as a copy (`refresh`).
   */
  begin(ids: readonly string[], writer: string): InFlight {
    const flight: InFlight = {
      ids,
      writer,
      end: () => {
        this.#inFlight.delete(flight);
      },
    };
    this.#inFlight.add(flight);
    return flight;
  }

  /**
   * Marks `writer`'s pick-up write of each of `ids` as under way until `end` (durable, failed, or
   * its writer crashed): nothing of those fibers may run live on `writer` meanwhile.
   */
  beginPickUps(ids: readonly string[], writer: string): () => void {
    const keys = ids.map((id) => `${writer} ${id}`);
    for (const key of keys) this.#pickUps.add(key);
    return () => {
      for (const key of keys) this.#pickUps.delete(key);
    };
  }

  /** Whether `writer`'s pick-up write of fiber `id` is under way. */
  pickUpUnderWay(writer: string, id: string): boolean {
    return this.#pickUps.has(`${writer} ${id}`);
  }

  /** Whether a mirror's write on one of `ids` is under way (other than `own`). */
  #mirrorUnderWay(ids: readonly string[], own: InFlight | undefined): boolean {
    for (const flight of this.#inFlight) {
      if (flight === own || !flight.writer.endsWith(MIRROR_WRITER)) continue;
      if (flight.ids.some((id) => ids.includes(id))) return true;
    }
    return false;
  }

  /** While a refresh is under way, a promise that settles once every refresh issued has applied. */
  settled(): Promise<void> | undefined {
    return this.#tail;
  }

  /**
   * Which fiber under `id` the ledger holds: 0 for the first, one more for each fiber started
   * under the id after the one before it was collected.
   */
  lifeOf(id: string): number {
    return this.#lives.get(id) ?? 0;
  }

  /** The last image of every fiber seen under `id`, by life (`lifeOf`), the current one last. */
  lives(id: string): FiberImage[] {
    const current = this.images.get(id);
    const past = this.#pastLives.get(id) ?? [];
    return current === undefined ? past : [...past, current];
  }

  /** The image of `id`, if the fiber was ever seen. */
  get(id: string): FiberImage | undefined {
    return this.images.get(id);
  }

  /**
   * Re-reads fibers `ids` after a write by `writer` applied, and checks what changed. With
   * `touched` (and an exact store), only what the write can have changed is re-read (the record
   * always; the journal, the inbox and the stream past a seq when it says so); a fiber it does
   * not name, or any fiber the ledger has no live image of, is re-read whole.
   */
  async refresh(
    ids: readonly string[],
    writer: string,
    touched?: ReadonlyMap<string, Touched>,
    flight?: InFlight,
  ): Promise<void> {
    const store = this.#store;
    // Seen from an IndexedDB store, a mirror's commit under way lands in these reads too.
    const copied = writer.endsWith(MIRROR_WRITER) || (!this.#exact && this.#mirrorUnderWay(ids, flight));
    flight?.end();
    const reads = ids.map((id) => {
      const prev = this.images.get(id);
      const scope =
        prev === undefined || prev.collected
          ? undefined
          : this.#exact
            ? touched?.get(id)
            : { journal: true, inbox: true, streamFrom: prev.stream.at(-1)?.seq ?? 0 };
      const journal =
        scope === undefined || scope.journal ? store.readJournal(id) : Promise.resolve(prev?.journal ?? []);
      const inbox =
        scope === undefined || scope.inbox ? store.readInbox(id) : Promise.resolve(prev?.inbox ?? []);
      const from = scope === undefined ? 0 : scope.streamFrom;
      const kept = prev?.stream ?? [];
      const stream =
        from === undefined
          ? Promise.resolve(kept)
          : store.readStream(id, from).then((tail) => [...kept.filter((c) => c.seq <= from), ...tail]);
      return Promise.all([store.getFiber(id), journal, stream, inbox]);
    });
    // Applied in issue order: an earlier refresh read an earlier (or the same) state.
    const prior = this.#tail;
    let applied!: () => void;
    const mine = new Promise<void>((resolve) => {
      applied = resolve;
    });
    this.#tail = mine;
    try {
      const states = await Promise.all(reads);
      if (prior !== undefined) await prior;
      states.forEach(([record, journal, stream, inbox], i) => {
        const id = ids[i] as string;
        this.#update(id, record, journal, stream, inbox, writer, copied);
      });
    } finally {
      applied();
      if (this.#tail === mine) this.#tail = undefined;
    }
  }

  #update(
    id: string,
    record: FiberRecord | undefined,
    journal: JournalEntry[],
    stream: StreamChunk[],
    inbox: InboxEvent[],
    writer: string,
    copied: boolean,
  ): void {
    const last = this.images.get(id);
    if (record === undefined) {
      const prev = last;
      if (copied) {
        // A mirror rebuilds a copy that diverged (a tail never shipped, so never shown: the
        // final checks hold what pages saw to the replica): the copy starts over.
        this.images.delete(id);
        this.#trace.add("collect", `${id} deleted by ${writer} to be rebuilt`);
        return;
      }
      if (prev?.record !== undefined && !prev.collected) {
        prev.collected = true;
        this.#trace.add("collect", `${id} deleted (was ${prev.record.status})`);
      }
      return;
    }
    // A fiber started under the id of a collected one is another fiber: it starts from nothing.
    const prev = last?.collected ? undefined : last;
    if (last?.collected) {
      this.#pastLives.set(id, [...(this.#pastLives.get(id) ?? []), last]);
      this.#lives.set(id, this.lifeOf(id) + 1);
      this.#trace.add("collect", `${id} started again after its collection`);
    }
    const image: FiberImage = {
      record,
      journal,
      stream,
      inbox,
      inboxDurableAt: prev?.inboxDurableAt ?? new Map(),
      collected: false,
    };
    const fail = (invariant: string, detail: string) =>
      this.#findings.add(invariant, `${detail} (write by ${writer})`, id);
    // A continuity mirror's write copies history the other home's ledger checked as it was
    // written (chunks with the journal as it stands now, not as it stood then): its stream must
    // still grow contiguously with no rewrite, but its step chunks are not matched to this journal.
    this.#checkStream(prev, image, fail, copied, this.batched?.(writer, id) ?? false);
    if (prev?.record && isTerminal(prev.record.status) && prev.record.status !== record.status) {
      fail("terminal-status-changed", `status went from ${prev.record.status} to ${record.status}`);
    }
    for (const event of inbox) {
      if (!image.inboxDurableAt.has(event.seq)) {
        image.inboxDurableAt.set(event.seq, this.#now());
        this.#trace.add(
          "event",
          `${id} inbox#${event.seq} ${event.name} ${JSON.stringify(event.payload)} by ${writer}`,
        );
        if (prev?.record && isTerminal(prev.record.status)) {
          fail(
            "event-accepted-after-end",
            `event ${event.name}#${event.seq} stored after the fiber ended ${prev.record.status}`,
          );
        }
      }
      const before = prev?.inbox.find((e) => e.seq === event.seq);
      // A restart from scratch (a new epoch) may release the events the discarded run consumed,
      // and its new run consume them again: a replica applies both in one commit.
      const released = (prev?.record?.epoch ?? 0) < record.epoch;
      // A mirror's write copies the replica's marks: over a consumption this home made and never
      // shipped (fenced, so it never happened), it puts the replica's own, or none. Whether the
      // replica consumed an event twice is the edge ledger's to say.
      if (
        before?.consumedBy !== undefined &&
        before.consumedBy !== event.consumedBy &&
        !released &&
        !copied
      ) {
        fail(
          "event-consumed-twice",
          `event #${event.seq} consumed by wait pos ${before.consumedBy}, then by pos ${event.consumedBy}`,
        );
      }
    }
    if (prev?.record && prev.record.status !== record.status) {
      this.#trace.add(
        "status",
        `${id} ${prev.record.status} -> ${record.status} gen ${record.generation} by ${writer}`,
      );
    }
    this.images.set(id, image);
  }

  #checkStream(
    prev: FiberImage | undefined,
    next: FiberImage,
    fail: (inv: string, detail: string) => void,
    copied = false,
    batched = false,
  ): void {
    const stream = next.stream;
    const head = stream.at(-1)?.seq ?? 0;
    if (next.record && next.record.streamHead !== head) {
      fail(
        "stream-head-mismatch",
        `record.streamHead ${next.record.streamHead} but the stream ends at ${head}`,
      );
    }
    // A stream kept from the last image was checked then; a kept prefix is the same objects.
    if (stream === prev?.stream) return;
    stream.forEach((chunk, i) => {
      if (chunk.seq !== i + 1) fail("stream-gap", `stream seqs are ${stream.map((c) => c.seq).join(",")}`);
    });
    const endAt = stream.findIndex((c) => c.type === "fiber.end");
    if (endAt >= 0 && endAt !== stream.length - 1) {
      fail(
        "end-not-last",
        `fiber.end at seq ${stream[endAt]?.seq} but the stream reaches ${stream.at(-1)?.seq}`,
      );
    }
    const before = new Map((prev?.stream ?? []).map((c) => [c.seq, c]));
    for (const chunk of stream) {
      const old = before.get(chunk.seq);
      if (old === chunk) continue;
      if (old) {
        if (!sameChunk(old, chunk))
          fail("stream-overwrite", `seq ${chunk.seq} was ${describe(old)}, now ${describe(chunk)}`);
        continue;
      }
      this.#trace.add("chunk", () => `${chunk.fiberId} ${describe(chunk)}`);
      if (chunk.step === undefined || copied) {
        // Copied history: checked where it was written.
      } else if (!batched) this.#checkStepChunk(prev, next, chunk, fail);
      else if (prev?.record?.epoch === next.record?.epoch && !next.journal.some((e) => e.pos === chunk.step))
        // Several commits at once: the step's start must be among them (unless the same write
        // restarted the run, clearing the journal its chunks came from).
        fail(
          "step-emit-without-start",
          `${describe(chunk)} from step pos ${chunk.step} with no start in the same write`,
        );
      this.onChunk?.(chunk);
    }
  }

  /**
   * A chunk emitted inside a step must come from the attempt the journal says is running. Only the
   * programs' own `tok` chunks say which step attempt emitted them (`data.attempt`); other chunks
   * may carry an `attempt` of their own meaning (the agent's `message.retry` counts model
   * requests inside one step attempt). Any other step chunk (the agent's model step, which runs
   * beside its `started` write: `awaitStart: false`) needs its step's entry durable by the same
   * commit at the latest: the start goes first, FIFO.
   */
  #checkStepChunk(
    prev: FiberImage | undefined,
    next: FiberImage,
    chunk: StreamChunk,
    fail: (inv: string, detail: string) => void,
  ): void {
    if (chunk.type !== "tok") {
      if (!next.journal.some((e) => e.pos === chunk.step))
        fail(
          "step-emit-without-start",
          `${describe(chunk)} from step pos ${chunk.step} with no durable start`,
        );
      return;
    }
    const attempt = (chunk.data as { attempt?: unknown } | null)?.attempt;
    if (typeof attempt !== "number") return;
    const entry = prev?.journal.find((e) => e.pos === chunk.step);
    if (!entry) {
      fail("step-emit-without-start", `${describe(chunk)} from step pos ${chunk.step} with no durable start`);
    } else if (entry.attempt > attempt) {
      fail(
        "emit-from-superseded-attempt",
        `${describe(chunk)} from attempt ${attempt} of ${entry.key}, durable after attempt ${entry.attempt} started`,
      );
    } else if (entry.status !== "started") {
      fail(
        "emit-after-step-ended",
        `${describe(chunk)} from ${entry.key} after it was durably ${entry.status}`,
      );
    }
  }
}

function sameChunk(a: StreamChunk, b: StreamChunk): boolean {
  return a.type === b.type && a.at === b.at && JSON.stringify(a.data) === JSON.stringify(b.data);
}

/** A short text of a chunk for traces. */
export function describe(chunk: { seq: number; type: string; data: unknown }): string {
  const data = JSON.stringify(chunk.data) ?? "";
  return `#${chunk.seq} ${chunk.type} ${data.length > 60 ? `${data.slice(0, 57)}...` : data}`;
}
