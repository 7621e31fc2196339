/**
 * One tool call of an agent turn: argument validation, the durable approval wait, and the tool's
 * journaled step with its idempotency key. Also names a call for everyone outside the fiber: the
 * key a tool deduplicates on and the event that approves the call. Used by `defineAgent`, the
 * demo's tool cards and tests that answer approvals.
 */

import type { FiberContext, RetryPolicy } from "../core/define";
import { CancelledError, FencedError, StepFailedError, serializeError, TimeoutError } from "../core/errors";
import { MAX_EVENT_NAME_LENGTH } from "../core/validate";
import { parseToolArguments } from "./tool-args";
import type { ToolCall, ToolDefinition, ToolMessage } from "./types";

/**
 * Which call of which model reply: the reply's `messageId` (unique per fiber and model call),
 * the call's position in that reply, and the model's own `toolCallId`. Every agent chunk about a
 * tool call carries these three fields.
 */
export interface ToolCallRef {
  /** `<fiberId>:m<turn>`, as in the `message.start` chunk. */
  messageId: string;
  /** 0-based position of the call among the reply's tool calls. */
  index: number;
  /** The id the model gave the call (models may repeat it across replies, or even within one). */
  toolCallId: string;
}

/** The payload of the event named by {@link approvalEventName} that answers a `tool.approval` chunk. */
export interface ApprovalDecision {
  /** Only `true` approves; anything else (a missing payload included) denies. */
  approved: boolean;
  reason?: string;
}

/**
 * The `idempotencyKey` a tool receives for one call: `<messageId>#<index>:<toolCallId>`, e.g.
 * `f1:m2#0:call_0`. It contains the model's call id, and is unique over every tool call of every
 * agent fiber in one store (fiber id, model call, position in the reply: fiber ids cannot contain
 * `#`, so the parts never run into each other), and the same on every attempt and replay of that
 * call. A fiber id reused after its fiber was deleted repeats its keys.
 *
 * @example
 * toolCallKey({ messageId: "f1:m2", index: 0, toolCallId: "call_0" }); // "f1:m2#0:call_0"
 */
export function toolCallKey(ref: ToolCallRef): string {
  return `${ref.messageId}#${ref.index}:${ref.toolCallId}`;
}

/**
 * The event name that approves or denies exactly one tool call: `approval:` and its
 * {@link toolCallKey}. The `tool.approval` chunk announces it as `event`. An approval sent twice,
 * or for a call that no longer waits, stays unconsumed and approves nothing else.
 *
 * Where that is longer than an event name may be (200 characters: a long fiber id with a long
 * call id), `approval:m<turn>#<index>:` and a hash of the call id instead: events go to one fiber,
 * where the turn and the position already name one call.
 *
 * @example
 * await runtime.sendEvent(fiberId, approvalEventName(chunk.data), { approved: true });
 */
export function approvalEventName(ref: ToolCallRef): string {
  const name = `approval:${toolCallKey(ref)}`;
  if (name.length <= MAX_EVENT_NAME_LENGTH) return name;
  const turn = ref.messageId.slice(ref.messageId.lastIndexOf(":") + 1);
  return `approval:${turn.slice(0, 40)}#${ref.index}:${fnv1a(ref.toolCallId)}`;
}

/** FNV-1a (32 bits) of `text`, as 8 hex digits. */
function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, "0");
}

/** The agent-wide defaults of every tool call (`toolRetry`, `toolTimeoutMs`); a tool's own win. */
export interface ToolDefaults {
  retry?: RetryPolicy | undefined;
  timeoutMs?: number | undefined;
}

/** Runs one tool call and returns the tool message for the model; never throws for tool failures. */
export async function runTool(
  ctx: FiberContext<unknown>,
  tools: ReadonlyMap<string, ToolDefinition>,
  ref: ToolCallRef,
  call: ToolCall,
  defaults: ToolDefaults = {},
): Promise<ToolMessage> {
  const name = call.function.name;
  const where = { messageId: ref.messageId, index: ref.index, toolCallId: ref.toolCallId };
  const reply = (data: {
    status: "ok" | "error" | "denied";
    result?: unknown;
    error?: string;
  }): ToolMessage => {
    ctx.emit("tool.result", { ...where, name, ...data });
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
    const event = approvalEventName(ref);
    ctx.emit("tool.approval", { ...where, name, arguments: parsed.value, event });
    const decision = await ctx.waitForEvent<Partial<ApprovalDecision> | undefined>(event);
    if (decision?.approved !== true) {
      const reason = typeof decision?.reason === "string" && decision.reason ? `: ${decision.reason}` : ".";
      return reply({ status: "denied", error: `The user denied this call${reason}` });
    }
  }
  const idempotencyKey = toolCallKey(ref);
  const retry: RetryPolicy = { maxAttempts: 3, initialDelayMs: 500, ...defaults.retry, ...tool.retry };
  const timeoutMs = tool.timeoutMs ?? defaults.timeoutMs;
  try {
    const result = await ctx.step(
      `tool:${call.id}`,
      (step) =>
        tool.execute(parsed.value, {
          idempotencyKey,
          attempt: step.attempt,
          interrupted: step.interrupted,
          signal: step.signal,
        }),
      timeoutMs === undefined ? { retry } : { retry, timeoutMs },
    );
    return reply({ status: "ok", result });
  } catch (error) {
    if (error instanceof CancelledError || error instanceof FencedError || ctx.signal.aborted) throw error;
    // What the tool threw: the engine wraps it in StepFailedError once its retries are spent (a
    // permanent error, such as NonRetryableError, comes as thrown, its own message kept).
    const cause = error instanceof StepFailedError ? error.cause : error;
    if (cause instanceof TimeoutError && timeoutMs !== undefined) {
      // The step's message names its journal key; the model needs the tool and the deadline.
      const attempts = retry.maxAttempts ?? 1;
      return reply({
        status: "error",
        error: `The tool ${name} did not finish within ${timeoutMs} ms (${attempts} attempt${attempts === 1 ? "" : "s"}).`,
      });
    }
    // The message as the journal keeps it (a thrown string or object is recorded as an Error with
    // that text), so a replay gives the model the same tool message as the live run.
    return reply({ status: "error", error: serializeError(cause).message });
  }
}
