/**
 * The `Store` each simulated runtime sees: a wrapper around the shared store (the one
 * `MemoryStore`, or this runtime's own `IdbStore` on the shared database) that gives every call
 * a random virtual delay (mostly 0-2 ms, sometimes 50-500 ms) and, while the fault plan is
 * active, makes writes fail: reject before applying (a transient `UnknownError`, as IndexedDB
 * reports a failed transaction), crash the runtime before the write applies, or apply it and
 * then crash. A crashed runtime's calls hang forever and nothing more it does reaches the store,
 * like `crashableStore` in `src/testing`. After each applied write the ledger re-reads what the
 * write can have changed, before the caller hears back.
 */

import type { FiberRecord, InboxEvent, JournalEntry, SnapshotRecord, StreamChunk } from "../core/records";
import type {
  ClaimRequest,
  ClaimResult,
  CommitResult,
  CreateResult,
  DeleteOptions,
  FiberQuery,
  Store,
  WriteGroup,
} from "../core/store";
import { toStoreError } from "../store/fiber-rules";
import type { Ledger, Touched } from "./ledger";
import type { Prng } from "./prng";
import type { Trace } from "./trace";

/** The schedule-wide fault plan; the world turns it off when faults stop. */
export interface FaultPlan {
  active: boolean;
  /** Probability that a write rejects before applying. */
  reject: number;
  /** Probability that a read rejects (a transient `UnknownError`), drawn from `readRng`. */
  readReject: number;
  /** Probability that the runtime crashes at a write, before it applies. */
  crashBefore: number;
  /** Probability that the runtime crashes right after a write applied. */
  crashAfter: number;
  /** Probability that a call is slow (50-500 ms). */
  slow: number;
  /** Crashes left in this schedule's budget. */
  crashesLeft: number;
}

/** What the wrapper needs from the simulation. */
export interface FaultStoreHost {
  readonly rng: Prng;
  readonly trace: Trace;
  readonly ledger: Ledger;
  readonly plan: FaultPlan;
  /**
   * Where read faults are drawn from: a stream of their own, so a schedule without them draws
   * what it drew before they existed.
   */
  readonly readRng?: Prng;
  /** Called once when this store's runtime crashes. */
  onCrash(reason: string): void;
}

const never = <T>(): Promise<T> => new Promise<T>(() => {});
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One runtime's view of the shared store. */
export class FaultStore implements Store {
  readonly kind = "sim";
  readonly #inner: Store;
  readonly #host: FaultStoreHost;
  readonly #name: string;
  readonly #loseWrite: (() => boolean) | undefined;
  #crashed = false;
  /** Ends the ledger's marks of this writer's pick-up writes under way (`Ledger.beginPickUps`). */
  readonly #endPickUps = new Set<() => void>();

  /**
   * `name` is the runtime's runner id, used in traces. `loseWrite` plants a bug for the
   * checker's own test: when it answers true, a commit that starts a step attempt is
   * acknowledged without being applied (a store that loses an acknowledged write).
   */
  constructor(inner: Store, host: FaultStoreHost, name: string, loseWrite?: () => boolean) {
    this.#inner = inner;
    this.#host = host;
    this.#name = name;
    this.#loseWrite = loseWrite;
  }

  /** Whether the runtime behind this store has crashed. */
  get crashed(): boolean {
    return this.#crashed;
  }

  /** Crashes the runtime now (the world's explicit crash action): every call hangs from here. */
  crash(reason: string): void {
    if (this.#crashed) return;
    this.#crashed = true;
    for (const end of this.#endPickUps) end(); // a crashed writer's writes never end
    this.#endPickUps.clear();
    this.#host.trace.add("CRASH", `${this.#name}: ${reason}`);
    this.#host.onCrash(reason);
  }

  getFiber(id: string): Promise<FiberRecord | undefined> {
    return this.#read(() => this.#inner.getFiber(id));
  }
  findByIdempotencyKey(key: string): Promise<FiberRecord | undefined> {
    return this.#read(() => this.#inner.findByIdempotencyKey(key));
  }
  listFibers(query?: FiberQuery): Promise<FiberRecord[]> {
    return this.#read(() => this.#inner.listFibers(query));
  }
  readJournal(fiberId: string): Promise<JournalEntry[]> {
    return this.#read(() => this.#inner.readJournal(fiberId));
  }
  readSnapshot(fiberId: string): Promise<SnapshotRecord | undefined> {
    return this.#read(() => this.#inner.readSnapshot(fiberId));
  }
  readStream(fiberId: string, after: number, limit?: number): Promise<StreamChunk[]> {
    return this.#read(() => this.#inner.readStream(fiberId, after, limit));
  }
  readInbox(fiberId: string): Promise<InboxEvent[]> {
    return this.#read(() => this.#inner.readInbox(fiberId));
  }

  createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    return this.#write(
      `createFiber ${record.id}`,
      [record.id],
      undefined,
      () => this.#inner.createFiber(record, chunks),
      (r) => r.status,
    );
  }
  claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    return this.#write(
      `claimFiber ${id}${request.force ? " force" : ""}`,
      [id],
      only(id, RECORD_ONLY),
      () => this.#inner.claimFiber(id, request),
      (r) =>
        r.status === "missing" ? r.status : `${r.status} gen ${r.record.generation} ${r.record.status}`,
    );
  }
  commit(groups: WriteGroup[]): Promise<CommitResult> {
    const ids = [...new Set(groups.map((g) => g.fiberId))];
    const startsStep = groups.some((g) =>
      g.journal?.some((e) => e.kind === "step" && e.status === "started"),
    );
    if (startsStep && this.#loseWrite?.()) {
      this.#host.trace.add("PLANT", `${this.#name} acknowledges a commit it never applies`);
      return delay(0).then(() => ({ fenced: [] }));
    }
    const pickedUp = groups
      .filter((g) => g.chunks?.some((c) => c.type === "fiber.recovered"))
      .map((g) => g.fiberId);
    const written = this.#write(
      () => `commit ${groups.map(describeGroup).join(" ; ")}`,
      ids,
      touchedBy(groups),
      () => this.#inner.commit(groups),
      (r) => (r.fenced.length > 0 ? `fenced ${r.fenced.join(",")}` : "ok"),
    );
    if (pickedUp.length === 0) return written;
    const end = this.#host.ledger.beginPickUps(pickedUp, this.#name);
    this.#endPickUps.add(end);
    const ended = () => {
      this.#endPickUps.delete(end);
      end();
    };
    written.then(ended, ended);
    return written;
  }
  enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    return this.#write(
      `enqueueEvent ${event.fiberId} ${event.name}`,
      [event.fiberId],
      only(event.fiberId, INBOX_ONLY),
      () => this.#inner.enqueueEvent(event),
      (r) => `seq ${r.seq}`,
    );
  }
  deleteFibers(ids: readonly string[], options?: DeleteOptions): Promise<string[]> {
    return this.#write(
      `deleteFibers ${ids.join(",")}`,
      ids,
      new Map(ids.map((id) => [id, RECORD_ONLY])),
      () => this.#inner.deleteFibers(ids, options),
      (r) => `deleted ${r.join(",") || "none"}`,
    );
  }
  /** Closing a runtime's view never closes the shared store. */
  async close(): Promise<void> {}

  async #read<T>(run: () => Promise<T>): Promise<T> {
    if (this.#crashed) return never();
    await delay(this.#latency());
    if (this.#crashed) return never();
    const { plan, readRng } = this.#host;
    if (plan.active && plan.readReject > 0 && readRng !== undefined && readRng.next() < plan.readReject) {
      this.#host.trace.add("FAULT", `${this.#name} read -> rejected (UnknownError)`);
      throw toStoreError("read", new DOMException("simulated transient read failure", "UnknownError"));
    }
    const result = await run();
    // What this read saw may come from a write whose ledger refresh is still under way (never
    // on a MemoryStore, where a refresh completes in the write's own turn): let it land first.
    const settled = this.#host.ledger.settled();
    if (settled !== undefined) await settled;
    if (this.#crashed) return never();
    return result;
  }

  async #write<T>(
    what: string | (() => string),
    ids: readonly string[],
    touched: ReadonlyMap<string, Touched> | undefined,
    run: () => Promise<T>,
    outcome: (r: T) => string,
  ): Promise<T> {
    if (this.#crashed) return never();
    const host = this.#host;
    const text = (): string => (typeof what === "string" ? what : what());
    await delay(this.#latency());
    if (this.#crashed) return never();
    const plan = host.plan;
    let crashAfter = false;
    if (plan.active) {
      const roll = host.rng.next();
      if (roll < plan.reject) {
        host.trace.add("FAULT", `${this.#name} ${text()} -> rejected (UnknownError)`);
        throw toStoreError(
          text().split(" ")[0] ?? "write",
          new DOMException("simulated transient failure", "UnknownError"),
        );
      }
      if (plan.crashesLeft > 0 && roll < plan.reject + plan.crashBefore) {
        plan.crashesLeft--;
        this.crash(`before ${text()} applied`);
        return never();
      }
      if (plan.crashesLeft > 0 && roll < plan.reject + plan.crashBefore + plan.crashAfter) {
        plan.crashesLeft--;
        crashAfter = true;
      }
    }
    let result: T;
    const flight = host.ledger.begin(ids, this.#name);
    try {
      result = await run();
    } catch (error) {
      flight.end();
      host.trace.add("store", `${this.#name} ${text()} -> threw ${String(error).slice(0, 80)}`);
      // A refusal (fiber_ended, fenced...) is decided on state the ledger must hold by now.
      const settled = host.ledger.settled();
      if (settled !== undefined) await settled;
      throw error;
    }
    await host.ledger.refresh(ids, this.#name, touched, flight);
    const name = this.#name;
    host.trace.add("store", () => `${name} ${text()} -> ${outcome(result)}`);
    if (crashAfter) this.crash(`after ${text()} applied`);
    if (this.#crashed) return never();
    return result;
  }

  #latency(): number {
    const { rng, plan } = this.#host;
    return rng.chance(plan.slow) ? rng.int(50, 500) : rng.int(0, 2);
  }
}

/** A write that changes only the record (a claim, a deletion: a deleted fiber reads as gone). */
const RECORD_ONLY: Touched = { journal: false, inbox: false };
/** `enqueueEvent`: one inbox row. */
const INBOX_ONLY: Touched = { journal: false, inbox: true };

function only(id: string, touched: Touched): Map<string, Touched> {
  return new Map([[id, touched]]);
}

/**
 * Per fiber, what a commit can change: the journal if it writes or clears entries, the inbox if
 * it consumes events, and the stream past the seq below the lowest chunk it writes.
 */
function touchedBy(groups: readonly WriteGroup[]): Map<string, Touched> {
  const touched = new Map<string, Touched>();
  for (const group of groups) {
    const t = touched.get(group.fiberId) ?? { journal: false, inbox: false };
    if (group.clearJournal || (group.journal?.length ?? 0) > 0) t.journal = true;
    if ((group.consumeEvents?.length ?? 0) > 0) t.inbox = true;
    for (const chunk of group.chunks ?? []) {
      const below = chunk.seq - 1;
      t.streamFrom = Math.min(t.streamFrom ?? below, below);
    }
    touched.set(group.fiberId, t);
  }
  return touched;
}

function describeGroup(group: WriteGroup): string {
  const parts = [`${group.fiberId}@${group.generation}`];
  if (group.fiber?.status) parts.push(`status=${group.fiber.status}`);
  if (group.clearJournal) parts.push("clearJournal");
  for (const e of group.journal ?? [])
    parts.push(`j${e.pos}:${e.key}:${e.status}${e.kind === "step" ? `/a${e.attempt}` : ""}`);
  for (const c of group.chunks ?? []) parts.push(`c${c.seq}:${c.type}`);
  for (const c of group.consumeEvents ?? []) parts.push(`consume#${c.seq}->${c.consumedBy}`);
  if (group.snapshot !== undefined) parts.push("stash");
  if (group.fiber?.leaseUntil !== undefined && Object.keys(group.fiber).length === 1) parts.push("lease");
  return parts.join(" ");
}
