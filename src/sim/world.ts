/**
 * The world of one schedule: the shared store, the ledger, the fault plan, the lock manager and
 * the runtimes ("nodes") that come and go on the store: each has its own fault-injecting store
 * view, runner id and fiber definitions. The shared store is one `MemoryStore`, or (`"idb"`) one
 * fake-indexeddb database that every node and the ledger open with an `IdbStore` of their own,
 * as the Service Workers of one origin do. A node that crashes is abandoned (its
 * calls hang, its Web Locks are released) and, like a restarted Service Worker, a fresh node
 * with a new runner id calls `recover()`. Step side effects and journaled values report here,
 * where the effect-time invariants are checked; agent fibers' tool runs report to `agents`.
 */

import type { FiberContext, StepContext } from "../core/define";
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { defineFiber } from "../core/define";
import { localLocks } from "../core/locks";
import { createRuntime, type Runtime } from "../core/runtime";
import type { Store } from "../core/store";
import { IdbStore } from "../store/idb-store";
import { MemoryStore } from "../store/memory-store";
import { AgentLog, type AgentStats, type ApprovalAsked } from "./agent-log";
import { type AgentHost, type AgentPlan, agentDefinition, type ModelState } from "./agent-program";
import { type FaultPlan, FaultStore } from "./fault-store";
import type { Findings } from "./findings";
import { Ledger } from "./ledger";
import { LiveAttempts } from "./live-attempts";
import type { Prng } from "./prng";
import { codeOf, type Program, type ProgramHost, programHandler } from "./program";
import { SimLockManager } from "./sim-locks";
import type { Trace } from "./trace";
import { EPOCH } from "./virtual-time";

/** Which store the runtimes of a schedule share. */
export type StoreKind = "memory" | "idb";

/**
 * A bug planted on purpose, to prove the checker reports it. The agent ones: `colliding-tool-key`
 * hands tools the key an agent built from the model's call id alone (`<fiberId>:<callId>`, issue
 * 20's first defect); `ungated-tool` defines the tool that needs approval without it.
 */
export type PlantedBug = "lost-write" | "duplicate-effect" | "colliding-tool-key" | "ungated-tool";

/** The knobs of one schedule, drawn from the seed. */
export interface WorldSettings {
  leaseMs: number;
  unloadAfterMs: number;
  pollIntervalMs: number;
  retentionMs: number;
  maxRecoveries: number;
  locks: "web" | "local";
}

/** One runtime on the shared store. */
export interface SimNode {
  readonly name: string;
  readonly runtime: Runtime;
  readonly store: FaultStore;
  readonly version: string;
  readonly compatible: readonly string[];
  crashed: boolean;
}

/** Everything one schedule shares. */
export class World {
  readonly rng: Prng;
  readonly trace: Trace;
  readonly findings: Findings;
  readonly storeKind: StoreKind;
  /** A store on the shared state for one more runtime (the same `MemoryStore`, or a new `IdbStore`). */
  readonly #open: () => Store;
  readonly ledger: Ledger;
  readonly plan: FaultPlan;
  readonly settings: WorldSettings;
  readonly programs: Program[];
  readonly nodes: SimNode[] = [];
  readonly planted: PlantedBug | undefined;
  readonly #locks: SimLockManager;
  readonly #effects = new Set<string>();
  readonly #attempts = new LiveAttempts(() => elapsed());
  readonly #crashListeners: Array<(node: SimNode) => void> = [];
  /** The agent fibers' effect log and checks. */
  readonly agents: AgentLog;
  /** Per agent fiber id, its model's requests and cuts so far (shared by every runtime). */
  readonly #models = new Map<string, ModelState>();
  readonly #approvalListeners: Array<(asked: ApprovalAsked) => void> = [];
  version = "1";
  compatible: string[] = [];
  #plantedDone = false;
  readonly #readFaults: Prng | undefined;

  /**
   * `readFaults`: the random stream read faults draw from (none fail without it). `crashLoops`:
   * the stream that decides whether this schedule's fibers may recover only once in a row without
   * progress (`maxRecoveries: 1`), so its crashes end some in `recovery_exhausted`; without it
   * the limit is 10 or 30, more than a schedule's crash budget. Both are streams of their own, so
   * a seed draws what it drew before they existed.
   */
  constructor(
    rng: Prng,
    trace: Trace,
    findings: Findings,
    programs: Program[],
    planted?: PlantedBug,
    storeKind: StoreKind = "memory",
    readFaults?: Prng,
    crashLoops?: Prng,
  ) {
    this.rng = rng;
    this.#readFaults = readFaults;
    this.trace = trace;
    this.findings = findings;
    this.programs = programs;
    this.planted = planted;
    this.storeKind = storeKind;
    if (storeKind === "idb") {
      const indexedDB = new IDBFactory();
      // Folds a journal every 3 commits (64 by default), so schedules cross folds all the time.
      this.#open = () => new IdbStore({ name: "fiberline-sim", indexedDB, journalFold: 3 });
    } else {
      const shared = new MemoryStore();
      this.#open = () => shared;
    }
    this.ledger = new Ledger(this.#open(), findings, trace, () => elapsed(), storeKind === "memory");
    const heavy = rng.chance(0.3);
    this.plan = {
      active: true,
      reject: rng.pick([0, 0.01, 0.04, heavy ? 0.1 : 0.02]),
      readReject: readFaults?.pick([0, 0, 0.01, 0.03]) ?? 0,
      crashBefore: rng.pick([0, 0.005, 0.02]),
      crashAfter: rng.pick([0, 0.005, 0.02]),
      slow: rng.pick([0, 0.02, 0.08]),
      crashesLeft: rng.int(0, 3),
    };
    this.settings = {
      leaseMs: rng.pick([600, 1500, 3000]),
      unloadAfterMs: rng.pick([0, 200, 1000]),
      pollIntervalMs: rng.pick([250, 1000]),
      retentionMs: rng.pick([300, 2000, 86_400_000]),
      maxRecoveries: rng.pick([10, 30]),
      locks: rng.chance(0.5) ? "web" : "local",
    };
    if (crashLoops?.chance(0.25)) this.settings.maxRecoveries = 1;
    this.#locks = new SimLockManager(trace);
    const plans = new Map<string, AgentPlan>();
    programs.forEach((program, i) => {
      if (program.agent) plans.set(`f${i}`, program.agent);
    });
    this.agents = new AgentLog(this.ledger, findings, trace, plans);
    this.ledger.onChunk = (chunk) => {
      const asked = this.agents.chunk(chunk);
      if (asked) for (const listener of this.#approvalListeners) listener(asked);
    };
  }

  /** What the agent fibers did so far. */
  agentStats(): AgentStats {
    return this.agents.stats(this.#models);
  }

  /** Calls `listener` when a `tool.approval` chunk asking for a new approval becomes durable. */
  onApproval(listener: (asked: ApprovalAsked) => void): void {
    this.#approvalListeners.push(listener);
  }

  /** Nodes that have not crashed. */
  get live(): SimNode[] {
    return this.nodes.filter((n) => !n.crashed);
  }

  /** Calls `listener` whenever a node crashes (readers and pending actions move elsewhere). */
  onCrash(listener: (node: SimNode) => void): void {
    this.#crashListeners.push(listener);
  }

  /** Starts a new runtime on the shared store and runs its `recover()`, as a host start does. */
  spawn(reason: string): SimNode {
    const name = `r${this.nodes.length + 1}`;
    let node!: SimNode;
    const store = new FaultStore(
      this.#open(),
      {
        rng: this.rng,
        ...(this.#readFaults ? { readRng: this.#readFaults } : {}),
        trace: this.trace,
        ledger: this.ledger,
        plan: this.plan,
        onCrash: () => this.#crashed(node),
      },
      name,
      this.planted === "lost-write" ? () => this.#plantOnce() : undefined,
    );
    const version = this.version;
    const compatible = [...this.compatible];
    const host: ProgramHost = {
      runner: name,
      get crashed() {
        return node.crashed;
      },
      effect: (ctx, step) => this.#effect(node, ctx, step),
      observed: (fiberId, key, value) => this.#observed(node, fiberId, key, value),
    };
    const fibers = this.programs.map((program, i) => {
      if (program.agent) {
        const fiberId = `f${i}`;
        const model = this.#models.get(fiberId) ?? { requests: 0, cuts: 0 };
        this.#models.set(fiberId, model);
        const agentHost: AgentHost = {
          get crashed() {
            return node.crashed;
          },
          request: (id, reply, text) => this.agents.modelRequest(node, id, reply, text),
          toolRun: (id, call, key) => {
            let reported = key;
            if (this.planted === "colliding-tool-key") reported = key.replace(/:m\d+#\d+:/, ":");
            if (reported !== key || (this.planted === "ungated-tool" && call.tool === "delete_file"))
              this.#plantOnce();
            return this.agents.toolRun(node, id, call, reported);
          },
        };
        const gate = this.planted !== "ungated-tool";
        return agentDefinition(
          program.name,
          fiberId,
          program.agent,
          agentHost,
          model,
          version,
          compatible,
          gate,
        );
      }
      return defineFiber(program.name, {
        version,
        compatibleVersions: compatible,
        run: programHandler(program, host),
        ...(program.resumeFrom === undefined ? {} : { resumeFrom: program.resumeFrom }),
        ...(program.onRecovered === undefined ? {} : { onRecovered: () => program.onRecovered ?? "resume" }),
      });
    });
    const { leaseMs, unloadAfterMs, pollIntervalMs, retentionMs, maxRecoveries } = this.settings;
    const runtime = createRuntime({
      store,
      fibers,
      runnerId: name,
      leaseMs,
      unloadAfterMs,
      pollIntervalMs,
      retentionMs,
      maxRecoveries,
      locks: this.settings.locks === "web" ? this.#locks.view(name) : localLocks(),
      clock: () => Date.now(),
      random: () => this.rng.next(),
      uuid: () => this.rng.uuid(),
    });
    node = { name, runtime, store, version, compatible, crashed: false };
    this.nodes.push(node);
    this.trace.add(
      "spawn",
      `${name} (version ${version}${compatible.length ? ` compat ${compatible}` : ""}): ${reason}`,
    );
    this.background(`${name} recover()`, runtime.recover());
    return node;
  }

  /** Crashes `node` now (an explicit kill, not a store fault). */
  crash(node: SimNode, reason: string): void {
    node.store.crash(reason);
  }

  /** Takes a random Web Lock away from its live holder (web-locks schedules only). */
  stealLock(): void {
    if (this.settings.locks !== "web") return;
    const held = this.live.flatMap((n) => this.#locks.heldBy(n.name));
    if (held.length > 0) this.#locks.steal(this.rng.pick(held));
  }

  /** Runs `work` without awaiting it; a rejection is traced, never unhandled. */
  background(label: string, work: Promise<unknown>): void {
    work.then(
      () => this.trace.add("done", label),
      (error) =>
        this.trace.add(
          "error",
          `${label}: ${codeOf(error)} ${String((error as Error)?.message ?? error).slice(0, 80)}`,
        ),
    );
  }

  #crashed(node: SimNode): void {
    node.crashed = true;
    if (this.settings.locks === "web") this.#locks.releaseAll(node.name);
    // Stops the dead runtime's timers; it cannot write, every store call of it hangs.
    void node.runtime.close();
    for (const listener of this.#crashListeners) listener(node);
  }

  /** Whether the planted bug has been triggered. */
  get plantTriggered(): boolean {
    return this.#plantedDone;
  }

  #plantOnce(): boolean {
    if (this.#plantedDone) return false;
    this.#plantedDone = true;
    return true;
  }

  /** A step attempt started running user code on `node`. */
  #effect(node: SimNode, ctx: FiberContext, step: StepContext): () => void {
    // `fiberId:key`, or `fiberId~epoch:key` once the fiber restarted from scratch.
    const key = step.idempotencyKey.slice(step.idempotencyKey.indexOf(":", ctx.id.length) + 1);
    const image = this.ledger.get(ctx.id);
    const record = image?.record;
    const entry = image?.journal.find((e) => e.kind === "step" && e.key === key);
    this.trace.add(
      "effect",
      `${node.name} ${ctx.id}:${key} attempt ${step.attempt}${step.interrupted ? " interrupted" : ""}`,
    );
    const fail = (invariant: string, detail: string) => this.findings.add(invariant, detail, ctx.id);
    // Another runtime's attempt holds the fiber's Web Lock unless the lock was taken from it.
    const heldAcross = (other: { name: string }) =>
      this.settings.locks === "web" && !this.#locks.stolenFrom.get(ctx.id)?.has(other.name);
    const ended = this.#attempts.begin(node, ctx, step, this.settings.leaseMs, fail, heldAcross);
    if (!record) {
      fail("effect-without-fiber", `${key} attempt ${step.attempt} ran on ${node.name} with no fiber record`);
      return ended;
    }
    if (record.version !== node.version && !node.compatible.includes(record.version)) {
      fail(
        "incompatible-version-ran",
        `version ${node.version} code ran ${key} of a version ${record.version} fiber on ${node.name}`,
      );
    }
    if (entry?.status === "completed") {
      fail(
        "step-reexecuted",
        `${key} ran again (attempt ${step.attempt} on ${node.name}) after it durably completed`,
      );
    } else if (entry?.status !== "started" || entry.attempt !== step.attempt) {
      fail(
        "step-write-ahead",
        `${key} attempt ${step.attempt} ran on ${node.name} while the journal held ${entry ? `${entry.status} attempt ${entry.attempt}` : "nothing"}`,
      );
    }
    const id = `${ctx.id}|${record.epoch}|${key}|${step.attempt}`;
    const times = this.planted === "duplicate-effect" && this.#plantOnce() ? 2 : 1;
    for (let i = 0; i < times; i++) {
      if (this.#effects.has(id))
        fail("effect-twice", `${key} attempt ${step.attempt} (epoch ${record.epoch}) ran twice`);
      this.#effects.add(id);
    }
    return ended;
  }

  /** A journaled value reached the handler on `node`. */
  #observed(node: SimNode, fiberId: string, key: string, value: unknown): void {
    const image = this.ledger.get(fiberId);
    if (image?.record?.owner !== node.name) return; // a fenced run's value never became durable
    const entry = image.journal.find((e) => e.key === key && e.status === "completed");
    if (entry && JSON.stringify(entry.result) !== JSON.stringify(value)) {
      this.findings.add(
        "journaled-value-changed",
        `${key} returned ${JSON.stringify(value)} on ${node.name} but the journal holds ${JSON.stringify(entry.result)}`,
        fiberId,
      );
    }
  }
}

/** Virtual ms since the schedule started. */
export function elapsed(): number {
  return Date.now() - EPOCH;
}
