/**
 * Virtual time for one schedule: `@sinonjs/fake-timers` replaces the global `setTimeout`,
 * `setInterval` and `Date`, so every timer of the engine (wake timers, lease renewal, step
 * timeouts, retry backoff, reader polls, the commit queue's late flush) and of the simulator
 * (store delays, actions) lives on one virtual clock. The run loop drains microtasks with the
 * native `setImmediate`, then fires exactly one timer, so the order of every asynchronous step
 * is a function of the seed alone.
 *
 * With `fakeImmediate` (the IdbStore schedules) `setImmediate` is faked too: fake-indexeddb
 * runs every step of a transaction as a `setImmediate` task, so the loop fires those one at a
 * time like timers (before any timer of the same instant; they take no virtual time), and
 * IndexedDB work interleaves with everything else in an order the seed fixes.
 */

import { type Clock, type FakeMethod, withGlobal } from "@sinonjs/fake-timers";

/** The wall-clock time at which every schedule starts (fixed, so traces are comparable). */
export const EPOCH = Date.UTC(2030, 0, 1);

const nativeSetImmediate = globalThis.setImmediate;
/** fake-timers bound to this realm's globals, built once (building it per schedule showed in profiles). */
let timers: ReturnType<typeof withGlobal> | undefined;

/** Resolves once every pending microtask (and microtask they queue) has run. */
export function drainMicrotasks(): Promise<void> {
  return new Promise<void>((resolve) => nativeSetImmediate(resolve));
}

/** A fake timer as fake-timers keeps it (the fields the run loop reads). */
interface DueTimer {
  callAt: number;
  immediate?: boolean;
}

/** How many `setImmediate` tasks a schedule may run per timer step before it counts as a livelock. */
export const IMMEDIATES_PER_STEP = 200;

/** Why `VirtualTime.runUntil` returned. */
export type RunStop = "deadline" | "idle" | "step-limit";

/** The fake clock of one schedule. Install it, run, and always `uninstall()` in a `finally`. */
export class VirtualTime {
  readonly #clock: Clock;
  /** Timers fired so far (not counting `setImmediate` tasks). */
  steps = 0;
  /** `setImmediate` tasks fired so far (with `fakeImmediate`). */
  tasks = 0;

  /** Installs fake timers on `globalThis` at `EPOCH`; `fakeImmediate` fakes `setImmediate` too. */
  constructor(fakeImmediate = false) {
    timers ??= withGlobal(globalThis);
    const toFake: FakeMethod[] = ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"];
    if (fakeImmediate) toFake.push("setImmediate", "clearImmediate");
    this.#clock = timers.install({
      now: EPOCH,
      toFake,
      shouldClearNativeTimers: true,
      loopLimit: 1_000_000,
    });
  }

  /** Virtual wall-clock time (what the faked `Date.now()` returns). */
  get now(): number {
    return this.#clock.now;
  }

  /** Virtual ms since the schedule started. */
  get elapsed(): number {
    return this.#clock.now - EPOCH;
  }

  /**
   * Fires timers one at a time, draining microtasks before each, until virtual time would pass
   * `deadline` (ms since the start) or `maxSteps` timers have fired in all. Time always reaches
   * the deadline unless the step limit stops it first ("idle": no timer was left). `setImmediate`
   * tasks do not count as steps; more than `IMMEDIATES_PER_STEP * maxSteps` of them also stop
   * the run ("step-limit").
   */
  async runUntil(deadline: number, maxSteps: number): Promise<RunStop> {
    for (;;) {
      await drainMicrotasks();
      if (this.steps >= maxSteps) return "step-limit";
      const next = this.#clock.countTimers() === 0 ? undefined : this.#next();
      if (next === undefined || next.callAt - EPOCH > deadline) {
        // No timer is due before the deadline, so ticking there fires nothing.
        if (this.#clock.now - EPOCH < deadline) this.#clock.tick(EPOCH + deadline - this.#clock.now);
        return next === undefined ? "idle" : "deadline";
      }
      if (next.immediate) {
        if (this.tasks >= IMMEDIATES_PER_STEP * maxSteps) return "step-limit";
        this.tasks++;
      } else this.steps++;
      this.#clock.next();
    }
  }

  /**
   * Moves the wall clock forward by `ms` at once: `Date.now()` leaps while pending timers keep
   * their relative delays (browsers run timers on a monotonic clock), so leases and deadlines
   * read from `Date.now()` expire early, as after a suspended laptop or an NTP correction.
   */
  jump(ms: number): void {
    this.#clock.setSystemTime(this.#clock.now + ms);
  }

  /** Restores the native timers and `Date`; pending fake timers are dropped. */
  uninstall(): void {
    this.#clock.uninstall();
  }

  /** The timer `next()` fires: the first by due time, immediates first among equals. */
  #next(): DueTimer | undefined {
    // fake-timers keeps its timers in a min-heap in firing order; peek at its top.
    const internals = this.#clock as unknown as {
      timerHeap?: { peek(): DueTimer | undefined };
      timers?: Map<number, DueTimer>;
    };
    const top = internals.timerHeap?.peek();
    if (top) return top;
    let min: DueTimer | undefined;
    for (const timer of internals.timers?.values() ?? [])
      if (min === undefined || timer.callAt < min.callAt || (timer.callAt === min.callAt && timer.immediate))
        min = timer;
    return min;
  }
}
