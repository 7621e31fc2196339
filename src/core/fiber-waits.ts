/**
 * The durable waits of one run: `ctx.sleep` and `ctx.waitForEvent`, their timers, the events
 * delivered but not yet consumed, and when to unload the fiber. A wait due within `unloadAfterMs`
 * keeps the run in memory; once no step or stash is in flight and every pending wait is further
 * off or open-ended, the run suspends, and a timer or an event replays the fiber up to the same
 * wait later. Used by `FiberRun`, which owns the run's lifecycle and asks here what to write.
 */

import { serializeError, TimeoutError } from "./errors";
import type { InboxEvent, JournalEntry } from "./records";
import { type RunJournal, recordedError } from "./run-journal";
import type { WriteGroup } from "./store";
import { assertArgument, MAX_TIMER_MS } from "./validate";

/** A write of the run; its fiber id and generation are added by the run. */
export type RunWrite = Omit<WriteGroup, "fiberId" | "generation">;

/** What the waits need from their run. */
export interface WaitHost {
  readonly fiberId: string;
  readonly journal: RunJournal;
  /** Waits due sooner than this stay in memory instead of unloading the fiber. */
  readonly unloadAfterMs: number;
  now(): number;
  /** Whether the run is executing; timers that fire once it is not do nothing. */
  running(): boolean;
  /** Throws once the run no longer executes here. */
  assertLive(): void;
  /** Queues a write under the run's claim; a failure stops the run. */
  writeLater(group: RunWrite): void;
  /** The run is idle until `suspension` wakes it: unload the fiber (see `FiberWaits.unload`). */
  suspend(suspension: Suspension): void;
  /** The fiber's inbox as stored: events another runtime stored never reach this run otherwise. */
  readInbox(): Promise<InboxEvent[]>;
  /** Stops the run on a store failure (the runner resumes the fiber from its journal). */
  fail(error: unknown): void;
}

/** What an idle run waits for, and when it is due to wake. */
export interface Suspension {
  status: "sleeping" | "waiting";
  /** The earliest due time; `undefined` when every wait is open-ended. */
  wakeAt: number | undefined;
  /** Event names of the pending waits. */
  waitingFor: string[];
}

interface Waiter {
  kind: "sleep" | "event";
  pos: number;
  key: string;
  name: string;
  dueAt?: number;
  timer?: ReturnType<typeof setTimeout>;
  /** The inbox was read from storage at or after the deadline: time out on what is known. */
  checked?: boolean;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** Pending sleeps and event waits of one run, and the unconsumed events it has been sent. */
export class FiberWaits {
  readonly #host: WaitHost;
  readonly #waiters = new Set<Waiter>();
  readonly #inbox: InboxEvent[];
  /** The `seq` of every event this run has seen, consumed or not: a second delivery is ignored. */
  readonly #seen = new Set<number>();
  /** The highest inbox `seq` seen: a delivery past `maxSeen + 1` means events this run missed. */
  #maxSeen = 0;
  /** Every inbox `seq` up to this one has been seen (the suspension's `inboxSeen`). */
  #seenThrough = 0;
  /** A read of the stored inbox under way: waits are settled once it is merged. */
  #catchingUp: Promise<void> | null = null;
  #busy = 0;
  #suspendCheck: ReturnType<typeof setTimeout> | null = null;

  /** `inbox` is the fiber's inbox as loaded; events already consumed are left out. */
  constructor(host: WaitHost, inbox: readonly InboxEvent[]) {
    this.#host = host;
    for (const event of inbox) this.#see(event.seq);
    this.#inbox = inbox.filter((e) => e.consumedBy === undefined);
  }

  /**
   * `ctx.sleep`: resolves once `ms` have passed since the first run reached this sleep.
   *
   * Failure semantics: the due time is journaled when the sleep starts, so a replay waits only for
   * what is left; the sleep is journaled as completed when its timer fires.
   */
  sleep(name: string, ms: number): Promise<void> {
    this.#host.assertLive();
    assertArgument(
      typeof name === "string" && name.length > 0,
      "ctx.sleep(name, ms) needs a non-empty name.",
    );
    assertArgument(
      Number.isFinite(ms) && ms >= 0,
      `ctx.sleep("${name}", ms) needs a duration >= 0 in milliseconds.`,
    );
    const journal = this.#host.journal;
    const { pos, key, recorded } = journal.next("sleep", `sleep:${name}`);
    if (recorded?.status === "completed") return journal.replay(recorded) ?? Promise.resolve();
    journal.begin(pos);
    const dueAt = recorded?.dueAt ?? this.#host.now() + ms;
    const started: JournalEntry = recorded ?? {
      fiberId: this.#host.fiberId,
      pos,
      kind: "sleep",
      key,
      status: "started",
      attempt: 1,
      startedAt: this.#host.now(),
      dueAt,
    };
    if (!recorded) {
      journal.set(started);
      this.#host.writeLater({ journal: [started] });
    }
    return new Promise<void>((resolve, reject) => {
      this.#add({ kind: "sleep", pos, key, name, dueAt, resolve: () => resolve(), reject });
    });
  }

  /**
   * `ctx.waitForEvent`: resolves with the payload of the first unconsumed event named `name`,
   * rejects with `TimeoutError` after `timeoutMs`.
   *
   * Failure semantics: the event is marked consumed by this wait in the same write that journals
   * the wait as completed, so a replay gets the same payload and no other wait gets the event.
   */
  waitForEvent(name: string, options: { timeoutMs?: number } = {}): Promise<unknown> {
    this.#host.assertLive();
    assertArgument(
      typeof name === "string" && name.length > 0,
      "ctx.waitForEvent(name) needs a non-empty name.",
    );
    const { timeoutMs } = options;
    assertArgument(
      timeoutMs === undefined || (Number.isFinite(timeoutMs) && timeoutMs >= 0),
      `ctx.waitForEvent("${name}", { timeoutMs }) needs a timeout >= 0 in milliseconds.`,
    );
    const journal = this.#host.journal;
    const { pos, key, recorded } = journal.next("event", `event:${name}`);
    if (recorded?.status === "completed" || recorded?.status === "failed") {
      const settled = recorded;
      const outcome = () =>
        settled.status === "failed" ? Promise.reject(recordedError(settled)) : settled.result;
      const turn = journal.replay(settled);
      return turn ? turn.then(outcome) : Promise.resolve().then(outcome);
    }
    journal.begin(pos);
    const dueAt = recorded
      ? recorded.dueAt
      : timeoutMs === undefined
        ? undefined
        : this.#host.now() + timeoutMs;
    if (!recorded) {
      const started: JournalEntry = {
        fiberId: this.#host.fiberId,
        pos,
        kind: "event",
        key,
        status: "started",
        attempt: 1,
        startedAt: this.#host.now(),
        ...(dueAt === undefined ? {} : { dueAt }),
      };
      journal.set(started);
      this.#host.writeLater({ journal: [started] });
    }
    return new Promise<unknown>((resolve, reject) => {
      this.#add({
        kind: "event",
        pos,
        key,
        name,
        ...(dueAt === undefined ? {} : { dueAt }),
        resolve,
        reject,
      });
      this.#settleEventWaiters();
    });
  }

  /**
   * Buffers an event the run was sent and hands it to a matching wait, if one is pending. An event
   * the run already has (read with the inbox at pick-up, then handed over again) is ignored.
   */
  deliver(event: InboxEvent): void {
    if (this.#seen.has(event.seq)) return;
    const missed = event.seq > this.#maxSeen + 1;
    this.#addEvent(event);
    // Events are consumed in the order they were stored: one stored meanwhile by another runtime
    // (an old and a new Service Worker) comes first, so read it before settling anything.
    if (missed) this.#catchUp();
    else this.#settleEventWaiters();
  }

  #addEvent(event: InboxEvent): void {
    this.#see(event.seq);
    if (event.consumedBy !== undefined) return;
    this.#inbox.push(event);
    this.#inbox.sort((a, b) => a.seq - b.seq);
  }

  #see(seq: number): void {
    this.#seen.add(seq);
    if (seq > this.#maxSeen) this.#maxSeen = seq;
    while (this.#seen.has(this.#seenThrough + 1)) this.#seenThrough++;
  }

  /** Merges the stored inbox into what this run knows, then settles waits. */
  #catchUp(): void {
    if (this.#catchingUp) return;
    this.#catchingUp = this.#host.readInbox().then(
      (stored) => {
        this.#catchingUp = null;
        for (const event of stored) if (!this.#seen.has(event.seq)) this.#addEvent(event);
        this.#settleEventWaiters();
      },
      (error) => {
        this.#catchingUp = null;
        this.#host.fail(error);
      },
    );
  }

  /** Work that keeps the fiber loaded (a step, a stash) has started. */
  beginWork(): void {
    this.#busy++;
  }

  /** That work is over; the run may now be idle. */
  endWork(): void {
    this.#busy--;
    this.#scheduleSuspendCheck();
  }

  /**
   * Forgets every pending wait (a later run replays them) and returns the write that suspends the
   * fiber: its status, when to wake it, what it waits for, and the runner's claim released.
   */
  unload(suspension: Suspension): RunWrite {
    for (const w of this.#waiters) clearTimeout(w.timer);
    this.#waiters.clear();
    const { status, wakeAt, waitingFor } = suspension;
    return {
      fiber: {
        status,
        wakeAt,
        waitingFor: waitingFor.length > 0 ? waitingFor : undefined,
        owner: undefined,
        leaseUntil: undefined,
        updatedAt: this.#host.now(),
      },
      // Suspending is decided with no read of the stored inbox under way (`#maybeSuspend`), so
      // what this run saw is every event it could act on; the store looks only past it.
      ...(waitingFor.length > 0 ? { inboxSeen: this.#seenThrough } : {}),
    };
  }

  /** Rejects every pending wait with `reason` (the run stopped or ended). */
  clear(reason: unknown): void {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(reason);
    }
    this.#waiters.clear();
    if (this.#suspendCheck) clearTimeout(this.#suspendCheck);
  }

  #add(waiter: Waiter): void {
    this.#waiters.add(waiter);
    if (waiter.dueAt !== undefined) {
      const delay = Math.max(0, waiter.dueAt - this.#host.now());
      waiter.timer = setTimeout(() => this.#due(waiter), Math.min(delay, MAX_TIMER_MS));
    }
    this.#scheduleSuspendCheck();
  }

  #due(waiter: Waiter): void {
    if (!this.#host.running() || !this.#waiters.has(waiter)) return;
    if (waiter.dueAt !== undefined && waiter.dueAt > this.#host.now()) {
      // Long timers are chunked by the setTimeout limit; re-arm.
      waiter.timer = setTimeout(
        () => this.#due(waiter),
        Math.min(waiter.dueAt - this.#host.now(), MAX_TIMER_MS),
      );
      return;
    }
    if (waiter.kind === "event") {
      if (this.#catchingUp) return; // decided once the stored inbox is merged
      if (this.#inbox.some((e) => e.name === waiter.name && e.at <= (waiter.dueAt ?? 0))) {
        // An event sent in time is buffered: it wins over the deadline.
        this.#settleEventWaiters();
        return;
      }
      if (!waiter.checked) {
        // Another runtime may have stored one in time without this run hearing of it: a wait
        // times out only on the stored inbox, read at or after its deadline.
        waiter.checked = true;
        this.#catchUp();
        return;
      }
    }
    this.#waiters.delete(waiter);
    const journal = this.#host.journal;
    const entry = journal.get(waiter.pos);
    if (!entry) return;
    if (waiter.kind === "sleep") {
      const done: JournalEntry = { ...entry, status: "completed", endedAt: this.#host.now() };
      journal.settle(done, (settled) => {
        journal.set(settled);
        this.#host.writeLater({ journal: [settled] });
        waiter.resolve(undefined);
      });
    } else {
      const error = new TimeoutError(
        `No "${waiter.name}" event arrived for fiber ${this.#host.fiberId} before the wait timed out.`,
      );
      const failed: JournalEntry = {
        ...entry,
        status: "failed",
        error: serializeError(error),
        endedAt: this.#host.now(),
      };
      journal.settle(failed, (settled) => {
        journal.set(settled);
        this.#host.writeLater({ journal: [settled] });
        waiter.reject(error);
      });
    }
  }

  /**
   * Hands buffered events to pending event waits, earliest wait first, each the first matching
   * event in arrival order. An event sent after a wait's deadline (`at > dueAt`, both recorded)
   * never satisfies it: a live run and a replay decide alike whatever the timers did, and a wait
   * whose deadline has passed with no event in time times out here.
   */
  #settleEventWaiters(): void {
    if (this.#catchingUp) return; // settled once the stored inbox is merged
    const journal = this.#host.journal;
    const waiting = [...this.#waiters].filter((w) => w.kind === "event").sort((a, b) => a.pos - b.pos);
    for (const waiter of waiting) {
      const index = this.#inbox.findIndex(
        (e) => e.name === waiter.name && (waiter.dueAt === undefined || e.at <= waiter.dueAt),
      );
      if (index < 0) {
        if (waiter.dueAt !== undefined && waiter.dueAt <= this.#host.now()) this.#due(waiter);
        continue;
      }
      const [event] = this.#inbox.splice(index, 1);
      if (!event) continue;
      this.#waiters.delete(waiter);
      clearTimeout(waiter.timer);
      const entry = journal.get(waiter.pos);
      if (!entry) continue;
      const done: JournalEntry = {
        ...entry,
        status: "completed",
        result: event.payload,
        endedAt: this.#host.now(),
      };
      journal.settle(done, (settled) => {
        journal.set(settled);
        this.#host.writeLater({
          journal: [settled],
          consumeEvents: [{ seq: event.seq, consumedBy: waiter.pos }],
        });
        waiter.resolve(event.payload);
      });
    }
  }

  #scheduleSuspendCheck(): void {
    if (this.#suspendCheck || !this.#host.running() || this.#waiters.size === 0 || this.#busy > 0) return;
    // A macrotask later, so that work the handler started in the same turn is counted.
    this.#suspendCheck = setTimeout(() => {
      this.#suspendCheck = null;
      this.#maybeSuspend();
    }, 0);
  }

  #maybeSuspend(): void {
    if (!this.#host.running() || this.#waiters.size === 0 || this.#busy > 0) return;
    if (this.#catchingUp) {
      // The stored inbox is being read: unloading now would drop what it brings. Look again once
      // it is merged, not every turn meanwhile (a read that never ends, as a store whose
      // transaction hangs, would keep this run spinning on timers).
      void this.#catchingUp.then(() => this.#scheduleSuspendCheck());
      return;
    }
    if (this.#host.journal.settling) {
      // An outcome is on its way to the handler (its turn, or its write, has not come yet):
      // unloading now would drop it. Look again a turn later.
      this.#scheduleSuspendCheck();
      return;
    }
    const now = this.#host.now();
    let wakeAt: number | undefined;
    let openEnded = false;
    const waitingFor: string[] = [];
    for (const w of this.#waiters) {
      if (w.kind === "event") waitingFor.push(w.name);
      if (w.dueAt === undefined) openEnded = true;
      else wakeAt = wakeAt === undefined ? w.dueAt : Math.min(wakeAt, w.dueAt);
    }
    if (!openEnded && wakeAt !== undefined && wakeAt - now < this.#host.unloadAfterMs) return;
    this.#host.suspend({ status: waitingFor.length > 0 ? "waiting" : "sleeping", wakeAt, waitingFor });
  }
}
