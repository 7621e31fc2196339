/**
 * `defineAgent`: a multi-turn LLM agent loop as a fiber. Each model call is a journaled step that
 * streams `message.start`, `reasoning.delta`, `text.delta`, `tool.call`, `message.retry` and `message.end` chunks (`model-step.ts`);
 * each tool call is a step whose idempotency key names the fiber, the model call, the position and
 * the model's tool-call id, and approvals are durable event waits bound to that one call
 * (`tool-step.ts`). This file holds the options, the chunk types and the turn loop.
 */

import type { FiberDefinition, RetryPolicy } from "../core/define";
import { defineFiber } from "../core/define";
import { FiberlineError, InvalidInputError } from "../core/errors";
import { assertArgument, assertStepOptions, estimateSize, MAX_TIMER_MS } from "../core/validate";
import { callModel, messageIdOf, type RetryChunkData } from "./model-step";
import { runTool } from "./tool-step";
import type {
  AssistantMessage,
  ChatMessage,
  FinishReason,
  ModelProvider,
  ModelUsage,
  ReasoningPart,
  ToolDefinition,
  ToolSpec,
} from "./types";

export { type ApprovalDecision, approvalEventName, type ToolCallRef, toolCallKey } from "./tool-step";

/** What an agent fiber is started with. */
export interface AgentInput {
  /** The conversation so far, ending with the user's message (no system prompt: that comes from the definition). */
  messages: ChatMessage[];
  /** Overrides the definition's `maxTurns` for this run. */
  maxTurns?: number;
  /**
   * Names the messages that come before `messages` without carrying them (e.g.
   * `"<conversation>/<turn>"`): the definition's `history` option resolves it when the run needs
   * them, so a long conversation never makes the input, and the storage, grow with its length.
   */
  historyRef?: string;
}

/** What an agent fiber returns. */
export interface AgentOutput {
  /**
   * `input.messages` with every assistant and tool message this run added (the messages the
   * `history` option supplied are not repeated here).
   */
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
  /**
   * The messages before `input.messages`, read when the run starts (and again when it is
   * replayed after a crash) instead of being carried in every input: pass `historyRef` in the
   * input and resolve it here, e.g. from the app's own conversation store. They are sent to the
   * model but never journaled, streamed or returned, so each run stores only its own messages.
   *
   * Failure semantics: a replay reads the history again, so return the same messages for a
   * reference as long as its fiber may run (refer to messages that no longer change). A throw
   * fails the fiber with that error.
   */
  history?: (selection: ModelSelection) => readonly ChatMessage[] | Promise<readonly ChatMessage[]>;
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
  /**
   * Deadline of each attempt of every tool, in ms (a tool's own `timeoutMs` wins; default none). A
   * tool whose attempts all run late is reported to the model as not finished in time, so a hung
   * `fetch` cannot stall the agent: give every tool that waits on the network one.
   */
  toolTimeoutMs?: number;
  /**
   * A model call that yields nothing for this long after its first event is aborted and retried
   * (default 60 s; 0: never). Waits the provider announces (`Retry-After`, backoff) do not count,
   * and anything the provider hears from the model (a keep-alive comment) starts the clock over.
   * It does not cover the wait for the first event: that is `firstEventTimeoutMs`.
   */
  noProgressTimeoutMs?: number;
  /**
   * As `noProgressTimeoutMs`, before the call's first event (default 300 s; 0: never): reasoning
   * models that think before they answer (OpenAI's o-series over Chat Completions) send nothing
   * for minutes. Turning off both watchdogs takes both options at 0.
   */
  firstEventTimeoutMs?: number;
  /**
   * A reply whose reasoning, text and tool calls reach this many characters is cut there and ends with
   * `finishReason: "length"`, so it still fits the journal (default 256,000: a quarter of the
   * runtime's default `maxPayloadBytes`). Lower it if you lowered `maxPayloadBytes`.
   */
  maxReplyChars?: number;
  /** Tool calls kept from one reply; the reply is cut before the next (`finishReason: "length"`; default 32). */
  maxToolCalls?: number;
}

/** The chunk types an agent emits, for readers. */
export type AgentChunk =
  | { type: "message.start"; data: { messageId: string; turn: number; model: string } }
  | { type: "text.delta"; data: { messageId: string; delta: string } }
  /**
   * A piece of the model's reasoning ("thinking"), before or between text deltas. Kept in the
   * stream and in `AssistantMessage.reasoning`; sent back to the model only as the signed blocks
   * a provider asks for (`AssistantMessage.reasoningParts`, through `aiSdkModel`).
   */
  | { type: "reasoning.delta"; data: { messageId: string; delta: string } }
  | {
      type: "tool.call";
      data: {
        messageId: string;
        index: number;
        toolCallId: string;
        name: string;
        arguments: string;
        /** `ToolCall.providerMetadata`, when the provider attached any. */
        providerMetadata?: Record<string, Record<string, unknown>>;
      };
    }
  | { type: "message.reset"; data: { messageId: string; reason: string; interrupted?: true } }
  /**
   * A model request failed and attempt `attempt` of `maxAttempts` starts at `retryAt`, after
   * `delayMs`; `error` says why the last one failed. Written before the wait, so a reader that
   * comes back during it (a reload, a restarted worker) can still show it.
   */
  | { type: "message.retry"; data: RetryChunkData }
  | {
      type: "message.end";
      data: {
        messageId: string;
        finishReason: FinishReason;
        usage: ModelUsage | null;
        /** `AssistantMessage.reasoningParts`, when the provider attached metadata to its reasoning. */
        reasoningParts?: ReasoningPart[];
      };
    }
  | {
      type: "tool.approval";
      data: {
        messageId: string;
        index: number;
        toolCallId: string;
        name: string;
        arguments: Record<string, unknown>;
        /** The event that answers exactly this call (`approvalEventName`). */
        event: string;
      };
    }
  | {
      type: "tool.result";
      data: {
        messageId: string;
        index: number;
        toolCallId: string;
        name: string;
        status: "ok" | "error" | "denied";
        result?: unknown;
        error?: string;
      };
    };

/** Room kept in the result for what is not a message (`usage`, `turns`, the object itself). */
const RESULT_ENVELOPE_BYTES = 1024;

/**
 * Defines an agent: a fiber that loops model call → tool calls → model call until the model
 * answers without tools or `maxTurns` is reached.
 *
 * Failure semantics: every model call and tool call is a journaled step. After a crash, finished
 * calls are not repeated; a tool call cut off mid-run runs again with the same `idempotencyKey`
 * (`toolCallKey`: fiber, model call, position in the reply and the model's tool-call id, so it
 * differs between any two calls even when the model reuses ids); a model call cut off
 * mid-stream continues or restarts as `recovery` says, and one that already streamed its
 * `message.end` is complete. A tool that requires approval runs only after an `approved: true`
 * event named for that very call. Invalid tool arguments and tool errors go back to the model as
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
  assertStepOptions(
    { timeoutMs: options.toolTimeoutMs, retry: options.toolRetry },
    `defineAgent("${options.name}") tool options (toolTimeoutMs, toolRetry)`,
  );
  for (const name of ["noProgressTimeoutMs", "firstEventTimeoutMs"] as const) {
    const ms = options[name];
    // A timer past MAX_TIMER_MS fires at once: "never" is 0.
    assertArgument(
      ms === undefined || (typeof ms === "number" && ms >= 0 && ms <= MAX_TIMER_MS),
      `defineAgent("${options.name}"): ${name} must be a number of milliseconds from 0 (never) to ${MAX_TIMER_MS} (got ${String(ms)}).`,
    );
  }
  for (const tool of options.tools ?? []) {
    if (tools.has(tool.name))
      throw new TypeError(`defineAgent("${options.name}"): two tools are named "${tool.name}".`);
    assertStepOptions(tool, `defineAgent("${options.name}"), tool "${tool.name}"`);
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
      const earlier = options.history ? await options.history({ fiberId: ctx.id, input }) : [];
      const conversation: ChatMessage[] = [...input.messages];
      const usage: ModelUsage = { promptTokens: 0, completionTokens: 0 };
      // The result holds the whole conversation: a run whose result cannot be stored stops
      // before its next tool runs, not after the last (when every effect is done and lost to it).
      let resultBytes = RESULT_ENVELOPE_BYTES + estimateSize(input.messages);
      const add = (message: ChatMessage, after: string): void => {
        conversation.push(message);
        resultBytes += estimateSize(message);
        if (resultBytes > ctx.maxPayloadBytes)
          throw new InvalidInputError(
            "payload_too_large",
            `Agent "${options.name}"'s conversation reached about ${resultBytes} bytes after ${after}, over maxPayloadBytes (${ctx.maxPayloadBytes}): its result could not be stored, so it stopped before running more tools. Have tools return less (a reference to large data), or raise maxPayloadBytes in createRuntime().`,
          );
      };
      for (let turn = 1; turn <= maxTurns; turn++) {
        const sent: ChatMessage[] = [
          ...(options.system ? [{ role: "system", content: options.system } satisfies ChatMessage] : []),
          ...earlier,
          ...conversation,
        ];
        const reply = await callModel(ctx, {
          provider: () =>
            typeof options.model === "function" ? options.model({ fiberId: ctx.id, input }) : options.model,
          specs,
          messages: sent,
          turn,
          recovery: options.recovery ?? "continue",
          retry: options.modelRetry,
          noProgressTimeoutMs: options.noProgressTimeoutMs ?? 60_000,
          firstEventTimeoutMs: options.firstEventTimeoutMs ?? 300_000,
          maxReplyChars: options.maxReplyChars ?? 256_000,
          maxToolCalls: options.maxToolCalls ?? 32,
        });
        if (reply.usage) {
          usage.promptTokens += reply.usage.promptTokens;
          usage.completionTokens += reply.usage.completionTokens;
        }
        const assistant: AssistantMessage = { role: "assistant", content: reply.content || null };
        if (reply.reasoning) assistant.reasoning = reply.reasoning;
        if (reply.reasoningParts) assistant.reasoningParts = reply.reasoningParts;
        if (reply.toolCalls.length > 0) assistant.tool_calls = reply.toolCalls;
        add(assistant, `model call ${turn}`);
        if (reply.toolCalls.length === 0) return { messages: conversation, usage, turns: turn };
        const messageId = messageIdOf(ctx.id, turn);
        for (const [index, call] of reply.toolCalls.entries()) {
          const ref = { messageId, index, toolCallId: call.id };
          const result = await runTool(ctx, tools, ref, call, {
            retry: options.toolRetry,
            timeoutMs: options.toolTimeoutMs,
          });
          add(result, `the result of ${call.function.name} (model call ${turn})`);
        }
      }
      throw new FiberlineError(
        "max_turns",
        `Agent "${options.name}" made ${maxTurns} model calls without a final answer (maxTurns). Raise maxTurns, or check that the tools return what the model needs.`,
      );
    },
  });
}
