/**
 * Fiber definitions and the `ctx` a fiber's handler receives. `defineFiber` is the entry point
 * users write; the runtime and the agent layer consume the returned `FiberDefinition`.
 */

import type { FiberEvent, JournalEntry, RecoveryInfo } from "./records";

/** How a step is retried after it throws. */
export interface RetryPolicy {
  /** Attempts in all, the first included (default 3). */
  maxAttempts?: number;
  /** Delay growth between attempts (default "exponential"). */
  backoff?: "exponential" | "fixed";
  /** Delay before the second attempt (default 250 ms). */
  initialDelayMs?: number;
  /** Upper bound of any delay (default 30 s). */
  maxDelayMs?: number;
}

/** Options of one `ctx.step` call. */
export interface StepOptions {
  retry?: RetryPolicy;
  /**
   * Deadline of each attempt; a late attempt fails with `timeout` and is retried, `interrupted`.
   * Its signal is aborted, but a function that ignores it goes on beside the retry.
   */
  timeoutMs?: number;
  /**
   * `false`: each attempt starts while its `started` entry is being written, instead of once it
   * is durable. The entry still goes first, before anything the attempt emits or returns (one
   * FIFO queue), and a failed write stops the run; what is given up is a crash in that window
   * (about one transaction): the `started` entry is then lost with everything after it, and
   * the step runs again as a first attempt, `interrupted: false`. For a step that is harmless
   * to repeat without that flag, such as a model call (the agent layer's model step sets it),
   * this takes a transaction off the step's latency. Ignored for a replicated fiber (continuity's
   * Rule A waits for the start to be shipped; its own `awaitStart` is per kind). Default `true`.
   */
  awaitStart?: boolean;
}

/** What a step's function receives. */
export interface StepContext {
  /** 1 on the first attempt; keeps counting across crashes. */
  attempt: number;
  /**
   * `fiberId:stepKey`: stable across attempts and crashes; pass it downstream to deduplicate side
   * effects. After `onRecovered` chose "restart", a new execution, it is `fiberId~epoch:stepKey`.
   */
  idempotencyKey: string;
  /**
   * True when an earlier attempt of this step was cut off by a crash or stop, or timed out (ran
   * past its `timeoutMs`, or threw an error whose `code` is `"timeout"`, such as an upstream's):
   * it may have had its effect (and a late attempt that ignores its signal may still be running
   * beside this one).
   */
  interrupted: boolean;
  /** Aborted when the fiber is cancelled, the attempt times out or the runner loses the fiber. */
  signal: AbortSignal;
  /**
   * Chunks this step emitted in earlier attempts that were cut off by a crash or stop, since the
   * step last started afresh: empty on a first run and on a retry after an attempt failed (a
   * retry starts over, so it is not given the failed attempt's chunks, which stay in the stream).
   */
  emitted: readonly FiberEvent[];
  /** Appends a chunk to the fiber's stream on behalf of this step. */
  emit(type: string, data?: unknown): void;
}

/** What `onRecovered` decides for an interrupted fiber. */
export type RecoveryDecision = "resume" | "restart" | "abort";

/** The view of a fiber that `onRecovered` receives. */
export interface RecoveryContext<In = unknown> {
  id: string;
  name: string;
  input: In;
  snapshot: unknown;
  recovery: RecoveryInfo;
  journal: readonly JournalEntry[];
}

/**
 * The handle a fiber's handler works through. Everything here is durable or journaled: after a
 * crash the handler is replayed from the top and gets the same answers.
 */
export interface FiberContext<In = unknown> {
  readonly id: string;
  readonly name: string;
  readonly input: In;
  /** Aborted when the fiber is cancelled (reason: a `CancelledError`) or its runner is fenced. */
  readonly signal: AbortSignal;
  /**
   * The last value passed to `stash`, as of the start of this run (and updated by later stashes).
   * A fiber defined with `resumeFrom: "stash"` picks up from it after a crash.
   */
  readonly snapshot: unknown;
  /** `null` on a first run; set when this run recovers an interrupted one. */
  readonly recovery: RecoveryInfo | null;
  /**
   * The runtime's `maxPayloadBytes`: the most an input, a step result, a chunk, a stash or the
   * fiber's result may hold. A handler that builds a large result can check against it early.
   */
  readonly maxPayloadBytes: number;
  /**
   * Recoveries in a row without progress before the fiber fails with `recovery_exhausted` (the
   * definition's `maxRecoveries`, else the runtime's). Chunks a step emits count as progress, so
   * a step that throws its output away and starts over after each interruption should give up
   * after as many of them itself (the agent's model call does).
   */
  readonly maxRecoveries: number;

  /**
   * Runs `fn` once and records its result; a replay returns the recorded result without running it.
   *
   * Failure semantics: the journal records `started` before `fn` runs. If the process dies while
   * `fn` runs, the step runs again on recovery with `interrupted: true` and the same
   * `idempotencyKey`; a completed step never runs again. Thrown errors are retried by `retry`;
   * `NonRetryableError` stops at once; the last error reaches the handler as `StepFailedError`.
   */
  step<T>(name: string, fn: (step: StepContext) => Promise<T> | T, options?: StepOptions): Promise<T>;
  /**
   * Appends `{ seq, type, data, at }` to the fiber's durable stream; replays do not append it
   * again (they know it by its ordinal among the run's emits). Not inside a step's function: a
   * replay does not run that, so later emits would be counted short; use the step's `emit`.
   */
  emit(type: string, data?: unknown): void;
  /**
   * Replaces the fiber's snapshot; resolves once durable. After a crash `ctx.snapshot` holds it.
   *
   * Failure semantics: atomic; if the process dies before it resolves, the previous snapshot stays.
   * A replay from the top makes the same stashes silently (the stored snapshot is newer); with
   * `resumeFrom: "stash"` every stash of a later run is a new one. Its completion is
   * not ordered against steps and waits in other `Promise.all` branches (it has no journal
   * entry): stash between concurrent sections, not inside one branch of them.
   */
  stash(value: unknown): Promise<void>;
  /** A durable timer: the fiber may be unloaded while it sleeps and is replayed when it is due. */
  sleep(name: string, ms: number): Promise<void>;
  /**
   * Waits durably for `sendEvent(id, name, payload)`; events sent earlier are buffered.
   * Past `timeoutMs` it throws `TimeoutError` (`timeout`).
   */
  waitForEvent<T = unknown>(name: string, options?: { timeoutMs?: number }): Promise<T>;
  /** A journaled `Date.now()`: replays see the same value. */
  now(): Promise<number>;
  /** A journaled `Math.random()`. */
  random(): Promise<number>;
  /** A journaled random UUID. */
  uuid(): Promise<string>;
  /** Asks the host to keep its process alive until the returned function is called. */
  keepAlive(): () => void;
  /** Keeps the host alive while `fn` runs. */
  keepAliveWhile<T>(fn: () => Promise<T>): Promise<T>;
}

/** What `defineFiber` takes. */
export interface FiberOptions<In, Out> {
  /** Recorded on each fiber (default "1"); recovery under another version fails with `version_mismatch`. */
  version?: string;
  /** Older versions this definition can still replay. */
  compatibleVersions?: readonly string[];
  /** The handler. */
  run(ctx: FiberContext<In>, input: In): Promise<Out>;
  /** Decides what happens to a fiber found interrupted (default "resume"). */
  onRecovered?(ctx: RecoveryContext<In>): RecoveryDecision | Promise<RecoveryDecision>;
  /** Overrides the runtime's `maxRecoveries` for this fiber. */
  maxRecoveries?: number;
  /** Overrides the runtime's `retentionMs` for this fiber. */
  retentionMs?: number;
  /**
   * Where a later run of the fiber (after a crash, a wake-up, an event) starts:
   * - `"start"` (default, the step-journal shape): the handler is replayed from the top; its
   *   completed steps return their results and its emits and stashes are not made again.
   * - `"stash"` (the fiber + stash shape): the handler, run from the top, picks up from
   *   `ctx.snapshot`, and the runtime counts from the last stash: the steps and emits the earlier
   *   run made after that stash replay (the handler must make them again, in the same order),
   *   and the rest are new. A stash is refused (`invalid_argument`) while a step, sleep or wait
   *   of the run is pending, and for `undefined`.
   */
  resumeFrom?: "start" | "stash";
}

/** A registered kind of fiber; carries its input and output types. */
export interface FiberDefinition<In = unknown, Out = unknown> {
  readonly name: string;
  readonly version: string;
  readonly compatibleVersions: readonly string[];
  readonly options: FiberOptions<In, Out>;
  /** Type-only marker for inference; always undefined at run time. */
  readonly __types?: { input: In; output: Out };
}

/** The input type of a definition. */
export type InputOf<D> = D extends FiberDefinition<infer In, unknown> ? In : never;
/** The output type of a definition. */
export type OutputOf<D> = D extends FiberDefinition<unknown, infer Out> ? Out : never;

const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,100}$/;

/**
 * Defines a kind of fiber: a named, versioned async handler that the runtime runs durably.
 *
 * @example
 * export const greet = defineFiber("greet", {
 *   async run(ctx, input: { name: string }) {
 *     const text = await ctx.step("compose", () => `Hello, ${input.name}!`);
 *     ctx.emit("greeting", { text });
 *     return text;
 *   },
 * });
 */
export function defineFiber<In, Out>(name: string, options: FiberOptions<In, Out>): FiberDefinition<In, Out> {
  if (!NAME_PATTERN.test(name)) {
    throw new TypeError(
      `Invalid fiber name ${JSON.stringify(name)}: use 1-100 characters from letters, digits and _ . : -`,
    );
  }
  if (typeof options?.run !== "function") {
    throw new TypeError(`defineFiber("${name}") needs a run(ctx, input) function.`);
  }
  if (options.resumeFrom !== undefined && options.resumeFrom !== "start" && options.resumeFrom !== "stash") {
    throw new TypeError(
      `defineFiber("${name}"): resumeFrom must be "start" (replay from the top) or "stash" (continue from the last stash), not ${JSON.stringify(options.resumeFrom)}.`,
    );
  }
  return {
    name,
    version: options.version ?? "1",
    compatibleVersions: options.compatibleVersions ?? [],
    options,
  };
}
