/**
 * Step attempts whose code is still executing, to check the engine's promise that one runtime
 * never executes two attempts of a step (one idempotency key) beside each other: within a run,
 * the next attempt starts only once the last one returned, or its signal aborted (a timeout: an
 * attempt that ignores its signal cannot be stopped, only told); and a later run of the fiber on
 * the same runtime waits for an attempt of a stopped run to return, for a lease period at most
 * (README, "Steps"), holding the fiber's Web Lock meanwhile: where runtimes share Web Locks, no
 * other runtime either, unless the lock was ever taken away (stolen) from the attempt's runtime
 * (the run goes on without it, fenced by the generation) or that runtime died. Runtimes without shared locks are not held to it across: a lapsed lease lets
 * another runner in while a slow attempt still runs, which the generation fences.
 */

import type { FiberContext, StepContext } from "../core/define";

/** What a runtime the attempts run on needs to say. */
export interface AttemptNode {
  readonly name: string;
  readonly crashed: boolean;
}

interface LiveAttempt {
  readonly node: AttemptNode;
  /** The run's context: one object per run of a fiber. */
  readonly run: FiberContext;
  readonly attempt: number;
  /** When its signal aborted (virtual ms), or `undefined`. */
  abortedAt: number | undefined;
}

/**
 * Whether an attempt on runtime `other` still holds the fiber's Web Lock against this one (the
 * runtimes share locks, and it was never taken away from that runtime).
 */
export type HeldAcross = (other: AttemptNode) => boolean;

export class LiveAttempts {
  readonly #live = new Map<string, Set<LiveAttempt>>();
  readonly #now: () => number;

  /** `now`: virtual ms, on the clock the runtimes' timers run on. */
  constructor(now: () => number) {
    this.#now = now;
  }

  /**
   * Records that `step` began on `node` and returns the function to call once its code stops
   * executing. `fail` is called for each attempt of the same step it overlaps against the promise.
   * `leaseMs`: the runtime's lease period, as long as a later run waits for a stopped one.
   * `heldAcross`: whether attempts on other runtimes are held to it too (default: not).
   */
  begin(
    node: AttemptNode,
    run: FiberContext,
    step: StepContext,
    leaseMs: number,
    fail: (invariant: string, detail: string) => void,
    heldAcross: HeldAcross = () => false,
  ): () => void {
    const key = step.idempotencyKey;
    const live = this.#live.get(key) ?? new Set<LiveAttempt>();
    this.#live.set(key, live);
    const now = this.#now();
    for (const other of live) {
      if (node.crashed || other.node.crashed) continue;
      const across = other.node !== node;
      if (across && !heldAcross(other.node)) continue;
      const sameRun = other.run === run;
      // It still holds the step while its signal is not aborted, and (against a later run) for a
      // lease period after.
      const since = other.abortedAt === undefined ? undefined : now - other.abortedAt;
      if (since !== undefined && (sameRun || since >= leaseMs)) continue;
      const what = `attempt ${step.attempt} of ${key} began on ${node.name} while attempt ${other.attempt}`;
      fail(
        "attempts-overlap",
        across
          ? `${what} was still executing on ${other.node.name} (${since === undefined ? "its signal not aborted" : `${since} ms after its signal aborted`}), holding the fiber's lock`
          : since === undefined
            ? `${what} was still executing ${sameRun ? "in the same run" : "in an earlier run"}, its signal not aborted`
            : `${what} of a stopped run was still executing, ${since} ms after its signal aborted (a later run waits up to ${leaseMs} ms)`,
      );
    }
    const attempt: LiveAttempt = {
      node,
      run,
      attempt: step.attempt,
      abortedAt: undefined,
    };
    const onAbort = () => {
      attempt.abortedAt = this.#now();
    };
    if (step.signal.aborted) onAbort();
    else step.signal.addEventListener("abort", onAbort, { once: true });
    live.add(attempt);
    return () => {
      step.signal.removeEventListener("abort", onAbort);
      live.delete(attempt);
      if (live.size === 0) this.#live.delete(key);
    };
  }
}
