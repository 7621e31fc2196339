/**
 * The agent's stream as the AI SDK's UI message stream: `AgentChunk`s (`message.start`,
 * `reasoning.delta`, `text.delta`, `tool.call`, `tool.approval`, `tool.result`, `message.reset`,
 * `message.end`, `fiber.end`) become `UIMessageChunk`s that `useChat` builds one assistant message
 * from, one step per model call. Also folds a stored stream so a replay shows no discarded text.
 * Used by `FiberlineChatTransport`.
 */

import type { UIMessageChunk, FinishReason as UiFinishReason } from "ai";
import type { AgentChunk } from "../agent/agent";
import { toolCallKey } from "../agent/tool-step";
import type { FiberEvent } from "../core/records";

/** Marks the parts of a model step that was regenerated from scratch (`isDiscardedPart`). */
export const DISCARDED = { fiberline: { discarded: true } } as const;

type ChunkOf<T extends AgentChunk["type"]> = Extract<AgentChunk, { type: T }>["data"];

/** What a `fiber.end` chunk carries. */
interface FiberEnd {
  status: "completed" | "failed" | "cancelled";
  error?: { message?: string; code?: string };
}

const FINISH_REASONS: Readonly<Record<string, UiFinishReason>> = {
  stop: "stop",
  length: "length",
  content_filter: "content-filter",
  tool_calls: "tool-calls",
};

/** Options of {@link UiChunkMapper}. */
export interface UiChunkMapperOptions {
  /**
   * Take a regenerated model call's parts back with ai 7's `reset-step` chunk (it removes the
   * current step's parts). Leave it off for ai 6, which has no such chunk and ignores it: the
   * parts are then closed marked discarded (`isDiscardedPart`).
   */
  resetStep?: boolean;
  /**
   * The decision an approval request (by its event name) already has, if any: the request is
   * then shown answered (ai 7's `tool-approval-response` after it, with `resetStep`) or, with
   * ai 6, which has no chunk for an answer, left out, so the page never offers buttons for a
   * call that was decided (after a reload, or in another page).
   */
  answers?: (approvalEvent: string) => ApprovalAnswer | undefined;
  /**
   * The UI ids the page's message already gives tool calls, by `toolCallKey`: a stream that
   * continues a message built live (after an approval) uses them, since that message may have
   * taken `~N` ids (a call regenerated while watched) that the stored stream, folded, no longer
   * gives.
   */
  toolCallIds?: ReadonlyMap<string, string>;
}

/** How an approval was answered: the payload of the fiber's approval event. */
export interface ApprovalAnswer {
  approved: boolean;
  reason?: string;
}

/**
 * Maps one fiber's chunks, in order, to UI message chunks. One instance per returned stream:
 * it remembers the open text and reasoning parts, the open step and the tool calls of the step.
 */
export class UiChunkMapper {
  readonly #resetStep: boolean;
  readonly #answers: UiChunkMapperOptions["answers"];
  readonly #ids: ReadonlyMap<string, string> | undefined;
  #stepOpen = false;
  /**
   * Text and reasoning parts of the current model call, all left open until it ends, so that a
   * `message.reset` can still mark every one of them; deltas go to `#current`.
   */
  #open: { kind: "text" | "reasoning"; id: string }[] = [];
  #current: { kind: "text" | "reasoning"; id: string } | undefined;
  #parts = 0;
  #finishReason: UiFinishReason | undefined;
  /** UI tool-call ids of the current model call, by the agent's `messageId`, for a reset. */
  readonly #stepCalls = new Map<string, string[]>();
  /**
   * Without `resetStep`: the resets each model call (`messageId`) has had in this stream. The
   * parts of a discarded attempt stay in the message, so a regenerated call's tool parts take ids
   * of their own (`#toolCallId`): a model that names its calls from the conversation gives the
   * regenerated call the discarded one's id, and ai 6 would update that part in place, keeping
   * its discarded mark (and hiding its approval).
   */
  readonly #resets = new Map<string, number>();
  /** UI ids of the tool calls with no result yet: a reply that ends without one closes them. */
  readonly #pending = new Set<string>();

  constructor(options: UiChunkMapperOptions = {}) {
    this.#resetStep = options.resetStep ?? false;
    this.#answers = options.answers;
    this.#ids = options.toolCallIds;
  }

  /**
   * Takes note of an agent chunk the page already has from an earlier stream (a stream that
   * starts after an approval): only which tool calls still wait for a result.
   */
  track(event: FiberEvent): void {
    if (event.type === "message.start")
      this.#stepCalls.set((event.data as ChunkOf<"message.start">).messageId, []);
    else if (event.type === "tool.call" || event.type === "tool.result" || event.type === "message.reset")
      this.map(event);
  }

  /** The UI chunks for one agent chunk (none for chunks a chat does not show). */
  map(event: FiberEvent): UIMessageChunk[] {
    const out: UIMessageChunk[] = [];
    switch (event.type) {
      case "message.start": {
        const data = event.data as ChunkOf<"message.start">;
        this.#closeStep(out);
        out.push({ type: "start-step" });
        this.#stepOpen = true;
        this.#stepCalls.set(data.messageId, []);
        break;
      }
      case "reasoning.delta":
      case "text.delta": {
        const data = event.data as ChunkOf<"text.delta">;
        const kind = event.type === "text.delta" ? "text" : "reasoning";
        if (this.#current?.kind !== kind) {
          this.#current = { kind, id: `${data.messageId}:p${++this.#parts}` };
          this.#open.push(this.#current);
          out.push({ type: kind === "text" ? "text-start" : "reasoning-start", id: this.#current.id });
        }
        out.push({
          type: kind === "text" ? "text-delta" : "reasoning-delta",
          id: this.#current.id,
          delta: data.delta,
        });
        break;
      }
      case "tool.call": {
        const data = event.data as ChunkOf<"tool.call">;
        // Text after the call is a new part, after the call's part.
        this.#current = undefined;
        const toolCallId = this.#toolCallId(data);
        this.#stepCalls.get(data.messageId)?.push(toolCallId);
        this.#pending.add(toolCallId);
        const input = parseArguments(data.arguments);
        out.push(
          input.ok
            ? { type: "tool-input-available", toolCallId, toolName: data.name, input: input.value }
            : {
                type: "tool-input-error",
                toolCallId,
                toolName: data.name,
                input: data.arguments,
                errorText: `The model wrote arguments for ${data.name} that are not JSON.`,
              },
        );
        break;
      }
      case "message.reset": {
        const data = event.data as ChunkOf<"message.reset">;
        const calls = this.#stepCalls.get(data.messageId) ?? [];
        this.#stepCalls.set(data.messageId, []);
        for (const call of calls) this.#pending.delete(call);
        if (this.#resetStep) {
          // ai 7 removes every part after the step's `step-start` and forgets the open ones, so
          // they get no end; the regenerated call opens new parts (new ids) in the same step.
          // Not in ai 6's `UIMessageChunk` union, which these types are built against.
          out.push({ type: "reset-step" } as unknown as UIMessageChunk);
          this.#open = [];
          this.#current = undefined;
          break;
        }
        // ai 6 has no chunk that takes streamed parts back: close them marked as discarded
        // (`isDiscardedPart`); a replay of the stream leaves them out altogether.
        this.#closeParts(out, DISCARDED);
        for (const toolCallId of calls) {
          out.push({
            type: "tool-output-error",
            toolCallId,
            errorText: `Discarded: ${data.reason}`,
            providerMetadata: DISCARDED,
          });
        }
        this.#resets.set(data.messageId, (this.#resets.get(data.messageId) ?? 0) + 1);
        break;
      }
      case "message.end": {
        const data = event.data as ChunkOf<"message.end">;
        this.#closeParts(out);
        this.#finishReason = FINISH_REASONS[data.finishReason] ?? "other";
        break;
      }
      case "tool.approval": {
        const data = event.data as ChunkOf<"tool.approval">;
        const answer = this.#answers?.(data.event);
        // ai 6 cannot show an answer (only the page that answered has it): no request at all.
        if (answer !== undefined && !this.#resetStep) break;
        out.push({
          type: "tool-approval-request",
          approvalId: data.event,
          toolCallId: this.#toolCallId(data),
        });
        if (answer !== undefined)
          // ai 7's chunk, not in ai 6's `UIMessageChunk` union (see `reset-step`).
          out.push({
            type: "tool-approval-response",
            approvalId: data.event,
            approved: answer.approved,
            ...(answer.reason ? { reason: answer.reason } : {}),
          } as unknown as UIMessageChunk);
        break;
      }
      case "tool.result": {
        const data = event.data as ChunkOf<"tool.result">;
        const toolCallId = this.#toolCallId(data);
        this.#pending.delete(toolCallId);
        if (data.status === "ok")
          out.push({ type: "tool-output-available", toolCallId, output: data.result ?? null });
        else if (data.status === "denied") out.push({ type: "tool-output-denied", toolCallId });
        else out.push({ type: "tool-output-error", toolCallId, errorText: data.error ?? "The tool failed." });
        break;
      }
      case "fiber.end": {
        // A call the reply ended without running (cancelled, failed): an error, so the page
        // neither offers its approval nor, with an answer shown, sends it again and again.
        const end = event.data as FiberEnd;
        const why =
          end.status === "cancelled"
            ? "The reply was stopped before this call finished."
            : "The reply ended before this call finished.";
        for (const toolCallId of this.#pending)
          out.push({ type: "tool-output-error", toolCallId, errorText: why });
        this.#pending.clear();
        this.#closeStep(out);
        out.push(...endChunks(event.data as FiberEnd, this.#finishReason));
        break;
      }
      case "fiber.start":
      case "fiber.recovered":
        break;
      default:
        // The fiber's own chunks (ctx.emit in a custom agent): `onData` receives them.
        out.push({ type: `data-${event.type}`, data: event.data, transient: true });
    }
    return out;
  }

  /**
   * The UI id of a tool call: its `toolCallKey`, with the number of resets its model call had
   * in this stream after it when there were any (only without `resetStep`; a replay folds
   * resets away, so it gives the plain key). Only the final attempt's calls have approvals and
   * results, so they all take the id the call took.
   */
  #toolCallId(ref: Parameters<typeof toolCallKey>[0]): string {
    const resets = this.#resets.get(ref.messageId) ?? 0;
    const key = toolCallKey(ref);
    return resets === 0 ? (this.#ids?.get(key) ?? key) : `${key}~${resets}`;
  }

  /** Closes the step that paused for an approval: the chunks that end this stream, not the reply. */
  pause(): UIMessageChunk[] {
    const out: UIMessageChunk[] = [];
    this.#closeStep(out);
    out.push({ type: "finish", finishReason: "tool-calls" });
    return out;
  }

  #closeStep(out: UIMessageChunk[]): void {
    this.#closeParts(out);
    if (this.#stepOpen) out.push({ type: "finish-step" });
    this.#stepOpen = false;
  }

  #closeParts(out: UIMessageChunk[], providerMetadata?: typeof DISCARDED): void {
    for (const { kind, id } of this.#open)
      out.push({
        type: kind === "text" ? "text-end" : "reasoning-end",
        id,
        ...(providerMetadata ? { providerMetadata } : {}),
      });
    this.#open = [];
    this.#current = undefined;
  }
}

function endChunks(end: FiberEnd, finishReason: UiFinishReason | undefined): UIMessageChunk[] {
  if (end.status === "completed") return [{ type: "finish", finishReason: finishReason ?? "stop" }];
  if (end.status === "cancelled") return [{ type: "abort", reason: end.error?.message ?? "cancelled" }];
  const code = end.error?.code ? ` (${end.error.code})` : "";
  return [{ type: "error", errorText: `${end.error?.message ?? "The agent failed."}${code}` }];
}

/**
 * A stored stream without what a `message.reset` took back: the text, reasoning and tool calls
 * its model call streamed before the reset, and the reset itself. A replay built from it shows
 * each reply once, as it finally stands.
 */
export function foldResets(events: readonly FiberEvent[]): FiberEvent[] {
  const out: FiberEvent[] = [];
  for (const event of events) {
    if (event.type !== "message.reset") {
      out.push(event);
      continue;
    }
    const { messageId } = event.data as ChunkOf<"message.reset">;
    for (let i = out.length - 1; i >= 0; i--) {
      const earlier = out[i] as FiberEvent;
      const data = earlier.data as { messageId?: unknown } | null;
      const taken =
        (earlier.type === "text.delta" ||
          earlier.type === "reasoning.delta" ||
          earlier.type === "tool.call") &&
        data?.messageId === messageId;
      if (taken) out.splice(i, 1);
      if (earlier.type === "message.start" && data?.messageId === messageId) break;
    }
  }
  return out;
}

/**
 * True for a part of a model step that was regenerated from scratch while the page watched: ai 6
 * cannot take a streamed part back, so the transport closes it with this mark (with ai 7 and
 * `resetStep: true` it sends `reset-step` instead, and no part has the mark). Leave these parts
 * out when rendering; a reload's replay no longer contains them.
 *
 * @example
 * message.parts.filter((part) => !isDiscardedPart(part)).map(render)
 */
export function isDiscardedPart(part: unknown): boolean {
  if (typeof part !== "object" || part === null) return false;
  const record = part as { providerMetadata?: unknown; resultProviderMetadata?: unknown };
  const metadata = (record.providerMetadata ?? record.resultProviderMetadata) as
    | { fiberline?: { discarded?: unknown } }
    | undefined;
  return metadata?.fiberline?.discarded === true;
}

function parseArguments(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text === "" ? "{}" : text) };
  } catch {
    return { ok: false };
  }
}
