/**
 * The demo's second chat, built the way an existing Vercel AI SDK app is: `useChat` from
 * `@ai-sdk/react` with `FiberlineChatTransport` instead of the default HTTP transport. Same worker,
 * same `assistant` agent as the hand-written chat; a reload or a browser crash mid-reply resumes
 * the reply in place (`resume: true`). The messages are kept in IndexedDB, as such apps keep them.
 */

import { useChat } from "@ai-sdk/react";
import { lastAssistantMessageIsCompleteWithApprovalResponses, type UIMessage } from "ai";
import { type FormEvent, type ReactNode, useEffect, useMemo, useState } from "react";
import { type ChatFiberClient, FiberlineChatTransport, isDiscardedPart } from "../../src/ai/index";
import { useFiberlineClient } from "../../src/react/index";
import { loadCurrentChat, makeCurrent, newChatId, saveChat } from "./saved-chat";
import "./ai-chat.css";

/** The page: one chat, kept across reloads and crashes until "New chat". */
export function AiChatPage(): ReactNode {
  const client = useFiberlineClient();
  const [chat, setChat] = useState<{ id: string; messages: UIMessage[] }>();
  useEffect(() => {
    loadCurrentChat().then(setChat, () => setChat({ id: `chat-${crypto.randomUUID()}`, messages: [] }));
  }, []);
  // The new chat is shown at once: switched only once its id was saved, a message typed and sent
  // meanwhile went to the chat being left (and its reply ran on out of sight).
  const startNew = () => {
    const id = newChatId();
    setChat({ id, messages: [] });
    makeCurrent(id).catch((error: unknown) => console.error("[demo] saving the new chat as current:", error));
  };
  if (client === null || chat === undefined) return <p className="muted">Opening the chat…</p>;
  return (
    <AiChat key={chat.id} client={client} chatId={chat.id} initial={chat.messages} onNewChat={startNew} />
  );
}

interface AiChatProps {
  client: ChatFiberClient;
  chatId: string;
  initial: UIMessage[];
  onNewChat: () => void;
}

function AiChat({ client, chatId, initial, onNewChat }: AiChatProps): ReactNode {
  const transport = useMemo(() => new FiberlineChatTransport({ agent: "assistant", client }), [client]);
  // The agent's message.retry chunks reach useChat as transient data parts (onData), also when a
  // reload replays the reply: the last one says which attempt comes next and when.
  const [retry, setRetry] = useState<RetryNote>();
  const { messages, sendMessage, status, error, stop, addToolApprovalResponse } = useChat({
    id: chatId,
    messages: initial,
    transport,
    resume: true,
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    onData: (part) => {
      if (part.type === "data-message.retry") setRetry(part.data as RetryNote);
    },
  });
  useEffect(() => void saveChat(chatId, messages).catch(() => {}), [chatId, messages]);
  const [draft, setDraft] = useState("");
  const busy = status === "submitted" || status === "streaming";

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const text = draft.trim();
    if (text === "" || busy) return;
    setDraft("");
    void sendMessage({ text });
  };

  return (
    <section className="ai-chat" aria-label="AI SDK chat" data-testid="ai-chat" data-status={status}>
      <header className="ai-chat-header">
        <h1>AI SDK chat</h1>
        <p className="muted small">
          <code>useChat</code> from <code>@ai-sdk/react</code> with <code>FiberlineChatTransport</code>: the
          same assistant as the Chat tab, in a few lines of an ordinary AI SDK app.
        </p>
        <button type="button" className="button" onClick={onNewChat} disabled={busy}>
          New chat
        </button>
      </header>
      <ol className="ai-messages" aria-label="Messages" aria-live="polite" aria-relevant="additions">
        {messages.map((message, index) => (
          <Message
            key={message.id}
            message={message}
            streaming={status === "streaming" && index === messages.length - 1}
            onApproval={addToolApprovalResponse}
          />
        ))}
      </ol>
      {busy && retry && <RetryStatus key={retry.retryAt} retry={retry} />}
      {error && (
        <p role="alert" className="error" data-testid="ai-error">
          {error.message}
        </p>
      )}
      <form className="composer" onSubmit={submit}>
        <input
          aria-label="Message"
          data-testid="ai-input"
          value={draft}
          onChange={(event) => setDraft(event.target.value)}
          placeholder="Ask something, e.g. What is 12 * 7?"
        />
        {busy ? (
          <button type="button" className="button" data-testid="ai-stop" onClick={() => void stop()}>
            Stop
          </button>
        ) : (
          <button type="submit" className="button primary" data-testid="ai-send">
            Send
          </button>
        )}
      </form>
    </section>
  );
}

/** The data of the agent's `message.retry` chunk, as far as the page shows it. */
interface RetryNote {
  attempt: number;
  maxAttempts: number;
  retryAt: number;
  error?: { message?: string };
}

/** "Attempt 2 of 5, next in 4 s", counting down; gone once the wait is over. */
function RetryStatus({ retry }: { retry: RetryNote }): ReactNode {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 1_000);
    return () => clearInterval(timer);
  }, []);
  if (now >= retry.retryAt) return null;
  return (
    <p role="status" className="muted" data-testid="ai-retry">
      The model did not answer. Attempt {retry.attempt} of {retry.maxAttempts}, next in{" "}
      {Math.ceil((retry.retryAt - now) / 1000)} s…{" "}
      {retry.error?.message && <span>({retry.error.message})</span>}
    </p>
  );
}

type Approve = (response: { id: string; approved: boolean; reason?: string }) => void | PromiseLike<void>;

interface MessageProps {
  message: UIMessage;
  /** The reply still streaming in: screen readers wait for it before reading it out. */
  streaming: boolean;
  onApproval: Approve;
}

function Message({ message, streaming, onApproval }: MessageProps): ReactNode {
  // Parts of a model call regenerated after a cut, while this page watched: not part of the reply.
  const parts = message.parts.filter((part) => !isDiscardedPart(part));
  return (
    <li
      className={`ai-message ${message.role}`}
      data-testid="ai-message"
      data-role={message.role}
      data-id={message.id}
      // Who speaks, as the hand-written chat says it; the bubbles' sides only show it.
      aria-label={message.role === "user" ? "You said" : "Assistant"}
      aria-busy={streaming}
    >
      {parts.map((part, index) => {
        const key = `${message.id}-${index}`;
        if (part.type === "text")
          return (
            <p key={key} data-testid="ai-text">
              {part.text}
            </p>
          );
        if (part.type === "reasoning")
          return (
            <details key={key} className="ai-reasoning">
              <summary>Reasoning</summary>
              <p>{part.text}</p>
            </details>
          );
        if (part.type.startsWith("tool-") && "toolCallId" in part)
          return <ToolPart key={key} part={part} onApproval={onApproval} />;
        return null;
      })}
    </li>
  );
}

interface ToolPartView {
  type: string;
  toolCallId: string;
  state: string;
  input?: unknown;
  output?: unknown;
  errorText?: string;
  approval?: { id: string };
}

function ToolPart({ part, onApproval }: { part: ToolPartView; onApproval: Approve }): ReactNode {
  const name = part.type.slice("tool-".length);
  return (
    <div className="ai-tool" data-testid="ai-tool" data-tool={name} data-state={part.state}>
      <strong>{name}</strong> <code>{JSON.stringify(part.input)}</code>
      {part.state === "output-available" && (
        <pre data-testid="ai-tool-output">{JSON.stringify(part.output)}</pre>
      )}
      {part.state === "output-error" && <p className="error">{part.errorText}</p>}
      {part.state === "output-denied" && <p className="muted">Denied.</p>}
      {part.state === "approval-requested" && part.approval && (
        <span className="ai-approval">
          <button
            type="button"
            className="button primary"
            data-testid="ai-approve"
            onClick={() => void onApproval({ id: part.approval?.id ?? "", approved: true })}
          >
            Approve
          </button>
          <button
            type="button"
            className="button"
            data-testid="ai-deny"
            onClick={() =>
              void onApproval({ id: part.approval?.id ?? "", approved: false, reason: "Denied in the demo." })
            }
          >
            Deny
          </button>
        </span>
      )}
    </div>
  );
}
