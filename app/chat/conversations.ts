/**
 * The page's conversation list, kept in IndexedDB (`fiberline-demo-chat`, see
 * `app/shared/chat-db.ts`). Each turn is one assistant fiber, written here before the fiber is
 * started (so a reload in between starts the same fiber id), then frozen with its final view and
 * the messages it adds to the history once the fiber ended, or once its start was refused.
 */

import type { ChatMessage } from "../../src/agent/types";
import { type Conversation, openChatDb as open, type Turn } from "../shared/chat-db";
import type { TurnView } from "./turn-view";

export type { Conversation, Turn };

const listeners = new Set<() => void>();
const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("fiberline-demo-chat") : null;
channel?.addEventListener("message", () => {
  for (const listener of listeners) listener();
});

function changed(): void {
  for (const listener of listeners) listener();
  channel?.postMessage("changed");
}

/** Calls `listener` whenever any conversation changes, in this tab or another. */
export function onConversationsChanged(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** All conversations, most recently active first. */
export async function listConversations(): Promise<Conversation[]> {
  const all = await (await open()).getAll("conversations");
  return all.sort((a, b) => b.updatedAt - a.updatedAt);
}

export async function getConversation(id: string): Promise<Conversation | undefined> {
  return (await open()).get("conversations", id);
}

/** A title from the first user message. */
export function titleFor(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 48 ? `${flat.slice(0, 47)}…` : flat || "New conversation";
}

/** Creates a conversation, or appends a turn to one, in one transaction; returns the turn. */
export async function addTurn(
  conversationId: string | undefined,
  user: string,
): Promise<{ conversation: Conversation; turn: Turn }> {
  const db = await open();
  const tx = db.transaction("conversations", "readwrite");
  const now = Date.now();
  const existing = conversationId ? await tx.store.get(conversationId) : undefined;
  if (existing?.turns.some((t) => !t.final)) {
    await tx.done;
    throw new Error("A reply is still running in this conversation. Wait for it, or stop it first.");
  }
  const conversation: Conversation = existing ?? {
    id: crypto.randomUUID(),
    title: titleFor(user),
    createdAt: now,
    updatedAt: now,
    turns: [],
  };
  const id = crypto.randomUUID();
  const turn: Turn = { id, fiberId: `chat-${id}`, user, startedAt: now };
  const next = { ...conversation, updatedAt: now, turns: [...conversation.turns, turn] };
  await tx.store.put(next);
  await tx.done;
  changed();
  return { conversation: next, turn };
}

/** How a turn ended, as `finishTurn` records it. */
export interface TurnEnding {
  final: TurnView;
  /** What the turn adds to the history the next turns are answered with. */
  messages: ChatMessage[];
  /** Set when no fiber exists for the turn (its start was refused): the turn forgets the id. */
  noFiber?: boolean;
}

/** Freezes a turn with its final view and the messages it adds to the history (once). */
export async function finishTurn(conversationId: string, turnId: string, ending: TurnEnding): Promise<void> {
  const db = await open();
  const tx = db.transaction("conversations", "readwrite");
  const conversation = await tx.store.get(conversationId);
  const turn = conversation?.turns.find((t) => t.id === turnId);
  if (!conversation || !turn || turn.final) {
    await tx.done;
    return;
  }
  const turns = conversation.turns.map((t): Turn => {
    if (t.id !== turnId) return t;
    const { fiberId, ...rest } = t;
    return {
      ...rest,
      ...(ending.noFiber ? {} : { fiberId }),
      final: ending.final,
      messages: ending.messages,
    };
  });
  await tx.store.put({ ...conversation, turns, updatedAt: Date.now() });
  await tx.done;
  changed();
}

/**
 * Asks the last turn again when it failed: the turn gets a new fiber id and no outcome, so the
 * page starts a new fiber for it with the same history (the failed fiber stays in the inspector).
 */
export async function retryTurn(conversationId: string, turnId: string): Promise<void> {
  const db = await open();
  const tx = db.transaction("conversations", "readwrite");
  const conversation = await tx.store.get(conversationId);
  const last = conversation?.turns[conversation.turns.length - 1];
  if (!conversation || last?.id !== turnId || last.final?.outcome !== "failed") {
    await tx.done;
    return;
  }
  const id = crypto.randomUUID();
  const now = Date.now();
  const again: Turn = { id: last.id, fiberId: `chat-${id}`, user: last.user, startedAt: now };
  await tx.store.put({ ...conversation, turns: [...conversation.turns.slice(0, -1), again], updatedAt: now });
  await tx.done;
  changed();
}

/** Whether `turnId` of `conversationId` still waits for its outcome (read from the store). */
export async function turnIsOpen(conversationId: string, turnId: string): Promise<boolean> {
  const conversation = await (await open()).get("conversations", conversationId);
  const turn = conversation?.turns.find((t) => t.id === turnId);
  return turn !== undefined && turn.final === undefined;
}

export async function deleteConversation(id: string): Promise<void> {
  await (await open()).delete("conversations", id);
  changed();
}
