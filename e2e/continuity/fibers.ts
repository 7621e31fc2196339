/**
 * The fibers of the continuity e2e, defined once for both homes: the Service Worker (`sw.ts`,
 * `where: "browser"`) and the Durable Object under `wrangler dev` (`edge-worker.ts`, `where:
 * "edge"`). Every side effect is reported to the ledger, a small HTTP server the spec runs
 * outside both homes (`POST <ledger>/effect`), with its idempotency key, the home that ran it and
 * whether it ran `interrupted`.
 *
 * - `ticker` `{ ticks, intervalMs }`: a durable sleep loop; after each sleep a step reports the
 *   tick and a `tick` chunk `{ i }` follows. Its schedule survives the handoff: sleeps are timers
 *   in the journal, fired by the edge's alarm once it holds the fiber.
 * - `agent`: an agent whose model (in code, the same in both homes, `turnMs` per call) calls the
 *   tool `record` `turns` times, one call per reply, then answers; `record` reports an effect.
 * - `homer`: the ticker under another kind, which the Service Worker lists with `comeHome:
 *   "at-suspension"`: taken over by the edge, it comes back to a browser that mirrors it.
 * - `gate`: waits for a `go` event (a page, or a webhook at the edge), then a step reports it
 *   (kind `gate`) and a `passed` chunk `{ payload, where }` follows.
 */

import { defineAgent } from "../../src/agent/agent";
import type { ModelEvent, ModelProvider, ModelRequest, ToolDefinition } from "../../src/agent/types";
import { defineFiber, type FiberContext } from "../../src/core/define";

/** One report to the ledger. */
export interface Effect {
  fiber: string;
  kind: "tick" | "tool" | "gate";
  key: string;
  where: string;
  interrupted: boolean;
}

export function continuityFibers(where: "browser" | "edge", ledgerUrl: () => string) {
  async function report(effect: Effect): Promise<void> {
    const response = await fetch(`${ledgerUrl()}/effect`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(effect),
    });
    if (!response.ok) throw new Error(`the ledger answered ${response.status}`);
    await response.arrayBuffer();
  }

  const ticks = {
    async run(ctx: FiberContext, input: { ticks: number; intervalMs: number }) {
      for (let i = 1; i <= input.ticks; i++) {
        await ctx.sleep(`tick-${i}`, input.intervalMs);
        await ctx.step("tick", async ({ idempotencyKey, interrupted }) => {
          await report({ fiber: ctx.id, kind: "tick", key: idempotencyKey, where, interrupted });
          return i;
        });
        ctx.emit("tick", { i });
      }
      return { ticks: input.ticks };
    },
  };
  const ticker = defineFiber("ticker", ticks);
  /** The ticker again, under a kind the browser lists with `comeHome: "at-suspension"`. */
  const homer = defineFiber("homer", ticks);

  const record: ToolDefinition<{ n: number }> = {
    name: "record",
    description: "Records that step n was done.",
    parameters: { type: "object", properties: { n: { type: "number" } }, required: ["n"] },
    async execute({ n }, { idempotencyKey, interrupted }) {
      await report({ fiber: "agent", kind: "tool", key: idempotencyKey, where, interrupted });
      return { recorded: n };
    },
  };

  const agent = defineAgent({
    name: "agent",
    model: scriptedModel(),
    tools: [record as ToolDefinition],
    maxTurns: 20,
  });

  const gate = defineFiber("gate", {
    async run(ctx) {
      const payload = await ctx.waitForEvent<unknown>("go");
      await ctx.step("pass", async ({ idempotencyKey, interrupted }) => {
        await report({ fiber: ctx.id, kind: "gate", key: idempotencyKey, where, interrupted });
      });
      ctx.emit("passed", { payload, where });
      return { payload, where };
    },
  });

  return { ticker, homer, agent, gate };
}

/** A model in code: `turns` replies that call `record`, then one that answers; `turnMs` each. */
function scriptedModel(): ModelProvider {
  return {
    name: "scripted",
    model: "scripted",
    supportsContinuation: false,
    async *stream(request: ModelRequest): AsyncIterable<ModelEvent> {
      const settings = readSettings(request);
      const replies = request.messages.filter((m) => m.role === "assistant").length;
      await new Promise((resolve) => setTimeout(resolve, settings.turnMs));
      if (replies < settings.turns) {
        yield { type: "text", delta: `Recording ${replies + 1}.` };
        yield {
          type: "tool_call",
          id: `call-${replies + 1}`,
          name: "record",
          arguments: JSON.stringify({ n: replies + 1 }),
        };
        yield { type: "finish", reason: "tool_calls" };
        return;
      }
      yield { type: "text", delta: `Recorded ${settings.turns}.` };
      yield { type: "finish", reason: "stop" };
    },
  };
}

/** The user's message says `turns=N turnMs=M`. */
function readSettings(request: ModelRequest): { turns: number; turnMs: number } {
  const user = request.messages.find((m) => m.role === "user");
  const text = typeof user?.content === "string" ? user.content : "";
  return {
    turns: Number(/turns=(\d+)/.exec(text)?.[1] ?? 3),
    turnMs: Number(/turnMs=(\d+)/.exec(text)?.[1] ?? 500),
  };
}
