/**
 * What an assistant reply shows while it has no text yet: "Thinking…", and once the model call
 * has trouble, which attempt runs, why the last failed and when the next starts, or that the
 * reply waits for the network. Polls the worker's view of the call (`/demo-api/model-call`,
 * `app/worker/model-watch.ts`) once a second while shown.
 */

import { type ReactNode, useEffect, useState } from "react";
import { demoApi, type ModelCallStatus } from "../shared/demo-api";
import { useOnline } from "../ui/use-online";
import { usePoll } from "../ui/use-poll";

/** Re-renders every second while `enabled`, for countdowns. */
function useSecondTick(enabled: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!enabled) return;
    const timer = setInterval(() => setNow(Date.now()), 1_000);
    return () => clearInterval(timer);
  }, [enabled]);
  return now;
}

function describe(
  call: ModelCallStatus | null | undefined,
  online: boolean,
  now: number,
): {
  text: string;
  reason?: string;
  offline?: boolean;
} {
  if (!online || call?.state === "offline")
    return {
      text: "You are offline. The reply waits for the network and goes on by itself when you are back online.",
      offline: true,
    };
  if (!call) return { text: "Thinking…" };
  const reason = call.lastError ? { reason: call.lastError } : {};
  if (call.state === "retrying") {
    const seconds = Math.max(0, Math.ceil(((call.retryAt ?? now) - now) / 1000));
    return {
      text: `The model did not answer. Attempt ${call.attempt + 1} of ${call.maxAttempts}, next in ${seconds} s…`,
      ...reason,
    };
  }
  if (call.attempt > 1 && (call.state === "calling" || call.state === "streaming"))
    return { text: `Trying again: attempt ${call.attempt} of ${call.maxAttempts}…`, ...reason };
  return { text: "Thinking…" };
}

export function ModelProgress({ fiberId, afterTools }: { fiberId: string; afterTools: boolean }): ReactNode {
  const online = useOnline();
  const { data: call } = usePoll(() => demoApi.modelCall(fiberId), 1_000, [fiberId]);
  const now = useSecondTick(call?.state === "retrying");
  const shown = describe(call, online, now);
  const text = shown.text === "Thinking…" && afterTools ? "Working on the tool results…" : shown.text;
  return (
    <div className={`thinking${shown.offline ? " offline" : ""}`} data-testid="model-progress" role="status">
      <p>
        <span className={shown.offline ? "offline-dot" : "spinner"} aria-hidden="true" /> {text}
      </p>
      {shown.reason && (
        <p className="muted small" data-testid="model-progress-reason">
          Last attempt: {shown.reason}
        </p>
      )}
    </div>
  );
}
