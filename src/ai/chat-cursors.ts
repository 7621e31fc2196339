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
  /**
   * Applies `patch` to the chat's cursor only while it still names `fiberId` (a reply of the
   * chat started since owns it now), atomically; resolves once durable. Optional: without it the
   * transport reads and then writes.
   */
  update?(chatId: string, fiberId: string, patch: Partial<Omit<ChatCursor, "fiberId">>): Promise<void>;
}

/** `store.update`, or a read and a write where the store has none. */
export async function updateCursor(
  store: ChatCursorStore,
  chatId: string,
  fiberId: string,
  patch: Partial<Omit<ChatCursor, "fiberId">>,
): Promise<void> {
  if (store.update) return await store.update(chatId, fiberId, patch);
  const cursor = await store.get(chatId);
  if (cursor?.fiberId === fiberId) await store.set(chatId, { ...cursor, ...patch });
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
    update: async (chatId, fiberId, patch) => {
      const cursor = cursors.get(chatId);
      if (cursor?.fiberId === fiberId) cursors.set(chatId, { ...cursor, ...patch });
    },
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
      if (row === undefined) return undefined;
      const { chatId: _key, ...cursor } = row;
      return cursor;
    },
    async set(chatId, cursor) {
      await (await open()).put("cursors", { chatId, ...cursor });
    },
    async update(chatId, fiberId, patch) {
      const tx = (await open()).transaction("cursors", "readwrite");
      const row = await tx.store.get(chatId);
      if (row?.fiberId === fiberId) await tx.store.put({ ...row, ...patch });
      await tx.done;
    },
  };
}
