/**
 * One line that says what a fiber is about, for the inspector's rows: an assistant reply's
 * prompt and the conversation it belongs to, a lab fiber's settings. Read from the fiber's input
 * (the chat starts each reply with the user's message and `historyRef`), and the conversation
 * titles from the chat's database.
 */

import type { FiberRecord } from "../../src/core/records";
import { parseHistoryRef } from "../shared/chat-db";

/** What a row shows: `what` in the cell, `context` under it (e.g. the conversation). */
export interface FiberSummary {
  what: string;
  context?: string;
}

type Input = Record<string, unknown> | undefined;

/** Summarises `fiber`; `titles` maps conversation ids to their titles. */
export function summarizeFiber(
  fiber: Pick<FiberRecord, "name" | "input">,
  titles: ReadonlyMap<string, string>,
): FiberSummary {
  const input = (typeof fiber.input === "object" && fiber.input !== null ? fiber.input : undefined) as Input;
  if (fiber.name === "assistant") {
    const messages = Array.isArray(input?.messages)
      ? (input.messages as Array<{ role?: unknown; content?: unknown }>)
      : [];
    const prompt = messages.findLast((m) => m.role === "user")?.content;
    const what = typeof prompt === "string" ? `“${oneLine(prompt)}”` : "a reply";
    const ref = typeof input?.historyRef === "string" ? parseHistoryRef(input.historyRef) : undefined;
    if (!ref) return { what, context: "started outside the chat" };
    const title = titles.get(ref.conversationId);
    return { what, context: title ? `in “${title}”` : "in a deleted conversation" };
  }
  if (fiber.name.startsWith("lab.")) {
    const count = typeof input?.count === "number" ? input.count : undefined;
    const interval = typeof input?.intervalMs === "number" ? input.intervalMs : undefined;
    const parts = [
      count === undefined ? "" : `${count} steps`,
      interval === undefined ? "" : `${interval} ms each`,
    ];
    return { what: parts.filter(Boolean).join(", ") || "lab fiber", context: "crash lab" };
  }
  return { what: oneLine(JSON.stringify(fiber.input) ?? "") };
}

function oneLine(text: string, max = 80): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
