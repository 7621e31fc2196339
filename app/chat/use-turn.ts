/**
 * Follows one assistant turn: starts its fiber if the page never got to (the turn is written
 * before the fiber is started, and a refused start is recorded on the turn as its failure), reads the fiber's durable stream with `useFiberEvents` from
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
import { historyRef } from "../shared/chat-db";
import { finishTurn, type Turn, turnIsOpen } from "./conversations";
import { errorCode, lostFiber, refusedStart } from "./turn-failures";
import { applyChunk, emptyTurn, type TurnView, turnText } from "./turn-view";

/** What the chat renders for a turn. */
export interface TurnState {
  view: TurnView;
  /** When this page re-attached to a reply that was already streaming (ms since the epoch). */
  reattachedAt?: number;
  /** A failure to follow the fiber (not the fiber's own failure). */
  problem?: string;
  /** While `problem` is a broken stream: ms until the page reads it again. */
  reconnectIn?: number;
}

/** Delay before reading a lost stream again, after `round` earlier re-reads: 1 s doubling up to 16 s. */
function reconnectDelay(round: number): number {
  return Math.min(1_000 * 2 ** round, 16_000);
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
  const { fiberId } = turn;
  const live = turn.final === undefined && fiberId !== undefined;
  // The conversation list is re-read on every change, so `turn` is a new object each time: key
  // the effects on the fiber id and read the rest from a ref.
  const latest = useRef(turn);
  latest.current = turn;
  const [started, setStarted] = useState<{ at: number } | { problem: string } | null>(null);
  useEffect(() => {
    if (!live || !fiberId) return;
    let cancelled = false;
    ensureStarted(client, conversationId, fiberId, latest.current).then(
      (outcome) => !cancelled && outcome === "started" && setStarted({ at: Date.now() }),
      (error: unknown) =>
        !cancelled && setStarted({ problem: error instanceof Error ? error.message : String(error) }),
    );
    return () => {
      cancelled = true;
    };
  }, [client, conversationId, fiberId, live]);

  const readerStart = started && "at" in started ? started.at : null;
  // A stream lost for any reason but a missing fiber is read again from the start after a pause
  // (one render without a reader ends the old one), so no reload is needed to pick it up.
  const [reader, setReader] = useState({ round: 0, paused: false });
  const stream = useFiberEvents(live && readerStart !== null && !reader.paused ? (fiberId ?? null) : null);
  const fold = useRef<{ round: number; fold: TurnFold } | null>(null);
  if (
    readerStart !== null &&
    (fold.current?.fold.readerStart !== readerStart || fold.current.round !== reader.round)
  )
    fold.current = { round: reader.round, fold: new TurnFold(readerStart) };
  if (!reader.paused) fold.current?.fold.fold(stream.events);

  const view = turn.final ?? fold.current?.fold.view ?? emptyTurn();
  const outcome = live ? view.outcome : undefined;
  // A fiber that vanished before it ended (its storage was cleared) will never end: say so.
  const vanished = live && stream.status === "error" && errorCode(stream.error) === "fiber_not_found";
  const broken = live && stream.status === "error" && !vanished;
  useEffect(() => {
    if (reader.paused) {
      setReader(({ round }) => ({ round: round + 1, paused: false }));
      return;
    }
    if (!broken) return;
    const timer = setTimeout(() => setReader((r) => ({ ...r, paused: true })), reconnectDelay(reader.round));
    return () => clearTimeout(timer);
  }, [broken, reader]);
  const finishing = useRef(false);
  useEffect(() => {
    if ((outcome === undefined && !vanished) || finishing.current || !fold.current) return;
    finishing.current = true;
    const current = latest.current;
    const folded = fold.current.fold;
    if (vanished) {
      const final = lostFiber(folded.view, stream.error);
      void finishTurn(conversationId, current.id, {
        final,
        messages: partialMessages(current, final),
        noFiber: true,
      });
      return;
    }
    const final =
      folded.reattachedAt === undefined ? folded.view : { ...folded.view, reattachedAt: folded.reattachedAt };
    void turnMessages(client, current, final).then((messages) =>
      finishTurn(conversationId, current.id, { final, messages }),
    );
  }, [client, conversationId, outcome, vanished, stream.error]);

  const problem =
    started && "problem" in started
      ? started.problem
      : broken
        ? String((stream.error as Error)?.message ?? stream.error)
        : undefined;
  const reattachedAt = fold.current?.fold.reattachedAt;
  return {
    view,
    ...(live && reattachedAt !== undefined ? { reattachedAt } : {}),
    ...(problem ? { problem } : {}),
    ...(broken ? { reconnectIn: reconnectDelay(reader.round) } : {}),
  };
}

/**
 * Starts the turn's fiber unless it exists (starting twice with the same id joins the first).
 * A refused start (a message over the payload limit, a worker that does not answer) is recorded
 * on the turn as its failure, so the conversation never waits for a fiber that does not exist.
 */
async function ensureStarted(
  client: DemoClient,
  conversationId: string,
  fiberId: string,
  turn: Turn,
): Promise<"started" | "ended"> {
  // A worker that does not answer the look-up still gets the start, which joins a fiber that exists.
  if (await readAgainOnRestart(() => client.get(fiberId)).catch(() => undefined)) return "started";
  // Stop, Delete or another tab may have closed the turn since this page read it.
  if (!(await turnIsOpen(conversationId, turn.id))) return "ended";
  const input = {
    messages: [{ role: "user" as const, content: turn.user }],
    historyRef: historyRef(conversationId, turn.id),
  };
  try {
    // Safe to repeat with the same id: a start the restarted worker did make is joined.
    await readAgainOnRestart(() => client.start("assistant", input, { id: fiberId }), 2);
    return "started";
  } catch (error) {
    // A start that timed out may still have created the fiber: look before calling it refused.
    const exists = await readAgainOnRestart(() => client.get(fiberId)).catch(() => undefined);
    if (exists) return "started";
    const final = refusedStart(error, turn.user);
    await finishTurn(conversationId, turn.id, { final, messages: [], noFiber: true });
    return "ended";
  }
}

/** What a turn adds to the history: the run's own messages, or the user's and the partial reply. */
async function turnMessages(client: DemoClient, turn: Turn, view: TurnView): Promise<ChatMessage[]> {
  const { fiberId } = turn;
  if (view.outcome === "completed" && fiberId) {
    const record = await readAgainOnRestart(() => client.get(fiberId));
    const output = record?.result as AgentOutput | undefined;
    if (output?.messages) {
      // The run's messages start at its user message (fibers of older versions carried the history too).
      const from = output.messages.findLastIndex((m) => m.role === "user");
      return output.messages.slice(Math.max(from, 0));
    }
  }
  return partialMessages(turn, view);
}

function partialMessages(turn: Turn, view: TurnView): ChatMessage[] {
  const text = turnText(view);
  const user: ChatMessage = { role: "user", content: turn.user };
  return text ? [user, { role: "assistant", content: text }] : [user];
}
