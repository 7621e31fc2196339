/**
 * The Fiberline edge example: the same fibers the browser demo runs in its Service Worker, here
 * in Cloudflare Durable Objects on SQLite storage, one object per fiber.
 *
 * - `POST /__fiberline/fibers` `{ "name": "assistant", "input": { "messages": [...] } }` starts a fiber;
 * - `GET /__fiberline/fibers/<id>/events?after=N` streams it as SSE (resumable);
 * - `POST /__fiberline/fibers/<id>/events` `{ "name", "payload" }` and `.../cancel` signal it.
 *
 * The page client points at it with `connect({ baseUrl: "http://localhost:8787" })`; the client's
 * reader checks the `x-fiberline` header, which CORS below exposes to other origins.
 */

import { DurableObject } from "cloudflare:workers";
import { createRuntime, defineFiber } from "fiberline";
import { calculatorTool, clockTool, defineAgent, openAICompatible } from "fiberline/agent";
import { createDurableObjectHost, routeToFiberObject } from "fiberline/edge";
import { mockModel } from "./mock-model";

export interface Env {
  FIBERS: DurableObjectNamespace<FiberObject>;
  /** An OpenAI-compatible API root; empty for the built-in mock model. */
  MODEL_BASE_URL?: string;
  MODEL?: string;
  /** A secret (`wrangler secret put MODEL_API_KEY`); never journaled or streamed. */
  MODEL_API_KEY?: string;
}

/** The demo's assistant: an agent loop whose model calls and tool calls are journaled steps. */
function assistant(env: Env) {
  const model = env.MODEL_BASE_URL
    ? openAICompatible({
        name: "custom",
        baseUrl: env.MODEL_BASE_URL,
        model: env.MODEL ?? "gpt-4o-mini",
        ...(env.MODEL_API_KEY ? { apiKey: env.MODEL_API_KEY } : {}),
      })
    : openAICompatible({
        name: "mock",
        baseUrl: "https://mock-model.invalid/v1",
        model: "mock",
        continuation: "assistant-prefix",
        fetch: (input, init) => mockModel(new Request(input, init)),
      });
  return defineAgent({
    name: "assistant",
    model,
    tools: [calculatorTool(), clockTool()],
    system: "You are the Fiberline edge assistant. Answer briefly; use the calculator for arithmetic.",
    maxTurns: 6,
  });
}

/** Ticks once a second with durable sleeps: the object may be evicted between ticks. */
const ticker = defineFiber("ticker", {
  async run(ctx, input: { ticks: number }) {
    for (let i = 1; i <= input.ticks; i++) {
      await ctx.sleep("tick", 1_000);
      ctx.emit("tick", { i, at: await ctx.now() });
    }
    return { ticks: input.ticks };
  },
});

/** One Durable Object per fiber: its SQLite storage holds the fiber's journal and stream. */
export class FiberObject extends DurableObject<Env> {
  readonly host = createDurableObjectHost(this.ctx, {
    runtime: (parts) => createRuntime({ ...parts, fibers: [assistant(this.env), ticker] }),
  });

  override fetch(request: Request): Promise<Response> {
    return this.host.fetch(request);
  }

  override alarm(): Promise<void> {
    return this.host.alarm();
  }
}

/** A page on another origin (the demo on its dev server) may call the routes and read x-fiberline. */
const CORS = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, OPTIONS",
  "access-control-allow-headers": "content-type, last-event-id",
  "access-control-expose-headers": "x-fiberline",
};

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (request.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS });
    const url = new URL(request.url);
    if (url.pathname.startsWith("/mock-model/")) return mockModel(request);
    const routed = await routeToFiberObject(request, env.FIBERS);
    if (!routed) return new Response(USAGE, { headers: { "content-type": "text/plain; charset=utf-8" } });
    // Responses from a Durable Object are immutable; copy the headers to add CORS.
    const headers = new Headers(routed.headers);
    for (const [name, value] of Object.entries(CORS)) headers.set(name, value);
    return new Response(routed.body, { status: routed.status, headers });
  },
} satisfies ExportedHandler<Env>;

const USAGE = `Fiberline edge example

Start the assistant:
  curl -s localhost:8787/__fiberline/fibers -H 'content-type: application/json' \\
    -d '{"name":"assistant","id":"chat-1","input":{"messages":[{"role":"user","content":"what is 12 * 7"}]}}'
Stream it (resumable with ?after=N):
  curl -N localhost:8787/__fiberline/fibers/chat-1/events
Its record:
  curl -s localhost:8787/__fiberline/fibers/chat-1
`;
