/**
 * The AI SDK chat page's own persistence, as a `useChat` app keeps its messages: the current
 * chat's id and its messages, in IndexedDB (a committed write survives a browser crash, which
 * `localStorage`'s lazily flushed writes do not). Fiberline does not need it to resume a reply
 * (the transport replays the reply from the worker); it keeps the earlier turns on screen.
 */

import type { UIMessage } from "ai";
import { type DBSchema, type IDBPDatabase, openDB } from "idb";

interface SavedChats extends DBSchema {
  chats: { key: string; value: { id: string; messages: UIMessage[] } };
  current: { key: "current"; value: string };
}

let database: Promise<IDBPDatabase<SavedChats>> | undefined;

function open(): Promise<IDBPDatabase<SavedChats>> {
  database ??= openDB<SavedChats>("fiberline-demo-ai-chat", 1, {
    upgrade(db, oldVersion) {
      if (oldVersion < 1) {
        db.createObjectStore("chats", { keyPath: "id" });
        db.createObjectStore("current");
      }
    },
  });
  return database;
}

/** The current chat (a new one on first visit) with its saved messages. */
export async function loadCurrentChat(): Promise<{ id: string; messages: UIMessage[] }> {
  const db = await open();
  const id = (await db.get("current", "current")) ?? (await newChat());
  return { id, messages: (await db.get("chats", id))?.messages ?? [] };
}

/** Starts a new chat and makes it the current one. */
export async function newChat(): Promise<string> {
  const id = newChatId();
  await makeCurrent(id);
  return id;
}

/** A new chat's id. */
export function newChatId(): string {
  return `chat-${crypto.randomUUID()}`;
}

/** Makes chat `id` the one a reload opens. */
export async function makeCurrent(id: string): Promise<void> {
  await (await open()).put("current", id, "current");
}

/** Saves the chat's messages (on every change, so a reload shows the earlier turns). */
export async function saveChat(id: string, messages: readonly UIMessage[]): Promise<void> {
  await (await open()).put("chats", { id, messages: structuredClone([...messages]) });
}
