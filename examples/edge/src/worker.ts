/**
 * The Fiberline edge example: the same fibers the browser demo runs in its Service Worker, here
 * in Cloudflare Durable Objects on SQLite storage, one object per user.
 *
 * - `POST /__fiberline/fibers` `{ "name": "assistant", "input": { "messages": [...] } }` starts a fiber;
 * - `GET /__fiberline/fibers/<id>/events?after=N` streams it as SSE (resumable);
 * - `POST /__fiberline/fibers/<id>/events` `{ "name", "payload" }` and `.../cancel` signal it;
 * - `GET /__fiberline/fibers` lists the caller's own fibers.
 *
 * Every route needs `Authorization: Bearer <token>`, an HS256 JWT signed with the `AUTH_SECRET`
 * secret (`auth.ts`); its `sub` owns the fibers it starts, and nobody else can read, signal,
 * cancel or even see them. Pages may call from the origins in `ALLOWED_ORIGINS` only (`cors.ts`);
 * `MAX_UNFINISHED_FIBERS` and `MAX_BODY_BYTES` bound what one user can start. With
 * `CONTINUITY_LEASE_MS` set, each user's object is also the arbiter of the `steps` and `approval`
 * fibers that user's browsers replicate to it (`continuity-fibers.ts`, docs/design/continuity.md).
 *
 * The page client points at it with `connect({ baseUrl: "http://localhost:8787", fetch })`, with
 * a `fetch` that adds the token; the client's reader checks the `x-fiberline` header, which CORS
 * exposes to allowed origins.
 */

import { DurableObject } from "cloudflare:workers";
import { createRuntime, defineFiber } from "fiberline";
import { calculatorTool, clockTool, defineAgent, openAICompatible } from "fiberline/agent";
import { type Authorize, createDurableObjectHost, originPolicy, routeToFiberObject } from "fiberline/edge";
import { verifyToken } from "./auth";
import { continuityFibers } from "./continuity-fibers";
import { mockModel } from "./mock-model";

export interface Env {
  FIBERS: DurableObjectNamespace<FiberObject>;
  /** An OpenAI-compatible API root; empty for the built-in mock model. */
  MODEL_BASE_URL?: string;
  MODEL?: string;
  /** A secret (`wrangler secret put MODEL_API_KEY`); never journaled or streamed. */
  MODEL_API_KEY?: string;
  /** The HMAC secret tokens are signed with (`wrangler secret put AUTH_SECRET`); unset refuses every request. */
  AUTH_SECRET?: string;
  /** Comma-separated origins whose pages may call the Worker. */
  ALLOWED_ORIGINS?: string;
  /** Most unfinished fibers one user may have (default 3). */
  MAX_UNFINISHED_FIBERS?: string;
  /** Largest request body, in bytes (default 64 KiB). */
  MAX_BODY_BYTES?: string;
  /**
   * Continuity (issue #18): when set, each user's object is also the arbiter of the fibers that
   * user's browsers replicate to it (`steps`, `approval`), with this home lease in milliseconds.
   * Empty (the default) leaves continuity off.
   */
  CONTINUITY_LEASE_MS?: string;
}

/** The origins in the comma-separated `ALLOWED_ORIGINS` (e.g. "http://localhost:5199, https://app.example"). */
function allowedOrigins(env: Env): string[] {
  return (env.ALLOWED_ORIGINS ?? "")
    .split(",")
    .map((origin) => origin.trim())
    .filter((origin) => origin !== "");
}

/** The continuity option of the host, from `CONTINUITY_LEASE_MS`. */
function continuity(env: Env): { leaseMs: number } | undefined {
  if (!env.CONTINUITY_LEASE_MS) return undefined;
  const leaseMs = Number(env.CONTINUITY_LEASE_MS);
  if (!Number.isInteger(leaseMs) || leaseMs <= 0)
    throw new Error(
      `CONTINUITY_LEASE_MS must be a whole number of milliseconds, not ${env.CONTINUITY_LEASE_MS}.`,
    );
  return { leaseMs };
}

/** The caller is the `sub` of a valid, unexpired token. */
function authorize(env: Env): Authorize {
  return async (request) => (await verifyToken(request.headers.get("authorization"), env.AUTH_SECRET)).sub;
}

function maxBodyBytes(env: Env): number {
  return Number(env.MAX_BODY_BYTES ?? 65_536);
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

/** One Durable Object per user: its SQLite storage holds that user's fibers, journals and streams. */
export class FiberObject extends DurableObject<Env> {
  readonly host = createDurableObjectHost(this.ctx, {
    runtime: (parts) =>
      createRuntime({
        ...parts,
        fibers: [assistant(this.env), ticker, ...continuityFibers("edge", defineFiber)],
      }),
    authorize: authorize(this.env),
    limits: {
      maxUnfinishedFibers: Number(this.env.MAX_UNFINISHED_FIBERS ?? 3),
      maxBodyBytes: maxBodyBytes(this.env),
    },
    ...(continuity(this.env) ? { continuity: continuity(this.env) } : {}),
  });

  override fetch(request: Request): Promise<Response> {
    return this.host.fetch(request);
  }

  override alarm(): Promise<void> {
    return this.host.alarm();
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    // Fiberline's own CORS: preflights answered, other origins refused with 403, exact origins
    // echoed (no wildcard); the routes and the mock model share it.
    const cors = originPolicy(allowedOrigins(env));
    const refusal = cors.refuse(request);
    if (refusal) return refusal;
    const url = new URL(request.url);
    if (url.pathname.startsWith("/mock-model/")) return cors.allow(request, await mockModel(request));
    const routed = await routeToFiberObject(request, env.FIBERS, {
      authorize: authorize(env),
      group: "principal",
      maxBodyBytes: maxBodyBytes(env),
    });
    if (!routed) return new Response(USAGE, { headers: { "content-type": "text/plain; charset=utf-8" } });
    return cors.allow(request, routed);
  },
} satisfies ExportedHandler<Env>;

const USAGE = `Fiberline edge example

Every route needs a token: TOKEN=$(node examples/edge/mint-token.mjs alice)
Start the assistant:
  curl -s localhost:8787/__fiberline/fibers -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
    -d '{"name":"assistant","id":"chat-1","input":{"messages":[{"role":"user","content":"what is 12 * 7"}]}}'
Stream it (resumable with ?after=N):
  curl -N localhost:8787/__fiberline/fibers/chat-1/events -H "authorization: Bearer $TOKEN"
Its record:
  curl -s localhost:8787/__fiberline/fibers/chat-1 -H "authorization: Bearer $TOKEN"
`;
