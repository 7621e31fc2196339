/**
 * Where `FiberlineChatTransport` remembers, per chat, which fiber answers its latest message and
 * how far the page has delivered that fiber's stream, so `reconnectToStream` after a reload or a
 * browser crash knows what to resume. IndexedDB in a page (a committed write survives a browser
 * crash; `localStorage` writes are flushed lazily and were lost to SIGKILLs), memory elsewhere.
 */

import { type DBSchema, type IDBPDatabase, openDB } from "idb";

/** What the transport keeps about one chat. */
export interface ChatCursor {
  /** The agent fiber answering the chat's latest message (also the assistant message's id). */
  fiberId: string;
  /** The last `seq` of that fiber's stream the page delivered to the chat (kept at pauses and the end). */
  delivered: number;
  /** True once the page delivered the fiber's end, or stopped it: nothing is left to resume. */
  done: boolean;
}

/** Per-chat cursors. `set` resolves once the cursor is durable. */
export interface ChatCursorStore {
  get(chatId: string): Promise<ChatCursor | undefined>;
  set(chatId: string, cursor: ChatCursor): Promise<void>;
}

/** Cursors in memory: for tests and hosts without IndexedDB. They do not survive a reload. */
export function memoryCursorStore(): ChatCursorStore {
  const cursors = new Map<string, ChatCursor>();
  return {
    get: async (chatId) => {
      const cursor = cursors.get(chatId);
      return cursor && { ...cursor };
    },
    set: async (chatId, cursor) => void cursors.set(chatId, { ...cursor }),
  };
}

interface CursorSchema extends DBSchema {
  cursors: { key: string; value: ChatCursor & { chatId: string } };
}

/**
 * Cursors in the IndexedDB database `name` (default `"fiberline-ai"`), one row per chat. Falls
 * back to memory where there is no IndexedDB.
 */
export function idbCursorStore(name = "fiberline-ai"): ChatCursorStore {
  if (typeof indexedDB === "undefined") return memoryCursorStore();
  let db: Promise<IDBPDatabase<CursorSchema>> | undefined;
  const open = () => {
    db ??= openDB<CursorSchema>(name, 1, {
      upgrade(database, oldVersion) {
        if (oldVersion < 1) database.createObjectStore("cursors", { keyPath: "chatId" });
      },
    });
    return db;
  };
  return {
    async get(chatId) {
      const row = await (await open()).get("cursors", chatId);
      return row && { fiberId: row.fiberId, delivered: row.delivered, done: row.done };
    },
    async set(chatId, cursor) {
      await (await open()).put("cursors", { chatId, ...cursor });
    },
  };
}
