/**
 * Where a message the page kept stands in its reply: `FiberlineChatTransport.resume` maps the
 * reply's stored stream to UI chunks and finds how many of them the page's message already
 * holds, so the stream it returns continues that message without a part twice or missing.
 * The AI SDK cannot append to a text or reasoning part it did not open itself, so a message
 * kept halfway through a part continues from its step's start after ai 7's `reset-step`, or (ai 6,
 * which has no such chunk) not at all: the reply is then replayed from its start.
 */

import type { UIMessage, UIMessageChunk } from "ai";
import { isDiscardedPart } from "./ui-chunks";

/** Where to resume: after `index` chunks, after `index` chunks and a `reset-step`, or from the start. */
export type ResumePoint =
  | { from: "chunk"; index: number }
  | { from: "step"; index: number }
  | { from: "start" };

/** A part as far as resuming tells parts apart: kind, text, tool call and its state. */
type Part =
  | { kind: "step" }
  | { kind: "text" | "reasoning"; text: string; open: boolean }
  | { kind: "tool"; toolCallId: string; state: string }
  | { kind: "other"; type: string };

/**
 * The point in `chunks` (a reply's UI chunks after its `start`) up to which `message` holds
 * exactly what they build. With `resetStep`, a message kept in the middle of a step resumes at
 * that step's start.
 *
 * Failure semantics: any difference (a discarded part, an approval the page answered, a part
 * the stream does not build) gives `{ from: "start" }`, a full replay, which is always correct
 * for a caller that then rebuilds the message.
 */
export function resumePoint(
  chunks: readonly UIMessageChunk[],
  message: Pick<UIMessage, "parts">,
  options: { resetStep: boolean },
): ResumePoint {
  const page = message.parts.map(pagePart);
  const lastStep = page.findLastIndex((part) => part.kind === "step");
  const built: Part[] = [];
  const open = new Map<string, Extract<Part, { open: boolean }>>();
  const approvals = new Map<string, string>();
  // The smallest index that matches: chunks that change no part (a step's end, the reply's
  // finish or error, transient data) are sent again rather than skipped.
  if (page.length === 0) return { from: "chunk", index: 0 };
  let step: ResumePoint | undefined;
  for (const [i, chunk] of chunks.entries()) {
    apply(built, open, approvals, chunk);
    if (open.size === 0 && same(built, page)) return { from: "chunk", index: i + 1 };
    if (options.resetStep && chunk.type === "start-step" && built.length === lastStep + 1)
      if (same(built, page.slice(0, lastStep + 1))) step = { from: "step", index: i + 1 };
  }
  return step ?? { from: "start" };
}

/** Chunks that add to or change a message's parts (the others end steps, the reply, or carry data). */
const PART_CHUNKS = new Set([
  "start-step",
  "text-start",
  "text-delta",
  "text-end",
  "reasoning-start",
  "reasoning-delta",
  "reasoning-end",
  "tool-input-available",
  "tool-input-error",
  "tool-approval-request",
  "tool-approval-response",
  "tool-output-available",
  "tool-output-error",
  "tool-output-denied",
  "reset-step",
]);

/** True when `chunks` would change no part of a message: it already shows everything in them. */
export function changesNoPart(chunks: readonly UIMessageChunk[]): boolean {
  return !chunks.some((chunk) => PART_CHUNKS.has(chunk.type));
}

function pagePart(part: UIMessage["parts"][number]): Part {
  if (isDiscardedPart(part)) return { kind: "other", type: "discarded" };
  if (part.type === "step-start") return { kind: "step" };
  if (part.type === "text" || part.type === "reasoning")
    return { kind: part.type, text: part.text, open: part.state === "streaming" };
  if (part.type === "dynamic-tool" || part.type.startsWith("tool-")) {
    const tool = part as { toolCallId: string; state: string };
    return { kind: "tool", toolCallId: tool.toolCallId, state: tool.state };
  }
  return { kind: "other", type: part.type };
}

/** What one chunk does to the parts, as the AI SDK's message builder does it. */
function apply(
  parts: Part[],
  open: Map<string, Extract<Part, { open: boolean }>>,
  /** The tool call of each approval request, by approval id. */
  approvals: Map<string, string>,
  chunk: UIMessageChunk,
): void {
  const setTool = (toolCallId: string, state: string): void => {
    const tool = parts.find((p) => p.kind === "tool" && p.toolCallId === toolCallId);
    if (tool?.kind === "tool") tool.state = state;
    else parts.push({ kind: "tool", toolCallId, state });
  };
  switch (chunk.type as string) {
    case "start-step":
      parts.push({ kind: "step" });
      break;
    case "text-start":
    case "reasoning-start": {
      const part: Extract<Part, { open: boolean }> = {
        kind: chunk.type === "text-start" ? "text" : "reasoning",
        text: "",
        open: true,
      };
      parts.push(part);
      open.set((chunk as { id: string }).id, part);
      break;
    }
    case "text-delta":
    case "reasoning-delta": {
      const { id, delta } = chunk as { id: string; delta: string };
      const part = open.get(id);
      if (part) part.text += delta;
      break;
    }
    case "text-end":
    case "reasoning-end": {
      const { id } = chunk as { id: string };
      const part = open.get(id);
      if (part) part.open = false;
      open.delete(id);
      break;
    }
    case "tool-input-available":
      setTool((chunk as { toolCallId: string }).toolCallId, "input-available");
      break;
    case "tool-input-error":
    case "tool-output-error":
      setTool((chunk as { toolCallId: string }).toolCallId, "output-error");
      break;
    case "tool-approval-request": {
      const { toolCallId, approvalId } = chunk as { toolCallId: string; approvalId: string };
      approvals.set(approvalId, toolCallId);
      setTool(toolCallId, "approval-requested");
      break;
    }
    case "tool-approval-response": {
      const toolCallId = approvals.get((chunk as { approvalId: string }).approvalId);
      if (toolCallId !== undefined) setTool(toolCallId, "approval-responded");
      break;
    }
    case "tool-output-available":
      setTool((chunk as { toolCallId: string }).toolCallId, "output-available");
      break;
    case "tool-output-denied":
      setTool((chunk as { toolCallId: string }).toolCallId, "output-denied");
      break;
    case "reset-step": {
      const start = parts.findLastIndex((p) => p.kind === "step");
      parts.splice(start + 1);
      open.clear();
      break;
    }
  }
}

function same(a: readonly Part[], b: readonly Part[]): boolean {
  return a.length === b.length && a.every((part, i) => JSON.stringify(part) === JSON.stringify(b[i]));
}
