/**
 * Folds an assistant fiber's stream into what the chat shows for one turn: text segments, tool
 * cards, approvals, the model call's retries, recoveries and the outcome. A pure reducer over the chunks `defineAgent`
 * emits (see `AgentChunk`), so a reader that replays the stream from the start after a reload
 * rebuilds exactly the same view.
 */

import type { FiberEvent } from "../../src/core/records";
import { explainFailure } from "./failure-text";

/** A tool card's state. */
export type ToolStatus = "called" | "awaiting-approval" | "running" | "ok" | "error" | "denied";

/** One piece of an assistant reply. */
export type Segment =
  | { kind: "text"; messageId: string; text: string }
  /** The model's reasoning ("thinking") for one model call, shown collapsed. */
  | { kind: "reasoning"; messageId: string; text: string }
  | {
      kind: "tool";
      messageId: string;
      /** Position among the reply's tool calls: models may reuse `toolCallId`, even in one reply. */
      index: number;
      toolCallId: string;
      name: string;
      arguments: string;
      status: ToolStatus;
      result?: unknown;
      error?: string;
    };

/** A model call waiting to try again: attempt `attempt` of `maxAttempts` starts at `retryAt`. */
export interface RetryView {
  attempt: number;
  maxAttempts: number;
  /** ms since the epoch (the worker's clock, the browser's). */
  retryAt: number;
  /** Why the last attempt failed. */
  reason: string;
}

/** How the fiber ended. */
export type TurnOutcome = "completed" | "failed" | "cancelled";

/** What one assistant turn looks like. */
export interface TurnView {
  segments: Segment[];
  /** Highest `seq` folded in. */
  seq: number;
  /** Set once `fiber.end` arrived. */
  outcome?: TurnOutcome;
  /** Why it failed, as a sentence for a person. */
  error?: string;
  /** The technical details behind `error` (error code and message), for a disclosure. */
  detail?: string;
  /** Set when the turn's fiber was never started (the start was refused): nothing ran. */
  neverStarted?: boolean;
  /** `fiber.recovered` chunks: the worker stopped and the run resumed from its journal. */
  recoveries: Array<{ at: number; count: number }>;
  /** Replies regenerated after `message.reset`. */
  resets: number;
  /** The model that answered (from `message.start`). */
  model?: string;
  /**
   * The model call's last announced retry (`message.retry`), until the call makes progress again:
   * from the durable stream, so a reloaded page or a restarted worker still shows it.
   */
  retry?: RetryView;
  /**
   * When a page re-attached to this reply while it was streaming (after a reload): not in the
   * stream, set by the page that saw it and frozen with the turn, so the marker stays.
   */
  reattachedAt?: number;
}

/** The view before any chunk. */
export function emptyTurn(): TurnView {
  return { segments: [], seq: 0, recoveries: [], resets: 0 };
}

type Data = Record<string, unknown>;

const str = (value: unknown): string => (typeof value === "string" ? value : "");

/** Chunks that show the model call is getting on (or over): they end a retry's display. */
const PROGRESS = new Set(["text.delta", "reasoning.delta", "tool.call", "message.end", "fiber.end"]);

/** Applies one chunk; chunks at or below `view.seq` are ignored (idempotent delivery). */
export function applyChunk(view: TurnView, event: FiberEvent): TurnView {
  if (event.seq <= view.seq) return view;
  const data = (event.data ?? {}) as Data;
  const next: TurnView = { ...view, seq: event.seq };
  // The model makes progress again: the retry it announced is over.
  if (PROGRESS.has(event.type)) delete next.retry;
  switch (event.type) {
    case "message.start":
      next.model = str(data.model) || view.model;
      break;
    case "text.delta":
    case "reasoning.delta": {
      const kind = event.type === "text.delta" ? "text" : "reasoning";
      const messageId = str(data.messageId);
      const segments = [...view.segments];
      const last = segments[segments.length - 1];
      if (last?.kind === kind && last.messageId === messageId)
        segments[segments.length - 1] = { ...last, text: last.text + str(data.delta) };
      else segments.push({ kind, messageId, text: str(data.delta) });
      next.segments = segments;
      break;
    }
    case "message.retry": {
      const error = (data.error ?? {}) as Data;
      next.retry = {
        attempt: Number(data.attempt) || 2,
        maxAttempts: Number(data.maxAttempts) || 0,
        retryAt: Number(data.retryAt) || event.at,
        reason: str(error.message) || str(error.code),
      };
      break;
    }
    case "message.reset": {
      // The partial reply is regenerated from scratch: drop what it had streamed.
      const messageId = str(data.messageId);
      next.segments = view.segments.filter((s) => s.messageId !== messageId);
      next.resets = view.resets + 1;
      break;
    }
    case "tool.call":
      next.segments = [
        ...view.segments,
        {
          kind: "tool",
          messageId: str(data.messageId),
          index: typeof data.index === "number" ? data.index : -1,
          toolCallId: str(data.toolCallId),
          name: str(data.name),
          arguments: str(data.arguments),
          status: "called",
        },
      ];
      break;
    case "message.end":
      next.segments = view.segments.map((s) =>
        s.kind === "tool" && s.messageId === str(data.messageId) && s.status === "called"
          ? { ...s, status: "running" }
          : s,
      );
      break;
    case "tool.approval":
      next.segments = updateTool(view.segments, data, { status: "awaiting-approval" });
      break;
    case "tool.result": {
      const status = data.status === "ok" || data.status === "denied" ? data.status : "error";
      next.segments = updateTool(view.segments, data, {
        status,
        ...(data.result === undefined ? {} : { result: data.result }),
        ...(typeof data.error === "string" ? { error: data.error } : {}),
      });
      break;
    }
    case "fiber.recovered":
      next.recoveries = [...view.recoveries, { at: event.at, count: Number(data.count) || 1 }];
      break;
    case "fiber.end": {
      const status = data.status;
      next.outcome = status === "completed" || status === "cancelled" ? status : "failed";
      if (next.outcome === "failed") {
        const { sentence, detail } = explainFailure(data.error);
        next.error = sentence;
        next.detail = detail;
      }
      // Tools still pending when the fiber ended never got a result.
      next.segments = next.segments.map((s) =>
        s.kind === "tool" &&
        (s.status === "called" || s.status === "running" || s.status === "awaiting-approval")
          ? {
              ...s,
              status: "error",
              error: next.outcome === "cancelled" ? "Stopped before it ran." : "No result.",
            }
          : s,
      );
      break;
    }
  }
  return next;
}

/** Patches the card of the call `data` names: its reply and position, or (older streams) its id. */
function updateTool(segments: Segment[], data: Data, patch: Partial<Segment>): Segment[] {
  const bound = typeof data.index === "number";
  return segments.map((s) =>
    s.kind === "tool" &&
    s.toolCallId === str(data.toolCallId) &&
    (!bound || (s.messageId === str(data.messageId) && s.index === data.index))
      ? ({ ...s, ...patch } as Segment)
      : s,
  );
}

/** The reply's text so far (all text segments), e.g. to keep a stopped reply in the history. */
export function turnText(view: TurnView): string {
  return view.segments
    .filter((s): s is Extract<Segment, { kind: "text" }> => s.kind === "text")
    .map((s) => s.text)
    .join("\n\n");
}
