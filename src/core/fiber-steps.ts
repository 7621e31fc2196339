/**
 * The journaled calls of one run that execute code: `ctx.step`, with its attempts, retries and
 * the replay of an interrupted step, and `ctx.now`, `ctx.random` and `ctx.uuid`, whose value is
 * produced once and replayed from the journal after that. Used by `FiberRun`.
 */

import type { StepContext, StepOptions } from "./define";
import {
  describeError,
  InvalidInputError,
  NonRetryableError,
  RecoveryExhaustedError,
  StepFailedError,
  serializeError,
} from "./errors";
import type { RunWrite } from "./fiber-waits";
import type { FiberEvent, JournalEntry, StreamChunk } from "./records";
import { type JournalSlot, type RunJournal, recordedError } from "./run-journal";
import { sleepUntil } from "./sleep";
import { backoffMs, DEFAULT_RETRY, runAttempt } from "./step-attempt";
import { assertArgument, assertStepOptions, assertStorable } from "./validate";

/** What steps need from their run. */
export interface StepHost {
  readonly fiberId: string;
  /** Restarts from scratch so far (`onRecovered` "restart"): 0 until the first. */
  readonly epoch: number;
  readonly journal: RunJournal;
  /** Aborted when the run is cancelled, stopped (fenced, a failed write) or fails a replay; not when it ends otherwise or suspends. */
  readonly signal: AbortSignal;
  readonly maxPayloadBytes: number;
  /** Highest seq the run has appended: a step's chunks come after it. */
  readonly streamHead: number;
  now(): number;
  /** Throws once the run no longer executes here. */
  assertLive(): void;
  /** The fiber's stored chunks with `seq > after`. */
  readStream(after: number): Promise<StreamChunk[]>;
  /** Appends a chunk emitted by the step at journal position `step`. */
  append(type: string, data: unknown, origin: { step: number }): void;
  /** Writes under the run's claim; a failure stops the run and rejects. */
  write(group: RunWrite, options?: { defer?: boolean }): Promise<void>;
  /** Queues a write under the run's claim; a failure stops the run. */
  writeLater(group: RunWrite, options?: { defer?: boolean }): void;
  /**
   * For a replicated fiber, resolves once what the run wrote so far is shipped to its second
   * home (Rule A of continuity; a refusal stops the run and rejects); `undefined` otherwise.
   */
  shipped(): Promise<void> | undefined;
  /** A picked-up run's pick-up write while it is in flight (`RunState.pickedUp`). */
  pickedUp(): Promise<void> | undefined;
  /** Whether the fiber is replicated (continuity): its steps wait for Rule A. */
  replicated(): boolean;
  /** A step started: it keeps the fiber loaded until `endWork`. */
  beginWork(): void;
  endWork(): void;
}

/** `ctx.step` and the journaled values of one run. */
export class FiberSteps {
  readonly #host: StepHost;
  /** Step functions still executing, including attempts that are over (timed out, abandoned). */
  readonly #executing = new Set<Promise<unknown>>();

  constructor(host: StepHost) {
    this.#host = host;
  }

  /**
   * `ctx.step`: runs `fn` until an attempt succeeds, a `NonRetryableError` or `InvalidInputError`
   * is thrown, or the retry policy gives up; a replay returns or throws what was recorded.
   *
   * Failure semantics: each attempt is journaled as `started` before it runs; its result is
   * journaled with the run's next write. A step left `started` by a crash runs again with
   * `interrupted: true` and the chunks it emitted, and always gets at least one more attempt.
   */
  async step<T>(
    name: string,
    fn: (step: StepContext) => Promise<T> | T,
    options: StepOptions = {},
  ): Promise<T> {
    const host = this.#host;
    host.assertLive();
    assertArgument(typeof name === "string" && name.length > 0, "ctx.step(name, fn) needs a non-empty name.");
    assertArgument(typeof fn === "function", `ctx.step("${name}", fn) needs a function.`);
    if (options.timeoutMs !== undefined || options.retry !== undefined || options.awaitStart !== undefined)
      assertStepOptions(options, `ctx.step("${name}")`);
    const slot = host.journal.next("step", name);
    const recorded = slot.recorded;
    if (recorded?.status === "completed" || recorded?.status === "failed") {
      // In its turn: under Promise.all, the order the live run settled in (see RunJournal).
      const turn = host.journal.replay(recorded);
      if (turn) await turn;
      if (recorded.status === "failed") throw recordedError(recorded);
      return recorded.result as T;
    }
    host.journal.begin(slot.pos);
    host.beginWork();
    try {
      return await this.#attempts(slot, fn, options);
    } finally {
      host.endWork();
    }
  }

  /**
   * `ctx.now`, `ctx.random`, `ctx.uuid`: the value `produce` returns, journaled, or on replay the
   * value an earlier run journaled.
   */
  async journaled<T>(kind: "now" | "random" | "uuid", produce: () => T): Promise<T> {
    const host = this.#host;
    host.assertLive();
    const { pos, key, recorded } = host.journal.next(kind, kind);
    if (recorded?.status === "completed") return recorded.result as T;
    const now = host.now();
    const value = produce();
    const entry: JournalEntry = {
      fiberId: host.fiberId,
      pos,
      kind,
      key,
      status: "completed",
      attempt: 1,
      startedAt: now,
      endedAt: now,
      result: value,
    };
    host.journal.set(entry);
    host.writeLater({ journal: [entry] });
    return value;
  }

  async #attempts<T>(
    { pos, key, recorded }: JournalSlot,
    fn: (step: StepContext) => Promise<T> | T,
    options: StepOptions,
  ): Promise<T> {
    const host = this.#host;
    const policy = options.retry === undefined ? DEFAULT_RETRY : { ...DEFAULT_RETRY, ...options.retry };
    // Where the chunks of the current chain of attempts start: a retry after an error starts a
    // new chain (it gets no `emitted`), an attempt after an interruption continues the chain.
    let streamFrom = recorded?.streamFrom ?? host.streamHead;
    // A `started` entry with an error is an attempt that failed and a retry not yet begun (see
    // below): the next attempt starts a new chain, once its backoff is over, and is interrupted
    // only if that attempt timed out. Any other `started` entry is an attempt a crash or a stop
    // cut short: the next continues its chain, interrupted.
    const retryDue =
      recorded?.status === "started" && recorded.error !== undefined ? recorded.dueAt : undefined;
    const cutShort = recorded?.status === "started" && recorded.error === undefined;
    let interrupted = cutShort || (retryDue !== undefined && recorded?.error?.code === "timeout");
    let attempt = recorded?.attempt ?? 0;
    // A crash is not the step's fault: an interrupted step always gets at least one more attempt.
    const lastAttempt = Math.max(attempt + 1, policy.maxAttempts);
    const emitted = cutShort ? await this.#stepChunks(pos, streamFrom) : [];
    if (retryDue !== undefined) await this.#waitUntil(retryDue);
    // A restart from scratch is a new execution: its steps must not be deduplicated against
    // the discarded run's, so its keys carry the epoch (ids cannot contain "~").
    const idempotencyKey =
      host.epoch === 0 ? `${host.fiberId}:${key}` : `${host.fiberId}~${host.epoch}:${key}`;
    for (let tries = 0; ; tries++) {
      attempt++;
      const started: JournalEntry = {
        fiberId: host.fiberId,
        pos,
        kind: "step",
        key,
        status: "started",
        attempt,
        startedAt: host.now(),
        streamFrom,
      };
      host.journal.set(started);
      const written = host.write({ journal: [started] });
      // `awaitStart: false`: the attempt runs beside the write (FIFO before anything it emits);
      // a failed write stops the run, which aborts the attempt. Not beside a pick-up's write,
      // though: a failed pick-up leaves no trace, and its retries would each run the step again.
      const early = options.awaitStart === false && !host.replicated();
      if (early) {
        written.catch(() => {});
        const pickedUp = host.pickedUp();
        if (pickedUp !== undefined) await pickedUp.catch(() => {}); // a failure stopped the run
      } else {
        await written;
        // Rule A: a replicated step runs only once its second home knows it started.
        const shipped = host.shipped();
        if (shipped !== undefined) await shipped;
      }
      host.assertLive();
      try {
        const result = await runAttempt(
          (step) => this.#track(fn, step),
          {
            attempt,
            idempotencyKey,
            interrupted,
            emitted: tries === 0 ? emitted : [],
            emit: (type, data) => {
              host.assertLive();
              host.append(type, data, { step: pos });
            },
          },
          host.signal,
          options.timeoutMs,
        );
        assertStorable(result, `result of step "${key}"`, host.maxPayloadBytes);
        // Never settled before its start is durable (with `awaitStart: false`, long done by now).
        if (early) await written;
        const done: JournalEntry = { ...started, status: "completed", result, endedAt: host.now() };
        return await new Promise<T>((resolve) => {
          host.journal.settle(done, (entry) => {
            host.journal.set(entry);
            // Deferred: the next write (the next step's start, a chunk, the fiber's end) carries
            // it, FIFO. A crash before then leaves the step `started`: it re-runs, interrupted.
            host.writeLater({ journal: [entry] }, { defer: true });
            resolve(result);
          });
        });
      } catch (error) {
        // Never settled before its start is durable: a failed start write stops the run first.
        if (early) await written.catch(() => {});
        host.assertLive();
        // A step that gave up on recovering (the agent's model call after as many regenerations
        // as the fiber may recover) is not retried either.
        const permanent =
          error instanceof NonRetryableError ||
          error instanceof InvalidInputError ||
          error instanceof RecoveryExhaustedError;
        if (permanent || attempt >= lastAttempt) {
          const failure = permanent
            ? error
            : new StepFailedError(
                "step_failed",
                `Step "${key}" of fiber ${host.fiberId} failed after ${attempt} attempt(s): ${describeError(error)}`,
                { cause: error },
              );
          const failed: JournalEntry = {
            ...started,
            status: "failed",
            error: serializeError(failure),
            endedAt: host.now(),
          };
          return await new Promise<T>((_, reject) => {
            host.journal.settle(failed, (entry) => {
              host.journal.set(entry);
              host.writeLater({ journal: [entry] });
              reject(failure);
            });
          });
        }
        // Durable before the backoff: a crash during it resumes the wait, and the next attempt
        // starts a new chain (no `emitted` of the failed one), as it would here. It is
        // `interrupted` after a timeout (the attempt's own `timeoutMs`, or an error it threw with
        // the code `timeout`): the late attempt may have had its effect, and may still be
        // running (nothing can stop a function that ignores its signal).
        const delay = backoffMs(policy, tries);
        const failedAt = host.now();
        streamFrom = host.streamHead;
        const retrying: JournalEntry = {
          ...started,
          error: serializeError(error),
          endedAt: failedAt,
          dueAt: failedAt + delay,
          streamFrom,
        };
        host.journal.set(retrying);
        await host.write({ journal: [retrying] });
        await this.#waitUntil(failedAt + delay);
        // Decided from the journaled error, as a replay after a crash in the backoff decides it.
        interrupted = retrying.error?.code === "timeout";
      }
    }
  }

  /** Waits until the run's clock reaches `due`, while the run is live. */
  async #waitUntil(due: number): Promise<void> {
    if (due <= this.#host.now()) return;
    await sleepUntil(() => due - this.#host.now(), this.#host.signal);
    this.#host.assertLive();
  }

  /**
   * Resolves once no step function of this run is executing any more: an attempt that timed out
   * or whose run stopped may still be running user code, and nothing else may run the same step
   * (with the same idempotency key) beside it. `undefined` when none is executing.
   */
  settled(): Promise<void> | undefined {
    if (this.#executing.size === 0) return undefined;
    return Promise.allSettled([...this.#executing]).then(() => this.settled());
  }

  /** Runs one attempt of a step function, tracked until it settles, whatever became of it. */
  #track<T>(fn: (step: StepContext) => Promise<T> | T, step: StepContext): Promise<T> {
    const work = Promise.resolve().then(() => fn(step));
    this.#executing.add(work);
    const forget = () => {
      this.#executing.delete(work);
    };
    work.then(forget, forget);
    return work;
  }

  /** The chunks the step at `pos` emitted in earlier attempts, from `streamFrom` on. */
  async #stepChunks(pos: number, streamFrom: number): Promise<FiberEvent[]> {
    const chunks = await this.#host.readStream(streamFrom);
    return chunks.filter((c) => c.step === pos).map(({ seq, type, data, at }) => ({ seq, type, data, at }));
  }
}
