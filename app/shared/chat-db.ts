/**
 * The chat's IndexedDB database (`fiberline-demo-chat`), shared by the page and the worker (one
 * origin, one database): the page writes conversations and their turns (`app/chat/conversations.ts`),
 * the worker reads a turn's history from here when the assistant needs it
 * (`app/worker/chat-history.ts`), so no fiber input ever carries the conversation.
 */

import { type DBSchema, type IDBPDatabase, openDB } from "idb";
import type { ChatMessage } from "../../src/agent/types";
import type { TurnView } from "../chat/turn-view";

/** One user message and the assistant fiber that answers it. */
export interface Turn {
  id: string;
  /**
   * The assistant fiber's id, chosen before the fiber is started (so a reload in between starts
   * the same fiber). Absent when the start was refused: no fiber exists for the turn then.
   */
  fiberId?: string;
  user: string;
  startedAt: number;
  /**
   * What this turn adds to the conversation, set once it ended: the user's message and the
   * reply's messages (none when the fiber never started, so the model never saw the message).
   */
  messages?: ChatMessage[];
  /** The final view, once the fiber ended (until then the stream is the truth). */
  final?: TurnView;
}

/** A conversation: its turns, oldest first. The history is their messages, in order. */
export interface Conversation {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  turns: Turn[];
}

interface ChatSchema extends DBSchema {
  conversations: { key: string; value: Conversation; indexes: { updatedAt: number } };
}

export type ChatDatabase = IDBPDatabase<ChatSchema>;

let database: Promise<ChatDatabase> | undefined;

/** Opens (and upgrades) the chat database once per context. */
export function openChatDb(): Promise<ChatDatabase> {
  database ??= openDB<ChatSchema>("fiberline-demo-chat", 2, {
    async upgrade(db, oldVersion, _newVersion, transaction) {
      if (oldVersion < 1) {
        const store = db.createObjectStore("conversations", { keyPath: "id" });
        store.createIndex("updatedAt", "updatedAt");
      }
      if (oldVersion >= 1 && oldVersion < 2) {
        let cursor = await transaction.objectStore("conversations").openCursor();
        while (cursor) {
          await cursor.update(fromVersion1(cursor.value as Version1Conversation));
          cursor = await cursor.continue();
        }
      }
    },
    blocking() {
      // Another context upgrades the database: let it, and reopen on the next call.
      void database?.then((db) => db.close());
      database = undefined;
    },
    terminated() {
      database = undefined;
    },
  });
  return database;
}

/** The messages before `turnId`: every earlier turn's messages, in order. */
export function historyBefore(conversation: Conversation, turnId: string): ChatMessage[] | undefined {
  const index = conversation.turns.findIndex((t) => t.id === turnId);
  if (index === -1) return undefined;
  return conversation.turns.slice(0, index).flatMap((t) => t.messages ?? []);
}

/** The reference an assistant fiber's input carries instead of the history (`historyRef`). */
export function historyRef(conversationId: string, turnId: string): string {
  return `${conversationId}/${turnId}`;
}

/** Splits a `historyRef`; undefined for anything else. */
export function parseHistoryRef(ref: string): { conversationId: string; turnId: string } | undefined {
  const [conversationId, turnId, ...rest] = ref.split("/");
  return conversationId && turnId && rest.length === 0 ? { conversationId, turnId } : undefined;
}

/** Version 1 kept the whole history on the conversation and again in every turn's input. */
type Version1Conversation = Omit<Conversation, "turns"> & {
  history?: ChatMessage[];
  turns: Array<Turn & { input?: ChatMessage[] }>;
};

function fromVersion1(old: Version1Conversation): Conversation {
  const { history = [], ...rest } = old;
  const turns = old.turns.map(({ input, ...turn }, i): Turn => {
    if (!turn.final) return turn;
    // What this turn added: the next turn's input (or the conversation's history) past this input.
    const after = old.turns[i + 1]?.input?.slice(0, -1) ?? history;
    const start = (input?.length ?? 1) - 1;
    const messages =
      after.length > start ? after.slice(start) : [{ role: "user" as const, content: turn.user }];
    return { ...turn, messages };
  });
  return { ...rest, turns };
}
