/**
 * The extension host's wake-up: one `chrome.alarms` alarm that starts the background worker
 * again when a fiber needs it, with no extension page open. It is due at the earliest of a
 * sleeping or waiting fiber's timer and, while a fiber runs, a heartbeat (so a run the browser
 * stopped resumes from its journal within one heartbeat). Chrome refuses to fire an alarm sooner
 * than its minimum delay (30 s for a packed Manifest V3 extension, 1 s for an unpacked one), so
 * a timer due sooner than that is fired in the worker by the runtime's own `setTimeout` while the
 * worker lives, and by the alarm at the minimum delay when Chrome stopped the worker first.
 */

import type { Runtime } from "../core/runtime";
import type { ChromeAlarmsLike } from "./chrome-types";

/** Options of {@link WakeAlarm}. */
export interface WakeAlarmOptions {
  runtime: Runtime;
  alarms: ChromeAlarmsLike;
  /** The alarm's name. */
  name: string;
  /** The heartbeat while a fiber runs, in ms. */
  heartbeatMs: number;
  /** Chrome's minimum alarm delay for this extension, in ms (resolved lazily). */
  minimumDelayMs: () => Promise<number>;
  /** Whether this worker has work in flight (a run, a `ctx.keepAlive()`). */
  busy: () => boolean;
  now?: () => number;
}

/** What a plan decided (for tests and logs). */
export type WakePlan = { status: "cleared" } | { status: "kept" | "set"; when: number };

/**
 * Keeps the alarm in step with the fibers. `plan()` may be called as often as anything changes:
 * plans run one at a time, and a call made while one runs is folded into one more.
 *
 * Failure semantics: a plan reads the fiber list from the store; when that or the alarms API
 * fails, `plan()` rejects and the alarm stays as it was (an alarm too early only wakes the worker
 * once for nothing; the next wake plans again).
 */
export class WakeAlarm {
  readonly #options: WakeAlarmOptions;
  readonly #now: () => number;
  #running: Promise<WakePlan> | null = null;
  #again: Promise<WakePlan> | null = null;

  constructor(options: WakeAlarmOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Sets, keeps or clears the alarm for the fibers as they are now. */
  plan(): Promise<WakePlan> {
    if (!this.#running) {
      const run = this.#plan();
      this.#running = run;
      const clear = () => {
        if (this.#running === run) this.#running = null;
      };
      run.then(clear, clear);
      return run;
    }
    // One more plan after the running one, shared by every call made meanwhile.
    this.#again ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#again = null;
        return this.plan();
      });
    return this.#again;
  }

  async #plan(): Promise<WakePlan> {
    const { runtime, alarms, name, heartbeatMs } = this.#options;
    const live = await runtime.list({ status: ["running", "sleeping", "waiting"] });
    const now = this.#now();
    let due = Number.POSITIVE_INFINITY;
    if (this.#options.busy() || live.some((r) => r.status === "running")) due = now + heartbeatMs;
    for (const record of live) if (record.wakeAt !== undefined) due = Math.min(due, record.wakeAt);
    if (due === Number.POSITIVE_INFINITY) {
      // Nothing timed: a waiting fiber with no timeout is woken by the event, which a page
      // sends through a port (and so starts the worker).
      await alarms.clear(name);
      return { status: "cleared" };
    }
    const when = Math.max(due, now + (await this.#options.minimumDelayMs()));
    // Moved to `when` even when that is later: a heartbeat set while a fiber ran would otherwise
    // wake the worker once for nothing after the fiber went to sleep. Moving the heartbeat later
    // is safe, since it only has to come within `heartbeatMs` of the last plan.
    const existing = await alarms.get(name);
    if (existing?.scheduledTime === when) return { status: "kept", when };
    await alarms.create(name, { when });
    return { status: "set", when };
  }

  /**
   * Sets the alarm one heartbeat from now without reading the fibers: when a recovery or a plan
   * failed, the next wake is what retries it (an alarm that just fired is gone, and with no page
   * open nothing else would start the worker again).
   *
   * Failure semantics: rejects when the alarms API does.
   */
  async retryLater(): Promise<number> {
    const { alarms, name, heartbeatMs } = this.#options;
    const when = this.#now() + Math.max(heartbeatMs, await this.#options.minimumDelayMs());
    await alarms.create(name, { when });
    return when;
  }
}
