/**
 * Agent programs: a fiber that is a `defineAgent` loop, driven by a scripted model that runs in
 * process (no `fetch`, every pause on the virtual clock). The script is drawn from the seed:
 * replies with text (emoji and CJK, split into deltas that may halve a surrogate pair), tool calls
 * whose ids the model reuses within and across replies (`call_0`), a tool that requires approval
 * and one that does not, a tool that fails its first run or is slow, cuts that make a request
 * throw a retryable `ModelError` after any number of its events, and a stall that outlasts the
 * agent's no-progress timeout. The approvals the simulator sends
 * (zero, one or two per gated call, for the event the `tool.approval` chunk announces) are part of
 * the plan, as is what an uninterrupted run returns given the approvals the inbox holds.
 */

import { type AgentInput, type AgentOutput, defineAgent } from "../agent/agent";
import { ModelError } from "../agent/errors";
import type {
  ChatMessage,
  ModelEvent,
  ModelProvider,
  ModelRequest,
  ToolCall,
  ToolDefinition,
} from "../agent/types";
import type { FiberDefinition } from "../core/define";
import { NonRetryableError } from "../core/errors";
import type { InboxEvent } from "../core/records";
import type { Prng } from "./prng";

/** The two tools: `delete_file` requires approval, `touch` does not. */
export type AgentToolName = "delete_file" | "touch";

/** One tool call of a scripted reply. */
export interface AgentCall {
  /** The model's id for the call: reused across replies and sometimes within one. */
  id: string;
  tool: AgentToolName;
  /** The call's argument, unique over every call of the schedule: `p<program>.<turn>.<index>`. */
  path: string;
  /** `delete_file` only: the `approved` field of each approval sent (0, 1 or 2 sends). */
  approvals: boolean[];
  /** The tool throws in its step's first attempt (the step retries it). */
  flaky: boolean;
  /** Virtual ms the tool takes after its effect (0: none). */
  slowMs: number;
}

/** One scripted reply; the last has no calls. */
export interface AgentReply {
  text: string;
  calls: AgentCall[];
}

/** What an agent program does and how its model misbehaves. */
export interface AgentPlan {
  replies: AgentReply[];
  /** Per model request (in the order the fiber makes them): where to cut it, as a fraction of its events. */
  cuts: (number | null)[];
  /** Per model request: where it stalls (a fraction of its events) for longer than `noProgressMs`. */
  stalls: (number | null)[];
  /** Cuts and stalls allowed over the fiber's life (fewer than the model step's attempts, so none exhausts it). */
  maxCuts: number;
  /** The agent's `noProgressTimeoutMs`. */
  noProgressMs: number;
  /** UTF-16 units per text delta. */
  deltaChars: number;
  /** Virtual ms between two events of a reply (0: a microtask). */
  deltaMs: number;
  /** Whether the provider supports `prefix` continuation. */
  continuation: boolean;
  recovery: "continue" | "retry";
  /** Backoff of the model step's retries after a cut. */
  retryMs: number;
}

/** What an agent program reports to the simulator. */
export interface AgentHost {
  /** The runtime executing it has crashed: its code must do nothing more. */
  readonly crashed: boolean;
  /** A model request for reply number `reply` (0-based) was made; `text` describes it. */
  request(fiberId: string, reply: number, text: string): void;
  /**
   * A tool's `execute` began for `call` with `idempotencyKey`; the simulator checks and logs it.
   * Returns true when this run is to throw before its effect (a flaky call's first attempt).
   */
  toolRun(fiberId: string, call: AgentCall, idempotencyKey: string): boolean;
}

const TEXTS = ["", "Sure.", "Let me check 🙂 that.", "日本語 and 🎉🎉 mixed", "x".repeat(23), "ok"];

/** Generates the agent program of fiber `index` from `rng`. */
export function generateAgent(rng: Prng, index: number): AgentPlan {
  const turns = rng.int(0, 3);
  const replies: AgentReply[] = [];
  for (let t = 1; t <= turns; t++) {
    const calls = Array.from({ length: rng.int(1, 2) }, (_, i): AgentCall => {
      const tool: AgentToolName = rng.chance(0.5) ? "delete_file" : "touch";
      const approvals: boolean[] = [];
      if (tool === "delete_file") {
        const times = rng.pick([0, 1, 1, 1, 2, 2]);
        const approved = rng.chance(0.75);
        for (let k = 0; k < times; k++) approvals.push(k > 0 && rng.chance(0.3) ? !approved : approved);
      }
      return {
        id: rng.pick(["call_0", "call_0", "call_1"]),
        tool,
        path: `p${index}.${t}.${i}`,
        approvals,
        flaky: rng.chance(0.2),
        slowMs: rng.chance(0.3) ? rng.int(20, 400) : 0,
      };
    });
    replies.push({ text: rng.pick(TEXTS), calls });
  }
  replies.push({ text: `${rng.pick(TEXTS)} Done.`, calls: [] });
  return {
    replies,
    cuts: Array.from({ length: 8 }, () => (rng.chance(0.35) ? rng.next() * 1.1 : null)),
    stalls: Array.from({ length: 8 }, () => (rng.chance(0.1) ? rng.next() : null)),
    maxCuts: rng.int(1, 3),
    noProgressMs: rng.pick([200, 1000]),
    deltaChars: rng.pick([1, 3, 5, 16]),
    deltaMs: rng.pick([0, 0, 5, 30]),
    continuation: rng.chance(0.7),
    recovery: rng.chance(0.8) ? "continue" : "retry",
    retryMs: rng.pick([5, 50, 300]),
  };
}

/** A one-line text of `plan`, for traces. */
export function describeAgent(plan: AgentPlan): string {
  const call = (c: AgentCall): string =>
    `${c.tool}(${c.path}) id ${c.id}${c.tool === "delete_file" ? ` approvals [${c.approvals.map((a) => (a ? "yes" : "no")).join(",")}]` : ""}${c.flaky ? " flaky" : ""}${c.slowMs ? ` slow ${c.slowMs}` : ""}`;
  const replies = plan.replies.map(
    (r) => `${JSON.stringify(r.text)}${r.calls.length ? ` + ${r.calls.map(call).join(" + ")}` : ""}`,
  );
  const faults = plan.cuts
    .map((c, i) => {
      const stall = plan.stalls[i];
      return `${c === null ? "-" : c.toFixed(2)}${stall === null || stall === undefined ? "" : `/stall ${stall.toFixed(2)}`}`;
    })
    .join(",");
  return `agent ${plan.recovery}${plan.continuation ? "" : " (no continuation)"} deltas ${plan.deltaChars}/${plan.deltaMs}ms, no progress ${plan.noProgressMs}ms, faults<=${plan.maxCuts} [${faults}]: ${replies.join(" > ")}`;
}

/** The input an agent fiber is started with. */
export function agentInput(fiberId: string): AgentInput {
  return { messages: [{ role: "user", content: `go ${fiberId}` }] };
}

/** The call of `plan` whose argument is `path`. */
export function callOf(plan: AgentPlan, path: string): AgentCall | undefined {
  for (const reply of plan.replies) for (const call of reply.calls) if (call.path === path) return call;
  return undefined;
}

/**
 * The agent definition of program `name` for one runtime: its model and tools report to `host`.
 * `gate: false` plants a bug: `delete_file` runs without asking for approval.
 */
export function agentDefinition(
  name: string,
  fiberId: string,
  plan: AgentPlan,
  host: AgentHost,
  model: ModelState,
  version: string,
  compatible: readonly string[],
  gate = true,
): FiberDefinition<AgentInput, AgentOutput> {
  const tool = (tool: AgentToolName): ToolDefinition<{ path: string }, { tool: string; path: string }> => ({
    name: tool,
    description: tool === "delete_file" ? "Deletes a file." : "Touches a file.",
    parameters: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
    requiresApproval: tool === "delete_file" && gate,
    execute: async ({ path }, { idempotencyKey, signal }) => {
      if (host.crashed) return hang();
      const call = callOf(plan, path);
      if (!call) throw new NonRetryableError(`script: no call has path ${path}`);
      if (host.toolRun(fiberId, call, idempotencyKey)) throw new Error(`${tool} flaked`);
      if (call.slowMs > 0) {
        await pause(call.slowMs, signal);
        if (host.crashed) return hang();
      }
      return { tool, path };
    },
  });
  const definition = defineAgent({
    name,
    version,
    model: new SimModel(fiberId, plan, host, model),
    tools: [tool("delete_file"), tool("touch")] as ToolDefinition[],
    modelRetry: { maxAttempts: 5, backoff: "fixed", initialDelayMs: plan.retryMs },
    toolRetry: { maxAttempts: 3, backoff: "fixed", initialDelayMs: 20 },
    recovery: plan.recovery,
    noProgressTimeoutMs: plan.noProgressMs,
    firstEventTimeoutMs: plan.noProgressMs,
  });
  return { ...definition, compatibleVersions: compatible };
}

/** The model's state over the fiber's life, shared by every runtime (requests, and cuts and stalls, so far). */
export interface ModelState {
  requests: number;
  cuts: number;
}

/**
 * The scripted model as an in-process `ModelProvider`: reply number n answers a conversation that
 * holds n assistant messages; a `prefix` must be the start of that reply's text, and only the rest
 * is streamed. A request the plan cuts throws a retryable `ModelError` before its k-th event.
 */
class SimModel implements ModelProvider {
  readonly name = "sim-model";
  readonly model = "scripted";
  readonly supportsContinuation: boolean;
  readonly #fiberId: string;
  readonly #plan: AgentPlan;
  readonly #host: AgentHost;
  readonly #state: ModelState;

  constructor(fiberId: string, plan: AgentPlan, host: AgentHost, state: ModelState) {
    this.#fiberId = fiberId;
    this.#plan = plan;
    this.#host = host;
    this.#state = state;
    this.supportsContinuation = plan.continuation;
  }

  async *stream(request: ModelRequest): AsyncIterable<ModelEvent> {
    if (this.#host.crashed) return hang();
    const number = request.messages.filter((m) => m.role === "assistant").length;
    const reply = this.#plan.replies[number];
    const prefix = request.prefix ?? "";
    const n = this.#state.requests++;
    if (reply === undefined || !reply.text.startsWith(prefix)) {
      this.#host.request(this.#fiberId, number, `request #${n} reply ${number}: off script`);
      throw new NonRetryableError(
        reply === undefined
          ? `script: no reply #${number}`
          : `script: prefix ${JSON.stringify(prefix)} is not the start of reply #${number}`,
      );
    }
    const events = replyEvents(reply, prefix.length, this.#plan.deltaChars);
    const fraction = this.#plan.cuts[n];
    let cutAt: number | undefined;
    if (fraction !== null && fraction !== undefined && this.#state.cuts < this.#plan.maxCuts) {
      this.#state.cuts++;
      cutAt = Math.min(events.length, Math.floor(fraction * events.length));
    }
    const stall = this.#plan.stalls[n];
    let stallAt: number | undefined;
    if (stall !== null && stall !== undefined && this.#state.cuts < this.#plan.maxCuts) {
      this.#state.cuts++;
      stallAt = Math.floor(stall * events.length);
    }
    this.#host.request(
      this.#fiberId,
      number,
      `request #${n} reply ${number}${prefix ? ` prefix ${prefix.length}` : ""}, ${events.length} events${cutAt === undefined ? "" : `, cut before #${cutAt}`}${stallAt === undefined ? "" : `, stall before #${stallAt}`}`,
    );
    for (const [i, event] of events.entries()) {
      // A stall outlasts the watchdog, whose abort (a retryable `stalled` error) ends the pause.
      if (i === stallAt) await pause(this.#plan.noProgressMs + 100, request.signal);
      if (this.#plan.deltaMs > 0) await pause(this.#plan.deltaMs, request.signal);
      else await Promise.resolve();
      if (this.#host.crashed) return hang();
      request.signal?.throwIfAborted();
      if (i === cutAt)
        throw new ModelError("The connection dropped mid-reply (simulated).", {
          kind: "network",
          retryable: true,
        });
      yield event;
    }
    // A cut after `finish`: the reply was complete, the caller must not wait for this error.
    if (cutAt === events.length)
      throw new ModelError("The connection dropped after the reply finished (simulated).", {
        kind: "network",
        retryable: true,
      });
  }
}

/** The events of `reply` from character `from` of its text on. */
function replyEvents(reply: AgentReply, from: number, deltaChars: number): ModelEvent[] {
  const events: ModelEvent[] = [];
  const text = reply.text.slice(from);
  for (let i = 0; i < text.length; i += deltaChars)
    events.push({ type: "text", delta: text.slice(i, i + deltaChars) });
  for (const call of reply.calls)
    events.push({ type: "tool_call", id: call.id, name: call.tool, arguments: argumentsOf(call) });
  events.push({ type: "usage", usage: { promptTokens: 10, completionTokens: text.length } });
  events.push({ type: "finish", reason: reply.calls.length > 0 ? "tool_calls" : "stop" });
  return events;
}

function argumentsOf(call: AgentCall): string {
  return JSON.stringify({ path: call.path });
}

/**
 * The messages an uninterrupted run of `plan` returns, given the fiber's inbox and the event
 * each gated call's `tool.approval` chunk announced (`announced`, by path): the first event of
 * that name decides. `undefined` when the run cannot finish (a gated call with no approval).
 */
export function agentOracle(
  plan: AgentPlan,
  fiberId: string,
  inbox: readonly InboxEvent[],
  announced: ReadonlyMap<string, string>,
): ChatMessage[] | undefined {
  const messages: ChatMessage[] = [...agentInput(fiberId).messages];
  for (const reply of plan.replies) {
    const toolCalls: ToolCall[] = reply.calls.map((c) => ({
      id: c.id,
      type: "function",
      function: { name: c.tool, arguments: argumentsOf(c) },
    }));
    messages.push({
      role: "assistant",
      content: reply.text || null,
      ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
    });
    for (const call of reply.calls) {
      let content = JSON.stringify({ tool: call.tool, path: call.path });
      if (call.tool === "delete_file") {
        const event = announced.get(call.path);
        const first = event === undefined ? undefined : inbox.find((e) => e.name === event);
        if (first === undefined) return undefined;
        if ((first.payload as { approved?: unknown } | null)?.approved !== true)
          content = JSON.stringify({ error: "The user denied this call." });
      }
      messages.push({ role: "tool", tool_call_id: call.id, content });
    }
  }
  return messages;
}

/** `value` as JSON with object keys sorted, for comparisons that ignore key order. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

function hang(): Promise<never> {
  return new Promise<never>(() => {});
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
