/**
 * The effect log of agent fibers and their invariants. Every run of a tool's `execute` reports
 * here with the `idempotencyKey` it received and is checked against the ledger at that moment:
 * the key names that one call (no other call ran with it, the call never ran with another), the
 * tool's step is durably started and not durably completed with this call's result, and a tool
 * that requires approval has the approval event its `tool.approval` chunk announced for that very
 * call consumed by its wait, saying `approved: true`. Like a well-behaved API, the log does a
 * call's effect once per key. Once the schedule is quiet, a completed agent fiber's messages must
 * equal an uninterrupted run's (`agentOracle`), each tool call of its conversation must have done
 * its effect exactly once and no other call any, and its stream must render each reply's text and
 * hold one `tool.approval` and one `tool.result` chunk per call.
 */

import type { AgentOutput } from "../agent/agent";
import { messageIdOf } from "../agent/model-step";
import type { ChatMessage } from "../agent/types";
import { isTerminal, type StreamChunk } from "../core/records";
import { type AgentCall, type AgentPlan, agentOracle, callOf, canonical } from "./agent-program";
import type { Findings } from "./findings";
import type { FiberImage, Ledger } from "./ledger";
import type { Trace } from "./trace";

/** One run of a tool's `execute`. */
export interface ToolRun {
  fiberId: string;
  /** The fiber's `createdGeneration`: which fiber of that id (one collected and started again is another). */
  life: number;
  key: string;
  path: string;
  node: string;
  /** False when the key's effect was already done (a re-run), or the run failed before it (flaky). */
  effect: boolean;
}

/** What the agent fibers of one schedule did, to show the faults the invariants are about happened. */
export interface AgentStats {
  /** Agent fibers, and how many of them completed. */
  fibers: number;
  completed: number;
  /** Model requests made, and how many of them were cut or stalled. */
  requests: number;
  cuts: number;
  /** Tool runs; runs of a call that had run before (after a crash, a fence or a flaky first run). */
  toolRuns: number;
  reruns: number;
  /** Runs of the tool that requires approval. */
  gatedRuns: number;
  /** Approval events stored, and calls whose approval was stored twice or more. */
  approvals: number;
  duplicatedApprovals: number;
}

/** Who ran a tool: the node's name and the definition version it runs. */
export interface ToolRunner {
  readonly name: string;
  readonly version: string;
  readonly compatible: readonly string[];
}

/** An approval a `tool.approval` chunk asked for. */
export interface ApprovalAsked {
  fiberId: string;
  event: string;
  call: AgentCall;
}

/** The effect log of one schedule's agent fibers. */
export class AgentLog {
  readonly runs: ToolRun[] = [];
  /** Per call (path), the approval event its `tool.approval` chunk announced. */
  readonly announced = new Map<string, string>();
  readonly #ledger: Ledger;
  readonly #findings: Findings;
  readonly #trace: Trace;
  readonly #plans: ReadonlyMap<string, AgentPlan>;
  readonly #keyOf = new Map<string, string>();
  readonly #pathOf = new Map<string, string>();
  readonly #callOfEvent = new Map<string, string>();
  readonly #done = new Set<string>();

  /** `plans`: the plan of each agent fiber, by fiber id. */
  constructor(ledger: Ledger, findings: Findings, trace: Trace, plans: ReadonlyMap<string, AgentPlan>) {
    this.#ledger = ledger;
    this.#findings = findings;
    this.#trace = trace;
    this.#plans = plans;
  }

  /** What the agent fibers did; `models`: each agent fiber's model state. */
  stats(models: ReadonlyMap<string, { requests: number; cuts: number }>): AgentStats {
    const stats: AgentStats = {
      fibers: this.#plans.size,
      completed: 0,
      requests: 0,
      cuts: 0,
      toolRuns: this.runs.length,
      reruns: 0,
      gatedRuns: 0,
      approvals: 0,
      duplicatedApprovals: 0,
    };
    const seen = new Set<string>();
    for (const run of this.runs) {
      if (seen.has(run.path)) stats.reruns++;
      seen.add(run.path);
      if (this.announced.has(run.path)) stats.gatedRuns++;
    }
    for (const [id, model] of models) {
      stats.requests += model.requests;
      stats.cuts += model.cuts;
      const image = this.#ledger.get(id);
      if (image?.record?.status === "completed") stats.completed++;
      const counts = new Map<string, number>();
      for (const e of image?.inbox ?? [])
        if (e.name.startsWith("approval:")) counts.set(e.name, (counts.get(e.name) ?? 0) + 1);
      for (const n of counts.values()) {
        stats.approvals += n;
        if (n > 1) stats.duplicatedApprovals++;
      }
    }
    return stats;
  }

  /** A chunk became durable; returns the approval it asks for when it is a `tool.approval` seen first. */
  chunk(chunk: StreamChunk): ApprovalAsked | undefined {
    if (chunk.type !== "tool.approval") return undefined;
    const fiberId = chunk.fiberId;
    const data = chunk.data as { event?: unknown; arguments?: { path?: unknown } };
    const fail = (invariant: string, detail: string) => this.#findings.add(invariant, detail, fiberId);
    const path = String(data.arguments?.path);
    const event = String(data.event);
    const plan = this.#plans.get(fiberId);
    const call = plan === undefined ? undefined : callOf(plan, path);
    if (call === undefined || call.tool !== "delete_file") {
      fail(
        "approval-for-unknown-call",
        `tool.approval #${chunk.seq} for ${path}, no gated call of the script`,
      );
      return undefined;
    }
    const earlier = this.announced.get(path);
    if (earlier !== undefined) {
      if (earlier !== event)
        fail("approval-name-unstable", `${path} announced ${JSON.stringify(earlier)}, then ${event}`);
      return undefined;
    }
    const other = this.#callOfEvent.get(event);
    if (other !== undefined)
      fail("approval-name-collision", `${path} and ${other} both announced approval event ${event}`);
    this.#callOfEvent.set(event, path);
    this.announced.set(path, event);
    return { fiberId, event, call };
  }

  /**
   * The model was asked for reply `reply` (0-based) of `fiberId`: its step must not have ended
   * durably. The call runs beside its step's `started` write (`awaitStart: false`), so that entry
   * may not be durable yet; the ledger checks it lands no later than the call's first chunk
   * (`step-emit-without-start`). (A runner that lost the fiber without knowing it yet may still
   * retry a call whose step the new owner completed: a wasted call, not a broken promise, so only
   * the owner counts.)
   */
  modelRequest(node: ToolRunner, fiberId: string, reply: number, text: string): void {
    this.#trace.add("model", `${node.name} ${fiberId} ${text}`);
    this.#liveBeforePickUp(node, fiberId, `model call for reply ${reply}`);
    const key = `model#${reply + 1}`;
    const image = this.#ledger.get(fiberId);
    const entry = image?.journal.find((e) => e.kind === "step" && e.key === key);
    if (entry !== undefined && entry.status !== "started" && image?.record?.owner === node.name)
      this.#findings.add(
        "step-reexecuted",
        `model call for reply ${reply} made on ${node.name} after ${key} durably ${entry.status}`,
        fiberId,
      );
  }

  /**
   * `what` ran live on `node` while its pick-up of the fiber was not yet durable: a pick-up whose
   * write fails leaves no trace, so each retry would run it again, unbounded by `maxRecoveries`.
   */
  #liveBeforePickUp(node: ToolRunner, fiberId: string, what: string): void {
    if (this.#ledger.pickUpUnderWay(node.name, fiberId))
      this.#findings.add(
        "live-before-pickup",
        `${what} ran on ${node.name} before its pick-up was durable`,
        fiberId,
      );
  }

  /**
   * A tool's `execute` began on `node` for `call` with `key`. Returns true when this run is to
   * fail before its effect: a flaky call's run in its step's first attempt (by the attempt the
   * journal holds, as the other programs' steps fail, so attempts a crash used up never turn a
   * flake into the step's failure).
   */
  toolRun(node: ToolRunner, fiberId: string, call: AgentCall, key: string): boolean {
    const path = call.path;
    this.#trace.add("tool", `${node.name} ${call.tool}(${path}) key ${key}`);
    const fail = (invariant: string, detail: string) => this.#findings.add(invariant, detail, fiberId);
    this.#liveBeforePickUp(node, fiberId, `${call.tool}(${path})`);
    const image = this.#ledger.get(fiberId);
    const record = image?.record;
    const life = record?.createdGeneration ?? 0;
    const before = this.runs.filter((r) => r.path === path && r.life === life).length;
    const steps = (image?.journal ?? []).filter(
      (e) => e.kind === "step" && e.key.startsWith(`tool:${call.id}#`),
    );
    const attempt = Math.max(0, ...steps.filter((e) => e.status === "started").map((e) => e.attempt));
    const flakes = call.flaky && attempt <= 1;
    const effect = !flakes && !this.#done.has(key);
    if (effect) this.#done.add(key);
    this.runs.push({ fiberId, life, key, path, node: node.name, effect });
    if (!image || !record) {
      fail("effect-without-fiber", `tool ${path} ran on ${node.name} with no fiber record`);
      return flakes;
    }
    if (record.version !== node.version && !node.compatible.includes(record.version)) {
      fail(
        "incompatible-version-ran",
        `version ${node.version} code ran tool ${path} of a version ${record.version} fiber on ${node.name}`,
      );
    }
    // The key is the call's own: unique over every call, the same on every run of one call.
    const keyed = this.#pathOf.get(key);
    if (keyed !== undefined && keyed !== path)
      fail("tool-key-collision", `${path} ran with key ${key}, which ${keyed} already ran with`);
    const earlier = this.#keyOf.get(path);
    if (earlier !== undefined && earlier !== key)
      fail("tool-key-unstable", `${path} ran with key ${key}, earlier with ${earlier}`);
    this.#pathOf.set(key, path);
    this.#keyOf.set(path, key);
    // At most once per call: each run is an attempt of its step durably started first (attempt
    // numbers count every start, so a call's runs never outnumber them), and none follows the
    // step's durable completion.
    const runs = before + 1;
    if (attempt < runs)
      fail(
        "step-write-ahead",
        `tool ${path} ran (run ${runs}) on ${node.name} while the journal held ${steps.map((e) => `${e.key} ${e.status} attempt ${e.attempt}`).join(", ") || `no tool:${call.id} step`}`,
      );
    const completed = steps.find(
      (e) => e.status === "completed" && (e.result as { path?: unknown } | undefined)?.path === path,
    );
    if (completed)
      fail("tool-reexecuted", `${path} ran again on ${node.name} after ${completed.key} durably completed`);
    // Consent: the approval announced for this very call, consumed by its wait, said yes.
    if (call.tool === "delete_file") {
      const event = this.announced.get(path);
      const consumed = image.inbox.find((e) => e.name === event && e.consumedBy !== undefined);
      const wait = consumed && image.journal.find((e) => e.pos === consumed.consumedBy);
      const approved = (consumed?.payload as { approved?: unknown } | null)?.approved === true;
      if (event === undefined) fail("tool-without-approval", `${path} ran and no tool.approval asked for it`);
      else if (!consumed) fail("tool-without-approval", `${path} ran with no consumed ${event} in the inbox`);
      else if (!approved)
        fail("tool-without-approval", `${path} ran though ${event} #${consumed.seq} denied it`);
      else if (
        wait?.kind !== "event" ||
        wait.status !== "completed" ||
        !wait.key.startsWith(`event:${event}#`)
      )
        fail(
          "tool-without-approval",
          `${path} ran; ${event} #${consumed.seq} is marked consumed by pos ${consumed.consumedBy}, where the journal holds ${wait ? `${wait.key} ${wait.status}` : "nothing"}`,
        );
    }
    return flakes;
  }

  /**
   * The final checks of agent fiber `id` (`plan`): its end against an uninterrupted run's, the
   * effects of its tool calls, and what its stream renders.
   */
  checkFinal(id: string, image: FiberImage, plan: AgentPlan, compareResult: boolean): void {
    const record = image.record;
    if (!record || !isTerminal(record.status)) return;
    const fail = (invariant: string, detail: string) => this.#findings.add(invariant, detail, id);
    const code = record.error?.code;
    const excused =
      record.status === "failed" &&
      ["version_mismatch", "recovery_exhausted", "recovery_aborted"].includes(code ?? "");
    const expected = agentOracle(plan, id, image.inbox, this.announced);
    if (record.status !== "completed") {
      if (compareResult && !excused && expected !== undefined)
        fail(
          "agent-result-differs",
          `ended ${record.status} (${code}: ${record.error?.message?.slice(0, 100)}); an uninterrupted run completes`,
        );
      return;
    }
    const messages = (record.result as AgentOutput | undefined)?.messages ?? [];
    if (compareResult && canonical(messages) !== canonical(expected))
      fail(
        "agent-result-differs",
        `messages ${short(messages)}; an uninterrupted run returns ${expected ? short(expected) : "nothing (it cannot finish)"}`,
      );
    this.#checkEffects(id, messages, fail);
    this.#checkStream(id, image.stream, plan, messages, fail);
  }

  /** Each tool call the conversation answered with a result did its effect once; no other call did. */
  #checkEffects(id: string, messages: readonly ChatMessage[], fail: (inv: string, d: string) => void): void {
    const answered = new Map<string, number>();
    for (const m of messages) {
      if (m.role !== "tool") continue;
      const path = (parse(m.content) as { path?: unknown } | undefined)?.path;
      if (typeof path === "string") answered.set(path, (answered.get(path) ?? 0) + 1);
    }
    const effects = new Map<string, number>();
    for (const run of this.runs)
      if (run.fiberId === id && run.effect) effects.set(run.path, (effects.get(run.path) ?? 0) + 1);
    for (const [path, n] of answered) {
      const done = effects.get(path) ?? 0;
      if (n !== 1 || done !== 1)
        fail(
          "tool-call-not-run-once",
          `${path} answered ${n} times in the conversation, its effect done ${done} times`,
        );
    }
    for (const [path, done] of effects)
      if (!answered.has(path))
        fail(
          "tool-ran-outside-conversation",
          `${path} did its effect ${done} times, the conversation has no result for it`,
        );
  }

  /** The stream renders each reply's text, and holds one approval and one result chunk per call. */
  #checkStream(
    id: string,
    stream: readonly StreamChunk[],
    plan: AgentPlan,
    messages: readonly ChatMessage[],
    fail: (inv: string, d: string) => void,
  ): void {
    const text = new Map<string, string>();
    const results = new Map<string, number>();
    const approvals = new Map<string, number>();
    for (const chunk of stream) {
      const data = chunk.data as { messageId?: string; delta?: string; index?: number; arguments?: unknown };
      const message = String(data.messageId);
      if (chunk.type === "message.start" || chunk.type === "message.reset") text.set(message, "");
      else if (chunk.type === "text.delta") text.set(message, (text.get(message) ?? "") + data.delta);
      else if (chunk.type === "tool.result" || chunk.type === "tool.approval") {
        const counts = chunk.type === "tool.result" ? results : approvals;
        const call = `${message}#${data.index}`;
        counts.set(call, (counts.get(call) ?? 0) + 1);
      }
    }
    const rendered = [...text.values()];
    const replies = messages.filter((m) => m.role === "assistant").length;
    const script = plan.replies.slice(0, replies).map((r) => r.text);
    if (canonical(rendered) !== canonical(script))
      fail("agent-text-differs", `the stream renders ${short(rendered)}, the replies say ${short(script)}`);
    const calls = plan.replies
      .slice(0, replies)
      .flatMap((r, t) =>
        r.calls.map((c, i) => ({ at: `${messageIdOf(id, t + 1)}#${i}`, gated: c.tool === "delete_file" })),
      );
    for (const { at, gated } of calls) {
      for (const [what, counts, want] of [
        ["tool.result", results, 1],
        ["tool.approval", approvals, gated ? 1 : 0],
      ] as const) {
        const n = counts.get(at) ?? 0;
        if (n !== want)
          fail(
            n < want ? "agent-emit-lost" : "agent-emit-duplicated",
            `${what} of ${at} appears ${n} times in the stream`,
          );
      }
    }
  }
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function short(value: unknown): string {
  const text = JSON.stringify(value) ?? "";
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}
