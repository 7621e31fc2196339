/**
 * The journal as one run walks it. Every journaled operation of a handler (step, sleep, event
 * wait, `now`, `random`, `uuid`) takes the next position and a `name#n` key; on replay it gets
 * back what an earlier run recorded there. A handler that calls something else at a recorded
 * position has diverged, and its fiber fails. Used by `FiberRun`, `FiberSteps` and `FiberWaits`.
 *
 * Positions are taken in call order, and under `Promise.all` live calls follow completion order:
 * the branch whose step finished first calls next. A replay that handed every recorded outcome
 * back at once would let the branches continue in call order instead, and reach other positions
 * and emit ordinals than the live run did. So an operation that settled while another was
 * pending records when it settled (`JournalEntry.order`: the how-manyth settle, after how many
 * calls and emits), and its replay waits until the run has settled, called and emitted as much.
 */

import { deserializeError, ReplayDivergedError, StepFailedError } from "./errors";
import type { JournalEntry, JournalKind, ResumePoint, SettleOrder } from "./records";

/** An operation's place in the journal, and what an earlier run recorded there. */
export interface JournalSlot {
  pos: number;
  key: string;
  recorded: JournalEntry | undefined;
}

/** The in-memory journal of one run: loaded entries, and the entries this run settles. */
export class RunJournal {
  readonly #fiberId: string;
  readonly #entries = new Map<number, JournalEntry>();
  readonly #calls = new Map<string, number>();
  readonly #onDiverged: (error: ReplayDivergedError) => void;
  readonly #emits: () => number;
  #nextPos = 0;
  /** Operations settled in this run so far, replayed or live. */
  #settled = 0;
  /** How many recorded settles this run replays before any live one. */
  readonly #recordedSettles: number;
  /** Operations called and still pending, by position: whether another overlapped them. */
  readonly #pending = new Map<number, { overlapped: boolean }>();
  /** Replayed outcomes waiting for their turn, by recorded settle number. */
  readonly #gated = new Map<number, { order: SettleOrder; release: () => void }>();
  /** Live settles waiting until every recorded one has been replayed. */
  readonly #live: Array<() => void> = [];
  /** A concurrent settle was just handed out: the next waits for the next macrotask. */
  #cooling = false;
  #valveArmed = false;
  /**
   * An outcome was just handed out and its continuation has not started: an operation called now
   * is called beside it (a sibling in `Promise.all`), not after it. Cleared by a microtask queued
   * before the outcome resolves, so it is gone by the time the continuation itself runs.
   */
  #fresh = false;

  /**
   * `onDiverged` fails the fiber; `next` throws the same error to the handler right after.
   * `emits` counts the run's emits outside steps so far. With `from`, the run starts where a
   * stash left an earlier one (`resumeFrom: "stash"`): its first call takes position `from.pos`.
   */
  constructor(
    fiberId: string,
    entries: readonly JournalEntry[],
    onDiverged: (error: ReplayDivergedError) => void,
    emits: () => number = () => 0,
    from?: ResumePoint,
  ) {
    this.#fiberId = fiberId;
    this.#onDiverged = onDiverged;
    this.#emits = emits;
    if (from !== undefined) {
      this.#nextPos = from.pos;
      this.#settled = from.settled;
      for (const [call, n] of Object.entries(from.calls)) this.#calls.set(call, n);
    }
    let settles = 0;
    for (const entry of entries) {
      this.#entries.set(entry.pos, entry);
      if (settlesLater(entry.kind) && entry.status !== "started") settles++;
    }
    this.#recordedSettles = settles;
  }

  /**
   * Takes the next position for an operation of `kind` keyed `${label}#n`, the n-th call of this
   * run with that kind and label, and returns what the journal holds there. Throws
   * `ReplayDivergedError` when it holds a different operation.
   */
  next(kind: JournalKind, label: string): JournalSlot {
    const pos = this.#nextPos++;
    const call = `${kind}:${label}`;
    const n = (this.#calls.get(call) ?? 0) + 1;
    this.#calls.set(call, n);
    const key = `${label}#${n}`;
    const recorded = this.#entries.get(pos);
    if (recorded && (recorded.kind !== kind || recorded.key !== key)) {
      const error = new ReplayDivergedError(
        "replay_diverged",
        `Replay of fiber ${this.#fiberId} diverged at position ${pos}: the journal recorded ${recorded.kind} "${recorded.key}" but the handler now calls ${kind} "${key}". A handler must make the same calls in the same order on every run; to change a fiber's code, bump its version.`,
      );
      this.#onDiverged(error);
      throw error;
    }
    if (this.#gated.size > 0) this.#pump();
    return { pos, key, recorded };
  }

  /** The first recorded operation at or past the next position: one the run has not reached. */
  unreached(): JournalEntry | undefined {
    let first: JournalEntry | undefined;
    for (const entry of this.#entries.values()) {
      if (entry.pos >= this.#nextPos && (first === undefined || entry.pos < first.pos)) first = entry;
    }
    return first;
  }

  /** Where the run stands now, with `emits` emits outside steps made (see `ResumePoint`). */
  resumePoint(emits: number): ResumePoint {
    return { pos: this.#nextPos, calls: Object.fromEntries(this.#calls), settled: this.#settled, emits };
  }

  /** The entry at `pos`, as loaded or as this run last set it. */
  get(pos: number): JournalEntry | undefined {
    return this.#entries.get(pos);
  }

  /** Keeps `entry` at its position; writing it durably is the caller's job. */
  set(entry: JournalEntry): void {
    this.#entries.set(entry.pos, entry);
  }

  /** No operation of the run is pending, and no outcome waits for its turn. */
  get idle(): boolean {
    return this.#pending.size === 0 && this.#gated.size === 0 && this.#live.length === 0;
  }

  /** Whether outcomes are waiting for their turn: the run is not idle, whatever else it awaits. */
  get settling(): boolean {
    return this.#gated.size > 0 || this.#live.length > 0 || this.#cooling;
  }

  /** A step, sleep or event wait at `pos` runs live: it is pending until `settle`. */
  begin(pos: number): void {
    const overlapped = this.#pending.size > 0 || this.#gated.size > 0 || this.#fresh;
    if (overlapped) for (const other of this.#pending.values()) other.overlapped = true;
    this.#pending.set(pos, { overlapped });
  }

  /**
   * Hands back a recorded outcome (a settled step, sleep or event wait) in its turn: `undefined`
   * when it may be used at once (it settled alone), else a promise that resolves once the run has
   * settled, called and emitted what the live run had when it settled.
   */
  replay(entry: JournalEntry): Promise<void> | undefined {
    const order = entry.order;
    if (order === undefined) {
      this.#settled++;
      this.#handOut();
      if (this.#gated.size > 0 || this.#live.length > 0) this.#pump();
      return undefined;
    }
    // Whatever runs live now runs beside this recorded operation: record where it settles.
    for (const pending of this.#pending.values()) pending.overlapped = true;
    return new Promise<void>((release) => {
      this.#gated.set(order.settled, { order, release });
      this.#pump();
      if (this.#gated.size > 0) this.#valve();
    });
  }

  /**
   * A live step, sleep or event wait settled with `entry`: `deliver` keeps, writes and resolves
   * it, with its settle order when another operation overlapped it, once every recorded outcome
   * has been replayed (in practice at once: replays need no I/O).
   */
  settle(entry: JournalEntry, deliver: (entry: JournalEntry) => void): void {
    const run = () => {
      this.#settled++;
      const pending = this.#pending.get(entry.pos);
      this.#pending.delete(entry.pos);
      const overlapped = pending?.overlapped === true || this.#pending.size > 0 || this.#gated.size > 0;
      const order = { settled: this.#settled, calls: this.#nextPos, emits: this.#emits() };
      this.#handOut();
      deliver(overlapped ? { ...entry, order } : entry);
      if (overlapped) this.#cool();
    };
    const alone =
      this.#pending.size <= 1 &&
      this.#gated.size === 0 &&
      this.#live.length === 0 &&
      !this.#cooling &&
      !this.#fresh &&
      this.#settled >= this.#recordedSettles;
    if (alone) {
      run();
      return;
    }
    this.#live.push(run);
    // Behind an outcome whose continuation has not run yet: wait a macrotask for it.
    if (this.#fresh) this.#cool();
    this.#pump();
    if (this.#live.length > 0) this.#valve();
  }

  /** Marks an outcome as just handed out (see `#fresh`); call before it resolves. */
  #handOut(): void {
    if (this.#fresh) return;
    this.#fresh = true;
    queueMicrotask(() => {
      this.#fresh = false;
    });
  }

  /**
   * Holds the next concurrent settle until the next macrotask, so the continuation of the one
   * just handed out runs up to its next journaled call first, live and in replay alike: which of
   * two outcomes resolved in one turn reaches the handler first would otherwise depend on how
   * many promise hops each took.
   */
  #cool(): void {
    if (this.#cooling) return;
    this.#cooling = true;
    nextTurn(() => {
      this.#cooling = false;
      this.#pump();
    });
  }

  /**
   * A handler that is not deterministic may never make the calls a recorded outcome waits for;
   * rather than hold the run forever, once nothing has settled for a while, hand everything back
   * in recorded order.
   */
  #valve(): void {
    if (this.#valveArmed) return;
    this.#valveArmed = true;
    const settledAtArm = this.#settled;
    const timer = setTimeout(() => {
      this.#valveArmed = false;
      if (this.#gated.size === 0 && this.#live.length === 0) return;
      if (this.#settled !== settledAtArm) {
        this.#valve(); // still moving: look again later
        return;
      }
      for (const settled of [...this.#gated.keys()].sort((a, b) => a - b)) {
        const gated = this.#gated.get(settled);
        this.#gated.delete(settled);
        this.#settled = Math.max(this.#settled, settled);
        gated?.release();
      }
      this.#settled = Math.max(this.#settled, this.#recordedSettles);
      this.#cooling = false;
      this.#pump();
    }, VALVE_MS);
    (timer as { unref?: () => void }).unref?.();
  }

  /** The run emitted outside a step: a replayed outcome may have waited for that emit. */
  emitted(): void {
    if (this.#gated.size > 0) this.#pump();
  }

  /**
   * Hands out every replayed outcome whose turn has come (its recorded calls and emits made: the
   * live run's continuations in between made none, or the replay has made them), then, a
   * macrotask after the last of them (see `#cool`), the next live settle held back.
   */
  #pump(): void {
    let released = false;
    for (;;) {
      const next = this.#gated.get(this.#settled + 1);
      if (!next || this.#nextPos < next.order.calls || this.#emits() < next.order.emits) break;
      this.#gated.delete(this.#settled + 1);
      this.#settled++;
      this.#handOut();
      next.release();
      released = true;
    }
    if (released) this.#cool();
    if (this.#cooling) return;
    if (this.#settled >= this.#recordedSettles && this.#live.length > 0) this.#live.shift()?.();
  }
}

/**
 * Runs `fn` in a later macrotask, as soon as the platform allows: `setImmediate` where it exists
 * (Node), else a `MessageChannel` message (browsers, Service Workers, workerd), else
 * `setTimeout(0)`, which browsers clamp to 4 ms once nested and so would cost a replay of
 * concurrent steps 4 ms each.
 */
function nextTurn(fn: () => void): void {
  const g = globalThis as {
    setImmediate?: (fn: () => void) => unknown;
    MessageChannel?: new () => {
      port1: { onmessage: (() => void) | null; close?(): void };
      port2: { postMessage(message: unknown): void };
    };
  };
  if (g.setImmediate) {
    // Not unref'd: Node's event loop does not wake for an unref'd immediate alone, so a run
    // whose only pending work is this turn waited for the next timer (the valve's, 1 s) per
    // concurrent settle.
    g.setImmediate(fn);
    return;
  }
  if (g.MessageChannel) {
    turns ??= channelTurns(g.MessageChannel);
    turns(fn);
    return;
  }
  setTimeout(fn, 0);
}

/** One channel for every `nextTurn` of the context: callbacks run in order, one message each. */
let turns: ((fn: () => void) => void) | undefined;

function channelTurns(
  Channel: new () => {
    port1: { onmessage: (() => void) | null };
    port2: { postMessage(message: unknown): void };
  },
): (fn: () => void) => void {
  const channel = new Channel();
  const queue: Array<() => void> = [];
  channel.port1.onmessage = () => queue.shift()?.();
  return (fn) => {
    queue.push(fn);
    channel.port2.postMessage(null);
  };
}

/** How long live work waits for replayed outcomes that a non-deterministic handler never reaches. */
const VALVE_MS = 1_000;

/** Whether operations of `kind` settle after their call (and so have a place in the order). */
function settlesLater(kind: JournalKind): boolean {
  return kind === "step" || kind === "sleep" || kind === "event";
}

/** The error a failed entry recorded, rebuilt with its class and `code`. */
export function recordedError(entry: JournalEntry): Error {
  return entry.error
    ? deserializeError(entry.error)
    : new StepFailedError("step_failed", `Step "${entry.key}" failed.`);
}
