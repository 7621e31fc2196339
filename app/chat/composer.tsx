/**
 * The message box: Enter sends, Shift+Enter adds a line; while a reply runs, Stop cancels its
 * fiber (closing the tab does not: the reply keeps running in the Service Worker).
 */

import {
  type FormEvent,
  type KeyboardEvent,
  type ReactNode,
  type RefObject,
  useEffect,
  useState,
} from "react";

export function Composer({
  conversationId,
  live,
  onSend,
  onStop,
  inputRef,
}: {
  /** The conversation it writes to: a problem shown for one is cleared when another opens. */
  conversationId: string | undefined;
  live: boolean;
  onSend: (text: string) => Promise<void>;
  onStop: () => Promise<void>;
  inputRef: RefObject<HTMLTextAreaElement | null>;
}): ReactNode {
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [stopping, setStopping] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const canSend = !live && !busy && text.trim() !== "";
  // biome-ignore lint/correctness/useExhaustiveDependencies: the conversation is the trigger, not an input.
  useEffect(() => setProblem(null), [conversationId]);

  const send = async (event?: FormEvent) => {
    event?.preventDefault();
    if (!canSend) return;
    setBusy(true);
    setProblem(null);
    try {
      await onSend(text.trim());
      setText("");
    } catch (error) {
      setProblem(error instanceof Error ? error.message : String(error));
    } finally {
      setBusy(false);
      inputRef.current?.focus();
    }
  };
  const stop = async () => {
    setStopping(true);
    setProblem(null);
    try {
      await onStop();
    } catch (error) {
      setProblem(error instanceof Error ? error.message : String(error));
    } finally {
      setStopping(false);
    }
  };
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      void send();
    }
  };

  return (
    <form className="composer" onSubmit={send} aria-label="Send a message">
      <label htmlFor="composer-input" className="sr-only">
        Message
      </label>
      <textarea
        id="composer-input"
        ref={inputRef}
        data-testid="composer-input"
        rows={1}
        value={text}
        placeholder={live ? "The assistant is replying…" : "Ask something, e.g. “what is 12 * 7?”"}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKeyDown}
        aria-describedby="composer-hint"
      />
      {live ? (
        <button
          type="button"
          className="button danger"
          data-testid="composer-stop"
          onClick={stop}
          disabled={stopping}
        >
          <span aria-hidden="true">■</span> {stopping ? "Stopping…" : "Stop"}
        </button>
      ) : (
        <button type="submit" className="button primary" data-testid="composer-send" disabled={!canSend}>
          {busy ? "Sending…" : "Send"}
        </button>
      )}
      <p id="composer-hint" className="composer-hint">
        {problem ? (
          <span className="form-error" role="alert">
            {problem}
          </span>
        ) : (
          "Enter to send, Shift+Enter for a new line. Stop cancels the reply; closing the tab does not."
        )}
      </p>
    </form>
  );
}
