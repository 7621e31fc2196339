/**
 * Where `FiberlineChatTransport` remembers, per chat, which fiber answers its latest message and
 * how far the page has delivered that fiber's stream, so `reconnectToStream` after a reload or a
 * browser crash knows what to resume. `localStorage` in a page (it survives both), memory
 * elsewhere.
 */

/** What the transport keeps about one chat. */
export interface ChatCursor {
  /** The agent fiber answering the chat's latest message (also the assistant message's id). */
  fiberId: string;
  /** The last `seq` of that fiber's stream the page delivered to the chat. */
  delivered: number;
  /** True once the page delivered the fiber's end, or stopped it: nothing is left to resume. */
  done: boolean;
}

/** Per-chat cursors, read and written synchronously. */
export interface ChatCursorStore {
  get(chatId: string): ChatCursor | undefined;
  set(chatId: string, cursor: ChatCursor): void;
}

/** Cursors in memory: for tests and hosts without `localStorage`. They do not survive a reload. */
export function memoryCursorStore(): ChatCursorStore {
  const cursors = new Map<string, ChatCursor>();
  return {
    get: (chatId) => {
      const cursor = cursors.get(chatId);
      return cursor && { ...cursor };
    },
    set: (chatId, cursor) => void cursors.set(chatId, { ...cursor }),
  };
}

/**
 * Cursors in `localStorage` under `<prefix><chatId>`: they survive a reload and a browser crash
 * (sessionStorage would not survive the crash). Falls back to memory where there is none.
 */
export function localCursorStore(prefix = "fiberline-ai/chat/"): ChatCursorStore {
  const storage = typeof localStorage === "undefined" ? undefined : localStorage;
  if (storage === undefined) return memoryCursorStore();
  return {
    get: (chatId) => {
      try {
        return parseCursor(storage.getItem(prefix + chatId));
      } catch {
        return undefined; // Storage blocked (some privacy modes): behave as if nothing was kept.
      }
    },
    set: (chatId, cursor) => {
      try {
        storage.setItem(prefix + chatId, JSON.stringify(cursor));
      } catch {
        // Quota or blocked storage: resuming after a reload is lost, the live stream is not.
      }
    },
  };
}

function parseCursor(text: string | null): ChatCursor | undefined {
  if (text === null) return undefined;
  const value = JSON.parse(text) as Partial<ChatCursor> | null;
  if (typeof value?.fiberId !== "string" || typeof value.delivered !== "number") return undefined;
  return { fiberId: value.fiberId, delivered: value.delivered, done: value.done === true };
}
