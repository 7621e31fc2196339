/**
 * Random fiber programs: a small language of the things a handler does (steps with retry
 * policies, timeouts, throwing and slow attempts and emits inside; emits outside steps; stashes;
 * `Promise.all` of branches; sleeps; waits with and without timeouts, two on one name; journaled
 * `now`/`random`/`uuid`), generated from the seed, the handler that interprets one, and the
 * oracle that says what an uninterrupted run of a deterministic program returns. A share of the
 * programs are agent fibers instead (`agent-program.ts`).
 */

import type { FiberContext, RecoveryDecision, StepContext } from "../core/define";
import { NonRetryableError } from "../core/errors";
import { type AgentPlan, describeAgent, generateAgent } from "./agent-program";
import type { Prng } from "./prng";

/** One step: how its attempts behave. */
export interface StepOp {
  k: "step";
  name: string;
  /** Attempts below this throw (1 = never throws); `Infinity` always throws. */
  failUntil: number;
  /** Throw `NonRetryableError` instead of a plain error. */
  nonRetryable: boolean;
  /** Attempts up to this one are slow (`slowMs` of virtual time). */
  slowAttempts: number;
  slowMs: number;
  /** Whether a slow attempt stops when its signal aborts (a `fetch` with a signal) or not. */
  honorsSignal: boolean;
  timeoutMs?: number;
  maxAttempts: number;
  backoffMs: number;
  /** Chunks emitted before and after the slow part. */
  emitsBefore: number;
  emitsAfter: number;
}

/** One operation of a program. */
export type Op =
  | StepOp
  | { k: "emit"; label: string }
  | { k: "stash"; n: number }
  | { k: "sleep"; name: string; ms: number }
  | { k: "wait"; name: string; timeoutMs?: number }
  | { k: "value"; kind: "now" | "random" | "uuid" }
  | {
      k: "all";
      branches: Array<{ head: StepOp | { k: "wait"; name: string; timeoutMs?: number }; emits: string[] }>;
    };

/** A generated program: one fiber definition. */
export interface Program {
  name: string;
  ops: Op[];
  onRecovered: RecoveryDecision | undefined;
  /** No timed waits: an uninterrupted run's result is a function of the events received. */
  deterministic: boolean;
  /** Labels of every emit outside steps, in program order. */
  outsideEmits: string[];
  /** Event names the program waits for, one per wait. */
  waits: string[];
  /**
   * `"stash"`: the fiber + stash shape (`resumeFrom: "stash"`): the handler picks up after the
   * op its last stash names, with the results it had then.
   */
  resumeFrom?: "stash";
  /** Set for an agent program: a `defineAgent` fiber run by this script (`ops` is then empty). */
  agent?: AgentPlan;
}

/** What a running program reports to the simulator. */
export interface ProgramHost {
  /** The runtime executing it: its runner id, whether it crashed, its definition version. */
  readonly runner: string;
  readonly crashed: boolean;
  /**
   * A step attempt began (its side effect); the simulator checks and logs it. The attempt calls
   * the function returned once its code stops executing, however it ends.
   */
  effect(ctx: FiberContext, step: StepContext): () => void;
  /** A journaled value was returned to the handler. */
  observed(fiberId: string, key: string, value: unknown): void;
}

const EVENT_NAMES = ["approve", "input"];

/** The share of programs that are agent fibers. */
export const AGENT_SHARE = 0.25;

/**
 * Generates program `index` from `rng`: with probability `AGENT_SHARE` (and `agents`) an agent
 * program, drawn after the ops so that every other program is the one this seed always gave.
 */
export function generateProgram(rng: Prng, index: number, agents = true): Program {
  const ops: Op[] = [];
  const outsideEmits: string[] = [];
  const waits: string[] = [];
  let deterministic = true;
  const count = rng.int(2, 8);
  const stepOp = (): StepOp => {
    // Outcomes that do not depend on which attempt numbers a crash skipped: an attempt cut off
    // by a crash is not the step's fault, so the engine may give more attempts than the policy.
    const maxAttempts = rng.int(1, 4);
    const outcome = rng.pick(["ok", "ok", "ok", "flaky", "fails", "refuses"] as const);
    const failUntil =
      outcome === "ok" || (outcome === "flaky" && maxAttempts < 2)
        ? 1
        : outcome === "flaky"
          ? rng.int(2, maxAttempts)
          : Number.POSITIVE_INFINITY;
    const slowRoom =
      outcome === "fails" ? maxAttempts : Math.min(maxAttempts - 1, maxAttempts - failUntil + 1);
    const slowAttempts = outcome !== "refuses" && slowRoom > 0 && rng.chance(0.3) ? rng.int(1, slowRoom) : 0;
    const slowMs = rng.int(50, 600);
    return {
      k: "step",
      name: rng.pick(["fetch", "call", "tool"]),
      failUntil,
      nonRetryable: outcome === "refuses",
      slowAttempts,
      slowMs,
      honorsSignal: rng.chance(0.5),
      maxAttempts,
      backoffMs: rng.int(10, 300),
      emitsBefore: rng.chance(0.5) ? rng.int(1, 3) : 0,
      emitsAfter: rng.chance(0.3) ? rng.int(1, 2) : 0,
      ...(slowAttempts > 0 || rng.chance(0.1) ? { timeoutMs: rng.int(20, slowMs) } : {}),
    };
  };
  const waitOp = (): { k: "wait"; name: string; timeoutMs?: number } => {
    const name = rng.pick(EVENT_NAMES);
    waits.push(name);
    if (rng.chance(0.35)) {
      deterministic = false;
      return { k: "wait", name, timeoutMs: rng.pick([0, 50, 300, 1500, 4000]) };
    }
    return { k: "wait", name };
  };
  for (let i = 0; i < count; i++) {
    const roll = rng.next();
    if (roll < 0.35) ops.push(stepOp());
    else if (roll < 0.5) {
      const label = `e${index}.${outsideEmits.length}`;
      outsideEmits.push(label);
      ops.push({ k: "emit", label });
    } else if (roll < 0.58) ops.push({ k: "stash", n: i });
    else if (roll < 0.66) ops.push({ k: "sleep", name: "nap", ms: rng.pick([0, 30, 500, 1500, 3000]) });
    else if (roll < 0.78) ops.push(waitOp());
    else if (roll < 0.86) ops.push({ k: "value", kind: rng.pick(["now", "random", "uuid"] as const) });
    else {
      const branches = Array.from({ length: rng.int(2, 3) }, () => {
        const head = rng.chance(0.75) ? stepOp() : waitOp();
        const emits = rng.chance(0.5) ? [`e${index}.${outsideEmits.length}`] : [];
        outsideEmits.push(...emits);
        return { head, emits };
      });
      ops.push({ k: "all", branches });
    }
  }
  const onRecovered = rng.pick([undefined, undefined, "resume", "restart", "restart", "abort"] as const);
  const name = `prog${index}`;
  if (rng.chance(agents ? AGENT_SHARE : 0)) {
    const agent = generateAgent(rng, index);
    return { name, ops: [], onRecovered: undefined, deterministic: true, outsideEmits: [], waits: [], agent };
  }
  // Half the programs that stash pick up from their stash (decided without drawing from `rng`,
  // so each seed still gives the programs it always gave).
  const stashes = ops.some((op) => op.k === "stash") && index % 2 === 1;
  return {
    name,
    ops,
    onRecovered,
    deterministic,
    outsideEmits,
    waits,
    ...(stashes ? { resumeFrom: "stash" } : {}),
  };
}

/** A one-line text of `program`, for traces. */
export function describeProgram(program: Program): string {
  if (program.agent) return `${program.name}: ${describeAgent(program.agent)}`;
  const op = (o: Op): string => {
    switch (o.k) {
      case "step": {
        const fate =
          o.failUntil === 1
            ? "ok"
            : o.failUntil <= o.maxAttempts
              ? `flaky<${o.failUntil}`
              : o.nonRetryable
                ? "refuses"
                : "fails";
        const slow =
          o.slowAttempts > 0 ? ` slow<=${o.slowAttempts}:${o.slowMs}ms${o.honorsSignal ? "" : "!"}` : "";
        const timeout = o.timeoutMs === undefined ? "" : ` t/o ${o.timeoutMs}`;
        return `step ${o.name}(${fate} x${o.maxAttempts}${slow}${timeout} emits ${o.emitsBefore}+${o.emitsAfter})`;
      }
      case "emit":
        return `emit ${o.label}`;
      case "stash":
        return "stash";
      case "sleep":
        return `sleep ${o.ms}`;
      case "wait":
        return `wait ${o.name}${o.timeoutMs === undefined ? "" : ` t/o ${o.timeoutMs}`}`;
      case "value":
        return o.kind;
      case "all":
        return `all[${o.branches.map((b) => [op(b.head), ...b.emits.map((e) => `emit ${e}`)].join(" > ")).join(" | ")}]`;
    }
  };
  const shape = program.resumeFrom === undefined ? "" : ` resumeFrom=${program.resumeFrom}`;
  return `${program.name}${program.onRecovered ? ` onRecovered=${program.onRecovered}` : ""}${shape}: ${program.ops.map(op).join("; ")}`;
}

/** The handler that runs `program` on behalf of the runtime `host` describes. */
export function programHandler(program: Program, host: ProgramHost) {
  return async (ctx: FiberContext): Promise<unknown[]> => {
    // The stash shape picks up after the op its last stash names, with what it had then.
    const saved = program.resumeFrom === "stash" ? (ctx.snapshot as Resumable | undefined) : undefined;
    const out: unknown[] = saved === undefined ? [] : [...saved.out];
    const valueCalls = new Map<string, number>(saved === undefined ? [] : Object.entries(saved.values));
    const exec = async (op: Op, into: unknown[]): Promise<void> => {
      switch (op.k) {
        case "step":
          into.push(await runStep(ctx, op, host));
          return;
        case "emit":
          ctx.emit("note", { label: op.label });
          return;
        case "stash":
          await ctx.stash(
            program.resumeFrom === "stash"
              ? ({ n: op.n, out: [...into], values: Object.fromEntries(valueCalls) } satisfies Resumable)
              : { n: op.n, at: into.length },
          );
          return;
        case "sleep":
          await ctx.sleep(op.name, op.ms);
          into.push("slept");
          return;
        case "wait":
          try {
            const payload = await ctx.waitForEvent<{ send: number }>(
              op.name,
              op.timeoutMs === undefined ? {} : { timeoutMs: op.timeoutMs },
            );
            into.push(`ev:${payload.send}`);
          } catch (error) {
            into.push(`err:${codeOf(error)}`);
          }
          return;
        case "value": {
          const n = (valueCalls.get(op.kind) ?? 0) + 1;
          valueCalls.set(op.kind, n);
          const value = await ctx[op.kind]();
          host.observed(ctx.id, `${op.kind}#${n}`, value);
          return;
        }
        case "all": {
          const results = await Promise.all(
            op.branches.map(async (branch) => {
              const local: unknown[] = [];
              await exec(branch.head, local);
              for (const label of branch.emits) ctx.emit("note", { label });
              return local[0];
            }),
          );
          into.push(results);
          return;
        }
      }
    };
    for (const [i, op] of program.ops.entries()) {
      if (saved !== undefined && i <= saved.n) continue; // a stash's `n` is its index
      await exec(op, out);
    }
    return out;
  };
}

/** What a program of the stash shape stashes at op `n`: its results and `value` calls so far. */
interface Resumable {
  n: number;
  out: unknown[];
  values: Record<string, number>;
}

async function runStep(ctx: FiberContext, op: StepOp, host: ProgramHost): Promise<unknown> {
  try {
    return await ctx.step(
      op.name,
      async (step) => {
        if (host.crashed) return hang();
        const ended = host.effect(ctx, step);
        try {
          for (let i = 0; i < op.emitsBefore; i++)
            step.emit("tok", { label: `${op.name}.${i}`, attempt: step.attempt });
          if (step.attempt <= op.slowAttempts) {
            await pause(op.slowMs, op.honorsSignal ? step.signal : undefined);
            if (host.crashed) return hang();
          }
          for (let i = 0; i < op.emitsAfter; i++)
            step.emit("tok", { label: `${op.name}.late${i}`, attempt: step.attempt });
          if (step.attempt < op.failUntil) {
            throw op.nonRetryable
              ? new NonRetryableError(`${op.name} refused`)
              : new Error(`${op.name} flaked`);
          }
          return `v:${op.name}`;
        } finally {
          ended();
        }
      },
      {
        retry: { maxAttempts: op.maxAttempts, backoff: "fixed", initialDelayMs: op.backoffMs },
        ...(op.timeoutMs === undefined ? {} : { timeoutMs: op.timeoutMs }),
      },
    );
  } catch (error) {
    return `err:${codeOf(error)}`;
  }
}

/**
 * What an uninterrupted run of a deterministic `program` returns, given the payloads (`send`
 * numbers) of the events of each name in inbox order; `undefined` if it cannot finish.
 */
export function oracle(program: Program, events: ReadonlyMap<string, number[]>): unknown[] | undefined {
  const taken = new Map<string, number>();
  let stuck = false;
  const wait = (name: string): string => {
    const i = taken.get(name) ?? 0;
    taken.set(name, i + 1);
    const send = events.get(name)?.[i];
    if (send === undefined) stuck = true;
    return `ev:${send}`;
  };
  const step = (op: StepOp): string =>
    op.failUntil <= op.maxAttempts
      ? `v:${op.name}`
      : op.nonRetryable
        ? "err:non_retryable"
        : "err:step_failed";
  const out: unknown[] = [];
  for (const op of program.ops) {
    if (op.k === "step") out.push(step(op));
    else if (op.k === "sleep") out.push("slept");
    else if (op.k === "wait") out.push(wait(op.name));
    else if (op.k === "all")
      out.push(op.branches.map((b) => (b.head.k === "step" ? step(b.head) : wait(b.head.name))));
  }
  return stuck ? undefined : out;
}

/** The `code` of a thrown error, or its name. */
export function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : error instanceof Error ? error.name : String(error);
}

function hang(): Promise<never> {
  return new Promise<never>(() => {});
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
