/**
 * `defineAgent`: a multi-turn LLM agent loop as a fiber. Each model call is a journaled step that
 * streams `message.start`, `text.delta`, `tool.call` and `message.end` chunks; each tool call is a
 * step keyed by the model's tool-call id; approvals are durable event waits. A model call cut off
 * by a crash continues from its partial text (`continue`) or restarts with `message.reset`.
 */

import type { FiberContext, FiberDefinition, RetryPolicy, StepContext } from "../core/define";
import { defineFiber } from "../core/define";
import { CancelledError, FencedError, FiberlineError, NonRetryableError } from "../core/errors";
import { ModelError } from "./errors";
import { parseToolArguments } from "./tool-args";
import type {
  AssistantMessage,
  ChatMessage,
  FinishReason,
  ModelProvider,
  ModelUsage,
  ToolCall,
  ToolDefinition,
  ToolMessage,
  ToolSpec,
} from "./types";

/** What an agent fiber is started with. */
export interface AgentInput {
  /** The conversation so far, ending with the user's message (no system prompt: that comes from the definition). */
  messages: ChatMessage[];
  /** Overrides the definition's `maxTurns` for this run. */
  maxTurns?: number;
}

/** What an agent fiber returns. */
export interface AgentOutput {
  /** The conversation with every assistant and tool message this run added. */
  messages: ChatMessage[];
  /** Token counts summed over the run's model calls. */
  usage: ModelUsage;
  /** Model calls made. */
  turns: number;
}

/** What a `model` function receives to pick the provider for a run (e.g. from the user's settings). */
export interface ModelSelection {
  fiberId: string;
  input: AgentInput;
}

/** Options of `defineAgent`. */
export interface AgentOptions {
  /** The fiber name (`start(name, input)` uses it). */
  name: string;
  /** Recorded on each fiber; see `defineFiber`. */
  version?: string;
  /**
   * The model: a provider, or a function that returns one per run (read settings, API keys from
   * storage). Providers are never journaled, so credentials stay out of the journal and stream.
   */
  model: ModelProvider | ((selection: ModelSelection) => ModelProvider | Promise<ModelProvider>);
  /** The tools the model may call. */
  tools?: readonly ToolDefinition[];
  /** The system prompt, sent first on every model call. */
  system?: string;
  /** Model calls per run before the fiber fails with `max_turns` (default 8). */
  maxTurns?: number;
  /**
   * How a model call cut off mid-stream recovers: `"continue"` (default) sends the partial text
   * back as an assistant prefix where the provider supports it, so the reader sees one seamless
   * message; otherwise, or with `"retry"`, the call restarts after a `message.reset` chunk.
   */
  recovery?: "continue" | "retry";
  /** Retries of a failing model call (default 5 attempts, exponential from 1 s). */
  modelRetry?: RetryPolicy;
  /** Retries of a throwing tool before its error goes back to the model (default 3 attempts). */
  toolRetry?: RetryPolicy;
  /** A model call that yields nothing for this long is aborted and retried (default 60 s). */
  noProgressTimeoutMs?: number;
}

/** The chunk types an agent emits, for readers. */
export type AgentChunk =
  | { type: "message.start"; data: { messageId: string; turn: number; model: string } }
  | { type: "text.delta"; data: { messageId: string; delta: string } }
  | { type: "tool.call"; data: { messageId: string; toolCallId: string; name: string; arguments: string } }
  | { type: "message.reset"; data: { messageId: string; reason: string } }
  | { type: "message.end"; data: { messageId: string; finishReason: FinishReason; usage: ModelUsage | null } }
  | { type: "tool.approval"; data: { toolCallId: string; name: string; arguments: Record<string, unknown> } }
  | {
      type: "tool.result";
      data: {
        toolCallId: string;
        name: string;
        status: "ok" | "error" | "denied";
        result?: unknown;
        error?: string;
      };
    };

/** The payload of the `approval:<toolCallId>` event that answers a `tool.approval` chunk. */
export interface ApprovalDecision {
  approved: boolean;
  reason?: string;
}

/** The event name that approves or denies one tool call. */
export function approvalEventName(toolCallId: string): string {
  return `approval:${toolCallId}`;
}

interface ModelReply {
  content: string;
  toolCalls: ToolCall[];
  usage: ModelUsage | null;
  finishReason: FinishReason;
}

/**
 * Defines an agent: a fiber that loops model call → tool calls → model call until the model
 * answers without tools or `maxTurns` is reached.
 *
 * Failure semantics: every model call and tool call is a journaled step. After a crash, finished
 * calls are not repeated; a tool call cut off mid-run runs again with the same `idempotencyKey`
 * (the fiber id and the model's tool-call id); a model call cut off mid-stream continues or
 * restarts as `recovery` says. Invalid tool arguments and tool errors go back to the model as
 * tool results and never fail the fiber.
 *
 * @example
 * export const assistant = defineAgent({
 *   name: "assistant",
 *   model: openAICompatible({ baseUrl: "/mock-model/v1", model: "mock", continuation: "assistant-prefix" }),
 *   tools: [calculator],
 *   system: "You are a helpful assistant.",
 * });
 */
export function defineAgent(options: AgentOptions): FiberDefinition<AgentInput, AgentOutput> {
  const tools = new Map<string, ToolDefinition>();
  for (const tool of options.tools ?? []) {
    if (tools.has(tool.name))
      throw new TypeError(`defineAgent("${options.name}"): two tools are named "${tool.name}".`);
    tools.set(tool.name, tool);
  }
  const specs: ToolSpec[] = [...tools.values()].map(({ name, description, parameters }) => ({
    name,
    description,
    parameters,
  }));
  return defineFiber<AgentInput, AgentOutput>(options.name, {
    ...(options.version === undefined ? {} : { version: options.version }),
    async run(ctx, input) {
      const maxTurns = input.maxTurns ?? options.maxTurns ?? 8;
      const conversation: ChatMessage[] = [...input.messages];
      const usage: ModelUsage = { promptTokens: 0, completionTokens: 0 };
      for (let turn = 1; turn <= maxTurns; turn++) {
        const sent: ChatMessage[] = options.system
          ? [{ role: "system", content: options.system }, ...conversation]
          : conversation;
        const reply = await callModel(ctx, options, specs, sent, turn, input);
        if (reply.usage) {
          usage.promptTokens += reply.usage.promptTokens;
          usage.completionTokens += reply.usage.completionTokens;
        }
        const assistant: AssistantMessage = { role: "assistant", content: reply.content || null };
        if (reply.toolCalls.length > 0) assistant.tool_calls = reply.toolCalls;
        conversation.push(assistant);
        if (reply.toolCalls.length === 0) return { messages: conversation, usage, turns: turn };
        for (const call of reply.toolCalls)
          conversation.push(await runTool(ctx, tools, call, options.toolRetry));
      }
      throw new FiberlineError(
        "max_turns",
        `Agent "${options.name}" made ${maxTurns} model calls without a final answer (maxTurns). Raise maxTurns, or check that the tools return what the model needs.`,
      );
    },
  });
}

async function callModel(
  ctx: FiberContext<AgentInput>,
  options: AgentOptions,
  specs: ToolSpec[],
  messages: ChatMessage[],
  turn: number,
  input: AgentInput,
): Promise<ModelReply> {
  const messageId = `${ctx.id}:m${turn}`;
  // What earlier attempts of this call streamed: rebuilt from the stream after a crash, kept in
  // memory across in-process retries.
  let partial = { started: false, text: "", toolCalls: [] as ToolCall[] };
  return ctx.step(
    "model",
    async (step: StepContext): Promise<ModelReply> => {
      if (step.emitted.length > 0) partial = replayPartial(step.emitted);
      const provider =
        typeof options.model === "function" ? await options.model({ fiberId: ctx.id, input }) : options.model;
      let prefix: string | undefined;
      const hasPartial = partial.text.length > 0 || partial.toolCalls.length > 0;
      if (hasPartial) {
        const canContinue =
          (options.recovery ?? "continue") === "continue" &&
          provider.supportsContinuation &&
          partial.toolCalls.length === 0;
        if (canContinue) {
          prefix = partial.text;
        } else {
          step.emit("message.reset", {
            messageId,
            reason: step.interrupted
              ? "The reply was interrupted and is being regenerated."
              : "The reply failed and is being regenerated.",
          });
          partial = { started: true, text: "", toolCalls: [] };
        }
      }
      if (!partial.started) {
        step.emit("message.start", { messageId, turn, model: provider.model });
        partial.started = true;
      }
      let usage: ModelUsage | null = null;
      let finishReason: FinishReason = "stop";
      const watchdog = new Watchdog(options.noProgressTimeoutMs ?? 60_000, step.signal);
      try {
        const events = provider.stream({
          messages,
          tools: specs,
          signal: watchdog.signal,
          ...(prefix === undefined ? {} : { prefix }),
        });
        for await (const event of events) {
          watchdog.progress();
          switch (event.type) {
            case "text":
              if (event.delta.length === 0) break;
              partial.text += event.delta;
              step.emit("text.delta", { messageId, delta: event.delta });
              break;
            case "tool_call": {
              const call: ToolCall = {
                id: event.id,
                type: "function",
                function: { name: event.name, arguments: event.arguments },
              };
              partial.toolCalls.push(call);
              step.emit("tool.call", {
                messageId,
                toolCallId: event.id,
                name: event.name,
                arguments: event.arguments,
              });
              break;
            }
            case "usage":
              usage = event.usage;
              break;
            case "finish":
              finishReason = event.reason;
              break;
          }
        }
      } catch (error) {
        throw watchdog.explain(error);
      } finally {
        watchdog.stop();
      }
      step.emit("message.end", { messageId, finishReason, usage });
      return { content: partial.text, toolCalls: partial.toolCalls, usage, finishReason };
    },
    { retry: { maxAttempts: 5, initialDelayMs: 1_000, maxDelayMs: 20_000, ...options.modelRetry } },
  );
}

/** Rebuilds what an interrupted model call had streamed, honouring any `message.reset`. */
function replayPartial(emitted: StepContext["emitted"]): {
  started: boolean;
  text: string;
  toolCalls: ToolCall[];
} {
  const partial = { started: false, text: "", toolCalls: [] as ToolCall[] };
  for (const chunk of emitted) {
    const data = chunk.data as Record<string, unknown>;
    if (chunk.type === "message.start") partial.started = true;
    else if (chunk.type === "message.reset") {
      partial.text = "";
      partial.toolCalls = [];
    } else if (chunk.type === "text.delta") partial.text += String(data.delta ?? "");
    else if (chunk.type === "tool.call") {
      partial.toolCalls.push({
        id: String(data.toolCallId),
        type: "function",
        function: { name: String(data.name), arguments: String(data.arguments ?? "") },
      });
    }
  }
  return partial;
}

async function runTool(
  ctx: FiberContext<AgentInput>,
  tools: Map<string, ToolDefinition>,
  call: ToolCall,
  retry: RetryPolicy | undefined,
): Promise<ToolMessage> {
  const name = call.function.name;
  const reply = (data: {
    status: "ok" | "error" | "denied";
    result?: unknown;
    error?: string;
  }): ToolMessage => {
    ctx.emit("tool.result", { toolCallId: call.id, name, ...data });
    const content =
      data.status === "ok" ? JSON.stringify(data.result ?? null) : JSON.stringify({ error: data.error });
    return { role: "tool", tool_call_id: call.id, content };
  };
  const tool = tools.get(name);
  if (!tool) {
    return reply({
      status: "error",
      error: `There is no tool named "${name}". Available: ${[...tools.keys()].join(", ") || "none"}.`,
    });
  }
  const parsed = parseToolArguments(call.function.arguments, tool.parameters);
  if (!parsed.ok) return reply({ status: "error", error: `Invalid arguments for ${name}: ${parsed.error}` });
  if (tool.requiresApproval) {
    ctx.emit("tool.approval", { toolCallId: call.id, name, arguments: parsed.value });
    const decision = await ctx.waitForEvent<ApprovalDecision>(approvalEventName(call.id));
    if (!decision?.approved) {
      return reply({
        status: "denied",
        error: `The user denied this call${decision?.reason ? `: ${decision.reason}` : "."}`,
      });
    }
  }
  try {
    const result = await ctx.step(
      `tool:${call.id}`,
      (step) => tool.execute(parsed.value, { idempotencyKey: `${ctx.id}:${call.id}`, signal: step.signal }),
      { retry: { maxAttempts: 3, initialDelayMs: 500, ...retry } },
    );
    return reply({ status: "ok", result });
  } catch (error) {
    if (error instanceof CancelledError || error instanceof FencedError || ctx.signal.aborted) throw error;
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
    return reply({ status: "error", error: cause instanceof Error ? cause.message : String(cause) });
  }
}

/** Aborts a model call that makes no progress for `timeoutMs`, and aborts with its parent. */
class Watchdog {
  readonly #controller = new AbortController();
  readonly #timeoutMs: number;
  readonly #parent: AbortSignal;
  readonly #onParentAbort = () => this.#controller.abort(this.#parent.reason);
  #timer: ReturnType<typeof setTimeout> | undefined;
  #fired = false;

  constructor(timeoutMs: number, parent: AbortSignal) {
    this.#timeoutMs = timeoutMs;
    this.#parent = parent;
    parent.addEventListener("abort", this.#onParentAbort, { once: true });
    if (parent.aborted) this.#controller.abort(parent.reason);
    this.progress();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  progress(): void {
    clearTimeout(this.#timer);
    if (this.#timeoutMs <= 0) return;
    this.#timer = setTimeout(() => {
      this.#fired = true;
      this.#controller.abort(
        new ModelError(
          `The model sent nothing for ${this.#timeoutMs} ms; the call was aborted and will be retried.`,
          {
            kind: "stalled",
            retryable: true,
          },
        ),
      );
    }, this.#timeoutMs);
  }

  /** The error to throw for a failed call: non-retryable model errors stop the step's retries. */
  explain(error: unknown): unknown {
    if (this.#fired) return this.#controller.signal.reason;
    if (error instanceof ModelError && !error.retryable)
      return new NonRetryableError(error.message, { cause: error });
    return error;
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#parent.removeEventListener("abort", this.#onParentAbort);
  }
}
