/**
 * Follows one assistant turn: starts its fiber if the page never got to (the turn is written
 * before the fiber is started), reads the fiber's durable stream from the start into a
 * `TurnView`, and freezes the turn into the conversation once the fiber ended. Notices when it
 * re-attached to a reply that was already streaming (after a reload) for the "resumed" marker.
 */

import { useEffect, useState } from "react";
import type { AgentOutput } from "../../src/agent/agent";
import type { ChatMessage } from "../../src/agent/types";
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

/** Follows `turn` of `conversationId` while mounted. */
export function useTurn(conversationId: string, turn: Turn): TurnState {
  const client = useClient();
  const [state, setState] = useState<TurnState>(() => ({ view: turn.final ?? emptyTurn() }));
  useEffect(() => {
    if (turn.final) {
      setState({ view: turn.final });
      return;
    }
    const controller = new AbortController();
    void follow(client, conversationId, turn, controller.signal, setState);
    return () => controller.abort();
  }, [client, conversationId, turn]);
  return state;
}

async function follow(
  client: DemoClient,
  conversationId: string,
  turn: Turn,
  signal: AbortSignal,
  setState: (update: (state: TurnState) => TurnState) => void,
): Promise<void> {
  let view = emptyTurn();
  setState(() => ({ view }));
  const readerStart = Date.now();
  let replayedText = false;
  let reattached = false;
  try {
    if (!(await readAgainOnRestart(() => client.get(turn.fiberId)))) {
      await client.start("assistant", { messages: turn.input }, { id: turn.fiberId });
    }
    for await (const event of client.events(turn.fiberId, { after: 0, signal })) {
      view = applyChunk(view, event);
      // A chunk written before this reader started is replay; live chunks after replayed text
      // mean the page came back to a reply that kept going without it.
      if (event.at < readerStart - 100) replayedText ||= event.type === "text.delta";
      else if (replayedText && !reattached && view.outcome === undefined) {
        reattached = true;
        const at = Date.now();
        setState((s) => ({ ...s, view, reattachedAt: at }));
        continue;
      }
      const current = view;
      setState((s) => ({ ...s, view: current }));
    }
    if (signal.aborted || view.outcome === undefined) return;
    await finishTurn(conversationId, turn.id, view, await historyAfter(client, turn, view));
  } catch (error) {
    if (signal.aborted) return;
    const message = error instanceof Error ? error.message : String(error);
    setState((s) => ({ ...s, problem: message }));
  }
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
