/**
 * The chat's messages: the user's, and the assistant's reply for one turn (text segments as safe
 * Markdown, tool cards, the "resumed" marker, the outcome). Test hooks: `data-testid="message"`
 * with `data-role` and `data-status`.
 */

import type { ReactNode } from "react";
import type { Turn } from "./conversations";
import { SafeMarkdown } from "./markdown";
import { ModelProgress } from "./model-progress";
import { ToolCard } from "./tool-card";
import type { Segment } from "./turn-view";
import type { TurnState } from "./use-turn";

/** How long after a recovery the marker is highlighted. */
const FRESH_MS = 8_000;

export function UserMessage({ text }: { text: string }): ReactNode {
  return (
    <article
      className="message message-user"
      data-testid="message"
      data-role="user"
      data-status="done"
      aria-label="You said"
    >
      <div className="bubble">{text}</div>
    </article>
  );
}

function ResumedMarker({ state }: { state: TurnState }): ReactNode {
  const recovery = state.view.recoveries[state.view.recoveries.length - 1];
  const at = recovery?.at ?? state.view.reattachedAt ?? state.reattachedAt;
  if (at === undefined) return null;
  const fresh = Date.now() - at < FRESH_MS;
  const text = recovery
    ? `Resumed after the worker stopped${recovery.count > 1 ? ` (×${recovery.count})` : ""}`
    : "Resumed: reconnected to the running reply";
  return (
    <span
      className={`resumed-marker${fresh ? " fresh" : ""}`}
      data-testid="resumed-marker"
      data-reason={recovery ? "recovered" : "reattached"}
      role="status"
      title={
        recovery
          ? "The Service Worker stopped mid-reply; the fiber was recovered from its journal and continued."
          : "The page reloaded mid-reply; the reply kept running in the Service Worker and this page caught up from the durable stream."
      }
    >
      <span aria-hidden="true">↻</span> {text}
    </span>
  );
}

/**
 * Each segment with a key that stays put while the reply streams: text and reasoning by their
 * model call and how many of their kind came before in it (a model call may alternate them),
 * tool cards by their call.
 */
function keyed(segments: readonly Segment[]): Array<{ segment: Segment; key: string; isLast: boolean }> {
  const seen = new Map<string, number>();
  return segments.map((segment, position) => {
    let key: string;
    if (segment.kind === "tool") key = `c-${segment.messageId}#${segment.index}:${segment.toolCallId}`;
    else {
      const base = `${segment.kind}-${segment.messageId}`;
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      key = `${base}-${n}`;
    }
    return { segment, key, isLast: position === segments.length - 1 };
  });
}

export function AssistantMessage({
  turn,
  state,
  onRetry,
}: {
  turn: Turn;
  state: TurnState;
  onRetry?: () => void;
}): ReactNode {
  const { view } = state;
  const status = view.outcome === undefined ? "streaming" : view.outcome === "failed" ? "error" : "done";
  const awaiting = view.segments.some((s) => s.kind === "tool" && s.status === "awaiting-approval");
  const last = view.segments[view.segments.length - 1];
  // Waiting for the model: nothing yet, tool results sent back, or a retry after partial text.
  const thinking =
    status === "streaming" &&
    !awaiting &&
    (last === undefined || last.kind === "tool" || view.retry !== undefined);
  return (
    <article
      className={`message message-assistant status-${status}`}
      data-testid="message"
      data-role="assistant"
      data-status={status}
      data-outcome={view.outcome ?? "running"}
      data-fiber-id={turn.fiberId}
      aria-busy={status === "streaming"}
    >
      <header className="message-head">
        <h3 className="message-author">Assistant</h3>
        {view.model && <span className="muted small">{view.model}</span>}
        <ResumedMarker state={state} />
      </header>
      <div className="message-body">
        {keyed(view.segments).map(({ segment, key, isLast }) =>
          segment.kind === "reasoning" ? (
            <details className="reasoning" key={key} data-testid="reasoning">
              <summary>
                {status === "streaming" && isLast ? "Reasoning…" : "Reasoning"}{" "}
                <span className="muted small">{segment.text.length.toLocaleString()} characters</span>
              </summary>
              <p className="reasoning-text">{segment.text}</p>
            </details>
          ) : segment.kind === "text" ? (
            <div
              // The caret follows the last word of the text still streaming (a ::after), not on a line of its own.
              className={`markdown${status === "streaming" && isLast ? " streaming" : ""}`}
              key={key}
              data-testid="message-text"
            >
              <SafeMarkdown text={segment.text} />
            </div>
          ) : (
            <ToolCard key={key} fiberId={turn.fiberId ?? ""} tool={segment} />
          ),
        )}
        {thinking && turn.fiberId && (
          <ModelProgress fiberId={turn.fiberId} retry={view.retry} afterTools={last?.kind === "tool"} />
        )}
      </div>
      {view.outcome === "cancelled" && (
        <p className="message-note" data-testid="stopped-note">
          {view.neverStarted
            ? "Stopped before the reply started; nothing ran for this message."
            : "Stopped. The fiber was cancelled; nothing more will run for this reply."}
        </p>
      )}
      {view.outcome === "failed" && (
        <div className="message-note error" role="alert" data-testid="failure-note">
          <p>
            {view.neverStarted ? "No reply: " : "The reply failed: "}
            {view.error ?? "unknown error"}
          </p>
          {view.detail && (
            <details className="failure-details">
              <summary>Details</summary>
              <pre>{view.detail}</pre>
            </details>
          )}
          {onRetry && (
            <button type="button" className="button small" onClick={onRetry} data-testid="ask-again">
              Ask again
            </button>
          )}
        </div>
      )}
      {state.problem && (
        <p className="message-note error" role="alert" data-testid="lost-track">
          Lost track of this reply: {state.problem}
          {state.reconnectIn !== undefined && ` Reconnecting in ${Math.ceil(state.reconnectIn / 1000)} s…`}
        </p>
      )}
    </article>
  );
}
