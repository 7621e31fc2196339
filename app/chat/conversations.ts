/**
 * The page's conversation list, kept in the page's IndexedDB (`fiberline-demo-chat`). A
 * conversation holds the message history the next turn is started with, and its turns: each turn
 * is one assistant fiber, written here before the fiber is started (so a reload in between
 * restarts the same fiber id) and frozen with its final view once the fiber ended.
 */

import { type DBSchema, type IDBPDatabase, openDB } from "idb";
import type { ChatMessage } from "../../src/agent/types";
import type { TurnView } from "./turn-view";

/** One user message and the assistant fiber that answers it. */
export interface Turn {
  id: string;
  /** The assistant fiber's id. */
  fiberId: string;
  user: string;
  startedAt: number;
  /** The messages the fiber was started with. */
  input: ChatMessage[];
  /** The final view, once the fiber ended (until then the stream is the truth). */
  final?: TurnView;
}

/** A conversation. */
export interface Conversation {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  /** What the next turn is started with (before its user message). */
  history: ChatMessage[];
  turns: Turn[];
}

interface ChatSchema extends DBSchema {
  conversations: { key: string; value: Conversation; indexes: { updatedAt: number } };
}

let database: Promise<IDBPDatabase<ChatSchema>> | undefined;

function open(): Promise<IDBPDatabase<ChatSchema>> {
  database ??= openDB<ChatSchema>("fiberline-demo-chat", 1, {
    upgrade(db, oldVersion) {
      if (oldVersion < 1) {
        const store = db.createObjectStore("conversations", { keyPath: "id" });
        store.createIndex("updatedAt", "updatedAt");
      }
    },
    terminated() {
      database = undefined;
    },
  });
  return database;
}

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
  const conversation: Conversation = existing ?? {
    id: crypto.randomUUID(),
    title: titleFor(user),
    createdAt: now,
    updatedAt: now,
    history: [],
    turns: [],
  };
  const id = crypto.randomUUID();
  const turn: Turn = {
    id,
    fiberId: `chat-${id}`,
    user,
    startedAt: now,
    input: [...conversation.history, { role: "user", content: user }],
  };
  const next = { ...conversation, updatedAt: now, turns: [...conversation.turns, turn] };
  await tx.store.put(next);
  await tx.done;
  changed();
  return { conversation: next, turn };
}

/** Freezes a turn with its final view and sets the history the next turn starts from. */
export async function finishTurn(
  conversationId: string,
  turnId: string,
  final: TurnView,
  history: ChatMessage[],
): Promise<void> {
  const db = await open();
  const tx = db.transaction("conversations", "readwrite");
  const conversation = await tx.store.get(conversationId);
  const turn = conversation?.turns.find((t) => t.id === turnId);
  if (!conversation || !turn || turn.final) {
    await tx.done;
    return;
  }
  const turns = conversation.turns.map((t) => (t.id === turnId ? { ...t, final } : t));
  await tx.store.put({ ...conversation, turns, history, updatedAt: Date.now() });
  await tx.done;
  changed();
}

export async function deleteConversation(id: string): Promise<void> {
  await (await open()).delete("conversations", id);
  changed();
}
