/**
 * What an assistant reply shows while it waits for its model: "Thinking…", and once the model
 * call has trouble, which attempt comes next, why the last failed and when the next starts, or
 * that the reply waits for the network. The attempts come from the reply's durable stream
 * (`message.retry` chunks, folded into `TurnView.retry`), so a reload or a worker restarted during
 * a wait shows them as before; the network wait is the worker's live view of the call
 * (`/demo-api/model-call`, `app/worker/model-watch.ts`), polled once a second while shown.
 */

import { type ReactNode, useEffect, useState } from "react";
import { demoApi, type ModelCallStatus } from "../shared/demo-api";
import { useOnline } from "../ui/use-online";
import { usePoll } from "../ui/use-poll";
import type { RetryView } from "./turn-view";

/** Re-renders every second while `enabled`, for countdowns. */
function useSecondTick(enabled: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!enabled) return;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 1_000);
    return () => clearInterval(timer);
  }, [enabled]);
  return now;
}

function describe(
  call: ModelCallStatus | null | undefined,
  retry: RetryView | undefined,
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
  if (!retry) return { text: "Thinking…" };
  const reason = retry.reason ? { reason: retry.reason } : {};
  if (now < retry.retryAt) {
    const seconds = Math.ceil((retry.retryAt - now) / 1000);
    return {
      text: `The model did not answer. Attempt ${retry.attempt} of ${retry.maxAttempts}, next in ${seconds} s…`,
      ...reason,
    };
  }
  return { text: `Trying again: attempt ${retry.attempt} of ${retry.maxAttempts}…`, ...reason };
}

export function ModelProgress({
  fiberId,
  retry,
  afterTools,
}: {
  fiberId: string;
  /** The call's last announced retry, from the reply's stream. */
  retry: RetryView | undefined;
  afterTools: boolean;
}): ReactNode {
  const online = useOnline();
  const { data: call } = usePoll(() => demoApi.modelCall(fiberId), 1_000, [fiberId]);
  const now = useSecondTick(retry !== undefined);
  const shown = describe(call, retry, online, now);
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
