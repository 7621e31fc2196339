/**
 * What an agent fiber gets from a `useChat` chat: the chat's messages as the agent's messages,
 * and the fiber id a reply is idempotent by. Used by `FiberlineChatTransport`.
 */

import type { UIMessage } from "ai";
import type { AgentInput } from "../agent/agent";
import type { ChatMessage } from "../agent/types";
import { sha256Hex } from "../core/sha256";
import type { ChatInputRequest } from "./chat-transport";
import { isDiscardedPart } from "./ui-chunks";

/**
 * The chat's messages as the agent's: the text of each user and assistant message, in order, and
 * a user's image files as image parts (tool parts and reasoning stay in the chat; the agent's own
 * journal has the tool calls). Discarded parts are left out.
 */
export function toAgentMessages(messages: readonly UIMessage[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const message of messages) {
    // Not the text of a model step regenerated while the page watched (`isDiscardedPart`): the
    // page keeps it, marked, but the model never said it.
    const text = message.parts
      .flatMap((part) => (part.type === "text" && !isDiscardedPart(part) ? [part.text] : []))
      .join("");
    if (message.role === "user") {
      const images = message.parts.flatMap((part) =>
        part.type === "file" && part.mediaType.startsWith("image/")
          ? [{ type: "image_url" as const, image_url: { url: part.url } }]
          : [],
      );
      out.push({
        role: "user",
        content: images.length === 0 ? text : [...(text ? [{ type: "text" as const, text }] : []), ...images],
      });
    } else if (message.role === "assistant" && text !== "") out.push({ role: "assistant", content: text });
  }
  return out;
}

export function defaultInput({ messages }: ChatInputRequest<UIMessage>): AgentInput {
  return { messages: toAgentMessages(messages) };
}

const ID_PATTERN = /^[A-Za-z0-9_.:@/-]{1,200}$/;

/**
 * The fiber id of a reply: `ai/<parts joined by />` when that is a valid fiber id and no part but
 * the last holds a `/` (so two lists of parts never join alike; the last may be a fiber id a
 * regenerated reply chains on), else `ai/` and a SHA-256 of the parts.
 */
export async function fiberIdFor(parts: readonly string[]): Promise<string> {
  const id = `ai/${parts.join("/")}`;
  if (ID_PATTERN.test(id) && !parts.slice(0, -1).some((part) => part.includes("/"))) return id;
  return `ai/${await sha256Hex(JSON.stringify(parts))}`;
}
