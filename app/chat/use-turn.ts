/**
 * Follows one assistant turn: starts its fiber if the page never got to (the turn is written
 * before the fiber is started), reads the fiber's durable stream with `useFiberEvents` from
 * `fiberline/react` into a `TurnView`, and freezes the turn into the conversation once the fiber
 * ended. Notices when it re-attached to a reply that was already streaming (after a reload), for
 * the "resumed" marker.
 */

import { useEffect, useRef, useState } from "react";
import type { AgentOutput } from "../../src/agent/agent";
import type { ChatMessage } from "../../src/agent/types";
import type { FiberEvent } from "../../src/core/records";
import { useFiberEvents } from "../../src/react/index";
import { type DemoClient, readAgainOnRestart, useClient } from "../client";
import { finishTurn, type Turn } from "./conversations";
import { applyChunk, emptyTurn, type TurnView, turnText } from "./turn-view";

/** What the chat renders for a turn. */
export interface TurnState {
  view: TurnView;
  /** When this page re-attached to a reply that was already streaming (ms since the epoch). */
  reattachedAt?: number;
  /** A failure to follow the fiber (not the fiber's own failure). */
  problem?: string;
}

/** Folds new chunks into the view incrementally, and spots a re-attach to a live reply. */
class TurnFold {
  view = emptyTurn();
  reattachedAt: number | undefined;
  #folded = 0;
  #replayedText = false;

  constructor(readonly readerStart: number) {}

  fold(events: readonly FiberEvent[]): void {
    for (const event of events.slice(this.#folded)) {
      this.view = applyChunk(this.view, event);
      // A chunk written before this reader started is replay; a live chunk after replayed text
      // means the page came back to a reply that kept going without it.
      if (event.at < this.readerStart - 100) this.#replayedText ||= event.type === "text.delta";
      else if (this.#replayedText && this.reattachedAt === undefined && this.view.outcome === undefined)
        this.reattachedAt = Date.now();
    }
    this.#folded = events.length;
  }
}

/** Follows `turn` of `conversationId` while mounted. */
export function useTurn(conversationId: string, turn: Turn): TurnState {
  const client = useClient();
  const live = turn.final === undefined;
  // The conversation list is re-read on every change, so `turn` is a new object each time: key
  // the effects on the fiber id and read the rest from a ref.
  const latest = useRef(turn);
  latest.current = turn;
  const { fiberId } = turn;
  const [started, setStarted] = useState<{ at: number } | { problem: string } | null>(null);
  useEffect(() => {
    if (!live || !fiberId) return;
    let cancelled = false;
    ensureStarted(client, latest.current).then(
      () => !cancelled && setStarted({ at: Date.now() }),
      (error: unknown) =>
        !cancelled && setStarted({ problem: error instanceof Error ? error.message : String(error) }),
    );
    return () => {
      cancelled = true;
    };
  }, [client, fiberId, live]);

  const readerStart = started && "at" in started ? started.at : null;
  const stream = useFiberEvents(live && readerStart !== null ? fiberId : null);
  const fold = useRef<TurnFold | null>(null);
  if (readerStart !== null && fold.current?.readerStart !== readerStart)
    fold.current = new TurnFold(readerStart);
  fold.current?.fold(stream.events);

  const view = turn.final ?? fold.current?.view ?? emptyTurn();
  const outcome = live ? view.outcome : undefined;
  const finishing = useRef(false);
  useEffect(() => {
    if (outcome === undefined || finishing.current || !fold.current) return;
    finishing.current = true;
    const final = fold.current.view;
    const current = latest.current;
    void historyAfter(client, current, final).then((history) =>
      finishTurn(conversationId, current.id, final, history),
    );
  }, [client, conversationId, outcome]);

  const problem =
    started && "problem" in started
      ? started.problem
      : stream.status === "error"
        ? String((stream.error as Error)?.message ?? stream.error)
        : undefined;
  return {
    view,
    ...(live && fold.current?.reattachedAt !== undefined ? { reattachedAt: fold.current.reattachedAt } : {}),
    ...(problem ? { problem } : {}),
  };
}

/** Starts the turn's fiber unless it exists (starting twice with the same id joins the first). */
async function ensureStarted(client: DemoClient, turn: Turn): Promise<void> {
  if (await readAgainOnRestart(() => client.get(turn.fiberId))) return;
  await client.start("assistant", { messages: turn.input }, { id: turn.fiberId });
}

/** The history the next turn starts from: the agent's own messages, or the partial reply. */
async function historyAfter(client: DemoClient, turn: Turn, view: TurnView): Promise<ChatMessage[]> {
  if (view.outcome === "completed") {
    const record = await readAgainOnRestart(() => client.get(turn.fiberId));
    const output = record?.result as AgentOutput | undefined;
    if (output?.messages) return output.messages;
  }
  const text = turnText(view);
  return text ? [...turn.input, { role: "assistant", content: text }] : turn.input;
}
