/**
 * A tool call as a card: the tool, its arguments, its status and its result, with the approval
 * prompt for tools that need a person's yes or no (sent as the event `approvalEventName` names for
 * exactly this call).
 */

import { type ReactNode, useState } from "react";
import { approvalEventName } from "../../src/agent/agent";
import { useClient } from "../client";
import type { Segment, ToolStatus } from "./turn-view";

const LABELS: Record<ToolStatus, string> = {
  called: "Called",
  "awaiting-approval": "Needs your approval",
  running: "Running",
  ok: "Done",
  error: "Failed",
  denied: "Denied",
};

function pretty(value: unknown): string {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2) ?? String(value);
}

/** One tool call of an assistant reply. */
export function ToolCard({
  fiberId,
  tool,
}: {
  fiberId: string;
  tool: Extract<Segment, { kind: "tool" }>;
}): ReactNode {
  const client = useClient();
  const [sending, setSending] = useState<"approve" | "deny" | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const answer = async (approved: boolean) => {
    setSending(approved ? "approve" : "deny");
    setProblem(null);
    try {
      await client.sendEvent(
        fiberId,
        approvalEventName(tool),
        approved ? { approved } : { approved, reason: "denied in the demo's chat" },
      );
    } catch (error) {
      setSending(null);
      setProblem(error instanceof Error ? error.message : String(error));
    }
  };
  const args = pretty(tool.arguments || "{}");
  return (
    <section
      className={`tool-card tool-${tool.status}`}
      data-testid="tool-card"
      data-status={tool.status}
      data-tool={tool.name}
      aria-label={`Tool call ${tool.name}: ${LABELS[tool.status]}`}
    >
      <header className="tool-head">
        <span className="tool-icon" aria-hidden="true">
          ⚙
        </span>
        <code className="tool-name">{tool.name}</code>
        <span className={`badge badge-${tool.status}`}>
          {(tool.status === "running" || tool.status === "called") && (
            <span className="spinner" aria-hidden="true" />
          )}
          {LABELS[tool.status]}
        </span>
      </header>
      <div className="tool-body">
        <div className="tool-section">
          <div className="tool-label">Arguments</div>
          <pre className="tool-json">{args}</pre>
        </div>
        {tool.status === "ok" && (
          <div className="tool-section">
            <div className="tool-label">Result</div>
            <pre className="tool-json" data-testid="tool-result">
              {pretty(tool.result)}
            </pre>
          </div>
        )}
        {(tool.status === "error" || tool.status === "denied") && tool.error && (
          <p className="tool-error" data-testid="tool-result">
            {tool.error}
          </p>
        )}
        {tool.status === "awaiting-approval" && (
          <fieldset className="approval">
            <legend className="sr-only">Approve or deny {tool.name}</legend>
            <p>
              The assistant wants to run <code>{tool.name}</code>. The fiber waits durably for your answer:
              you can even close the tab and answer later.
            </p>
            <div className="approval-actions">
              <button
                type="button"
                className="button primary"
                data-testid="approve"
                disabled={sending !== null}
                onClick={() => answer(true)}
              >
                {sending === "approve" ? "Approving…" : "Approve"}
              </button>
              <button
                type="button"
                className="button danger"
                data-testid="deny"
                disabled={sending !== null}
                onClick={() => answer(false)}
              >
                {sending === "deny" ? "Denying…" : "Deny"}
              </button>
            </div>
            {problem && (
              <p className="form-error" role="alert">
                {problem}
              </p>
            )}
          </fieldset>
        )}
      </div>
    </section>
  );
}
