/**
 * The assistant's history, read by reference: a chat fiber's input carries only its user message
 * and `historyRef` (`<conversation>/<turn>`), and the worker reads the earlier turns' messages
 * from the chat's own database (`app/shared/chat-db.ts`) when the agent needs them. Earlier turns
 * no longer change once a later turn exists, so a replay after a crash reads the same messages.
 */

import type { ModelSelection } from "../../src/agent/agent";
import type { ChatMessage } from "../../src/agent/types";
import { historyBefore, openChatDb, parseHistoryRef } from "../shared/chat-db";

/** The messages before the turn `selection.input.historyRef` names (none without a reference). */
export async function readHistory({ input }: ModelSelection): Promise<ChatMessage[]> {
  if (input.historyRef === undefined) return [];
  const ref = parseHistoryRef(input.historyRef);
  if (!ref) throw new TypeError(`"${input.historyRef}" is not a conversation/turn reference.`);
  const conversation = await (await openChatDb()).get("conversations", ref.conversationId);
  const history = conversation && historyBefore(conversation, ref.turnId);
  if (!history) throw new Error("This conversation was deleted, so the assistant cannot read it to reply.");
  return history;
}
