/**
 * The chat: the conversation list (a drawer on phones), the selected conversation's turns, and
 * the composer. Each turn is one assistant fiber started with its user message and a reference
 * to the history, which the worker reads from the chat's database.
 */

import { type ReactNode, useCallback, useEffect, useRef, useState } from "react";
import { type DemoClient, useClient } from "../client";
import { navigate } from "../router";
import { formatAge } from "../ui/format";
import { Skeleton } from "../ui/skeleton";
import { usePoll } from "../ui/use-poll";
import { Composer } from "./composer";
import {
  addTurn,
  type Conversation,
  deleteConversation,
  finishTurn,
  listConversations,
  onConversationsChanged,
  retryTurn,
  type Turn,
} from "./conversations";
import { AssistantMessage, UserMessage } from "./message";
import { errorCode } from "./turn-failures";
import { emptyTurn } from "./turn-view";
import { useTurn } from "./use-turn";

const SUGGESTIONS = [
  "Explain durable execution in two sentences",
  "What is (17 + 4) * 12?",
  "What time is it?",
  "Please delete notes.txt",
  "Show me some hostile markdown",
];

function useConversations(): { conversations: Conversation[] | null; error: string | null } {
  const [conversations, setConversations] = useState<Conversation[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const load = () =>
      listConversations().then(
        (all) => live && setConversations(all),
        (e: unknown) => live && setError(e instanceof Error ? e.message : String(e)),
      );
    void load();
    const off = onConversationsChanged(load);
    return () => {
      live = false;
      off();
    };
  }, []);
  return { conversations, error };
}

/**
 * The assistant fibers that have not ended, polled: a turn is only frozen by the page that shows
 * it, so a reply that ended while its conversation was closed still looks open in the list.
 */
function useLiveFibers(client: DemoClient, watching: boolean): ReadonlySet<string> | undefined {
  const { data } = usePoll(
    () =>
      client
        .list({ name: "assistant", status: ["running", "sleeping", "waiting"] })
        .then((fibers) => new Set(fibers.map((f) => f.id))),
    2_000,
    [client],
    watching,
  );
  return data;
}

function TurnBlock({
  conversationId,
  turn,
  last,
}: {
  conversationId: string;
  turn: Turn;
  /** The conversation's last turn: the one "Ask again" may retry. */
  last: boolean;
}): ReactNode {
  const state = useTurn(conversationId, turn);
  const retry = last && turn.final?.outcome === "failed";
  return (
    <>
      <UserMessage text={turn.user} />
      <AssistantMessage
        turn={turn}
        state={state}
        {...(retry ? { onRetry: () => void retryTurn(conversationId, turn.id) } : {})}
      />
    </>
  );
}

function ConversationList({
  conversations,
  selected,
  liveFibers,
  onPick,
}: {
  conversations: Conversation[];
  selected: string | undefined;
  /** Fibers known not to have ended; until known, an open turn counts as running. */
  liveFibers: ReadonlySet<string> | undefined;
  onPick: () => void;
}): ReactNode {
  if (conversations.length === 0)
    return <p className="empty-small">No conversations yet. Your first message starts one.</p>;
  return (
    <ul className="conversation-list">
      {conversations.map((c) => {
        const running = c.turns.some(
          (t) => !t.final && (!liveFibers || !t.fiberId || c.id === selected || liveFibers.has(t.fiberId)),
        );
        return (
          <li key={c.id}>
            <a
              href={`#/chat/${c.id}`}
              className={`conversation-link${c.id === selected ? " active" : ""}`}
              aria-current={c.id === selected ? "page" : undefined}
              onClick={onPick}
              data-testid="conversation-link"
            >
              <span className="conversation-title">{c.title}</span>
              <span className="conversation-meta">
                {running && <span className="dot live" title="A reply is running" />}
                {c.turns.length} {c.turns.length === 1 ? "turn" : "turns"} · {formatAge(c.updatedAt)}
              </span>
            </a>
          </li>
        );
      })}
    </ul>
  );
}

function Welcome({ onPick }: { onPick: (text: string) => void }): ReactNode {
  return (
    <div className="welcome">
      <h2>Chat with an agent that survives crashes</h2>
      <p>
        Every reply runs as a <strong>fiber</strong> inside this app's Service Worker, with its steps and its
        stream in IndexedDB. Reload, close the tab or kill the browser mid-reply: when you come back, the
        reply continues where it was, with no word repeated.
      </p>
      <p className="muted">
        The default model is a deterministic mock served by the demo's own server: no account needed.
      </p>
      <fieldset className="suggestions">
        <legend className="sr-only">Try one of these</legend>
        {SUGGESTIONS.map((s) => (
          <button type="button" key={s} className="chip" onClick={() => onPick(s)}>
            {s}
          </button>
        ))}
      </fieldset>
    </div>
  );
}

export function ChatPage({ conversationId }: { conversationId: string | undefined }): ReactNode {
  const client = useClient();
  const { conversations, error } = useConversations();
  const [drawer, setDrawer] = useState(false);
  const inputRef = useRef<HTMLTextAreaElement>(null);
  const scroller = useRef<HTMLDivElement>(null);
  const sidebar = useRef<HTMLElement>(null);
  const drawerToggle = useRef<HTMLButtonElement>(null);
  const conversation = conversations?.find((c) => c.id === conversationId);
  const lastTurn = conversation?.turns[conversation.turns.length - 1];
  const live = lastTurn !== undefined && lastTurn.final === undefined;
  const openTurns = conversations?.some((c) => c.turns.some((t) => !t.final)) ?? false;
  const liveFibers = useLiveFibers(client, openTurns);

  const send = useCallback(
    async (text: string) => {
      const { conversation: next } = await addTurn(conversationId, text);
      if (next.id !== conversationId) navigate({ page: "chat", conversationId: next.id });
    },
    [conversationId],
  );
  const stop = useCallback(async () => {
    if (!conversation || !lastTurn?.fiberId) return;
    try {
      await client.cancel(lastTurn.fiberId, "Stopped by the user.");
    } catch (error) {
      if (errorCode(error) !== "fiber_not_found") throw error;
      // Stopped before its fiber was started: nothing ran, and nothing will.
      const final = { ...emptyTurn(), outcome: "cancelled" as const, neverStarted: true };
      await finishTurn(conversation.id, lastTurn.id, { final, messages: [], noFiber: true });
    }
  }, [client, conversation, lastTurn]);
  const remove = useCallback(async () => {
    if (!conversation) return;
    const running = live ? " Its running reply is stopped." : "";
    if (!window.confirm(`Delete “${conversation.title}”?${running} Its fibers stay in the inspector.`))
      return;
    // Stop the reply first, so no fiber goes on answering a conversation that is gone.
    if (live && lastTurn?.fiberId)
      await client.cancel(lastTurn.fiberId, "The conversation was deleted.").catch(() => undefined);
    await deleteConversation(conversation.id);
    navigate({ page: "chat" });
  }, [client, conversation, lastTurn, live]);

  // The phone drawer is modal: Escape closes it, focus goes into it and back to its toggle.
  useEffect(() => {
    if (!drawer) return;
    sidebar.current?.querySelector<HTMLElement>("button, a[href]")?.focus();
    const onKey = (event: KeyboardEvent) => {
      if (event.key === "Escape") setDrawer(false);
    };
    document.addEventListener("keydown", onKey);
    // Widened past the phone layout, the drawer is gone: do not leave the chat inert behind it.
    const phone = window.matchMedia("(max-width: 800px)");
    const onResize = () => !phone.matches && setDrawer(false);
    phone.addEventListener("change", onResize);
    return () => {
      document.removeEventListener("keydown", onKey);
      phone.removeEventListener("change", onResize);
      // Back to the toggle unless the drawer closed by moving on (a link, "+ New").
      if (
        !document.activeElement ||
        document.activeElement === document.body ||
        sidebar.current?.contains(document.activeElement)
      )
        drawerToggle.current?.focus();
    };
  }, [drawer]);

  // Follow the reply while the reader is at the bottom; a new conversation opens at its top.
  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    let pinned = conversationId !== undefined;
    const onScroll = () => {
      pinned = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    };
    const observer = new MutationObserver(() => {
      if (pinned) el.scrollTop = el.scrollHeight;
    });
    observer.observe(el, { childList: true, subtree: true, characterData: true });
    el.addEventListener("scroll", onScroll);
    el.scrollTop = pinned ? el.scrollHeight : 0;
    return () => {
      observer.disconnect();
      el.removeEventListener("scroll", onScroll);
    };
  }, [conversationId]);

  const unknown = conversationId !== undefined && conversations !== null && !conversation;

  return (
    <div className={`chat-layout${drawer ? " drawer-open" : ""}`}>
      <aside className="sidebar" id="conversations" aria-label="Conversations" ref={sidebar}>
        <div className="sidebar-head">
          <h2>Conversations</h2>
          <button
            type="button"
            className="button small primary"
            onClick={() => {
              setDrawer(false);
              navigate({ page: "chat" });
              // After the drawer closed: the composer cannot take focus while the drawer is open.
              requestAnimationFrame(() => inputRef.current?.focus());
            }}
          >
            + New
          </button>
          <button
            type="button"
            className="button small ghost drawer-close"
            aria-label="Close the conversation list"
            onClick={() => setDrawer(false)}
          >
            ✕
          </button>
        </div>
        {error ? (
          <p className="form-error">Could not read conversations: {error}</p>
        ) : conversations === null ? (
          <Skeleton label="Loading conversations" />
        ) : (
          <ConversationList
            conversations={conversations}
            selected={conversationId}
            liveFibers={liveFibers}
            onPick={() => setDrawer(false)}
          />
        )}
      </aside>
      {drawer && (
        // A real scrim: it takes the taps meant for what it covers and closes the drawer.
        <button
          type="button"
          className="drawer-scrim"
          tabIndex={-1}
          aria-label="Close the conversation list"
          data-testid="drawer-scrim"
          onClick={() => setDrawer(false)}
        />
      )}
      <section className="chat-main" aria-label="Conversation" inert={drawer}>
        <div className="chat-toolbar">
          <button
            type="button"
            className="button small ghost drawer-toggle"
            ref={drawerToggle}
            aria-expanded={drawer}
            aria-controls="conversations"
            onClick={() => setDrawer((d) => !d)}
          >
            ☰ Conversations
          </button>
          <h2 className="chat-title">{conversation?.title ?? "New conversation"}</h2>
          {conversation && (
            <button type="button" className="button small ghost" onClick={() => void remove()}>
              Delete
            </button>
          )}
        </div>
        <div className="messages" ref={scroller} aria-live="polite" aria-relevant="additions">
          {unknown ? (
            <div className="empty">
              <h2>Conversation not found</h2>
              <p>It may have been deleted in another tab.</p>
              <a className="button" href="#/chat">
                Start a new one
              </a>
            </div>
          ) : conversation ? (
            conversation.turns.map((turn, i) => (
              // Keyed by fiber: "Ask again" gives the turn a new fiber, and a new follower.
              <TurnBlock
                key={turn.fiberId ?? turn.id}
                conversationId={conversation.id}
                turn={turn}
                last={i === conversation.turns.length - 1}
              />
            ))
          ) : (
            <Welcome onPick={(text) => void send(text)} />
          )}
        </div>
        <Composer
          conversationId={conversationId}
          live={live}
          onSend={send}
          onStop={stop}
          inputRef={inputRef}
        />
      </section>
    </div>
  );
}
