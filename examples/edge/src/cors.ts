/**
 * CORS for the example Worker, restricted to the origins listed in `ALLOWED_ORIGINS`: a page on
 * one of them may call the routes with its bearer token and read the `x-fiberline` header; a
 * request from any other origin is refused with a typed JSON error before it is routed.
 * Requests that carry no `Origin` (curl, servers) are not cross-origin and pass through.
 */

import { FiberlineError } from "fiberline";
import { errorResponse } from "fiberline/edge";

/** The origins in a comma-separated list (e.g. "http://localhost:5199, https://app.example"). */
export function allowedOrigins(list: string | undefined): Set<string> {
  return new Set(
    (list ?? "")
      .split(",")
      .map((origin) => origin.trim())
      .filter((origin) => origin !== ""),
  );
}

/**
 * Answers a request from an origin that is not allowed (`403 origin_not_allowed`) or a preflight
 * (`204`); returns `null` when the request may go on.
 */
export function corsRefusal(request: Request, allowed: Set<string>): Response | null {
  const origin = request.headers.get("origin");
  if (origin !== null && !allowed.has(origin)) {
    return errorResponse(
      new FiberlineError(
        "origin_not_allowed",
        `Pages on ${origin} may not call this Worker; add the origin to ALLOWED_ORIGINS to allow it.`,
      ),
    );
  }
  if (request.method === "OPTIONS") return new Response(null, { status: 204, headers: corsHeaders(origin) });
  return null;
}

/** `response` with the CORS headers for `request`'s origin (none when it sent no `Origin`). */
export function withCors(request: Request, response: Response): Response {
  const origin = request.headers.get("origin");
  if (origin === null) return response;
  // Responses from a Durable Object are immutable; copy the headers to add CORS.
  const headers = new Headers(response.headers);
  for (const [name, value] of Object.entries(corsHeaders(origin))) headers.set(name, value);
  return new Response(response.body, { status: response.status, headers });
}

function corsHeaders(origin: string | null): Record<string, string> {
  return {
    ...(origin === null ? {} : { "access-control-allow-origin": origin }),
    vary: "origin",
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": "authorization, content-type, last-event-id",
    "access-control-expose-headers": "x-fiberline",
    "access-control-max-age": "600",
  };
}
