/**
 * CORS for the edge routes, for pages (and Service Workers) on other origins: a browser's
 * continuity shipments come from the app's origin (`http://localhost:5199`) to the edge's
 * (`https://edge.example`), and every such request with an `Authorization` header is preflighted.
 * `allowedOrigins` lists the exact origins allowed; a request from any other origin is refused
 * with `403 origin_not_allowed` before it is routed, so it writes nothing. Requests with no
 * `Origin` (curl, servers) are not cross-origin and pass through.
 *
 * There is no wildcard: the allowed origin is echoed back, with `Vary: Origin`, and credentials
 * (cookies) are not allowed; callers authenticate with a bearer token in `Authorization`, which a
 * cross-origin `fetch` sends without credentials mode.
 */

import { FiberlineError, InvalidInputError } from "../core/errors";
import { errorResponse } from "./http-routes";

/** The request headers a page may send: its token, JSON bodies, and SSE resumption. */
const ALLOWED_HEADERS = "authorization, content-type, last-event-id";

/** Which origins may call the routes; built once by `originPolicy`. */
export interface OriginPolicy {
  /**
   * Answers a preflight (`204` with the CORS headers) or a request from an origin not allowed
   * (`403 origin_not_allowed`); `null` when the request may go on.
   */
  refuse(request: Request): Response | null;
  /** `response` with the CORS headers for `request`'s origin (unchanged when it sent none). */
  allow(request: Request, response: Response): Response;
}

/**
 * The policy for exact origins such as `"https://app.example"` or `"http://localhost:5199"`.
 *
 * Throws `InvalidInputError` (`invalid_argument`) for `"*"` or anything that is not a bare origin
 * (a path, a trailing slash), so a typo fails at start-up and not as refused requests later.
 *
 * @example
 * const cors = originPolicy(["http://localhost:5199"]);
 * const refused = cors.refuse(request);
 * if (refused) return refused;
 * return cors.allow(request, await handle(request));
 */
export function originPolicy(allowedOrigins: readonly string[]): OriginPolicy {
  const allowed = new Set<string>();
  for (const origin of allowedOrigins) {
    let parsed: string | undefined;
    try {
      parsed = new URL(origin).origin;
    } catch {
      parsed = undefined;
    }
    if (origin === "*" || parsed === undefined || parsed === "null" || parsed !== origin) {
      throw new InvalidInputError(
        "invalid_argument",
        `allowedOrigins: ${JSON.stringify(origin)} is not an origin; list each one exactly as a page sends it, e.g. "https://app.example" or "http://localhost:5199" (no wildcard, no path, no trailing slash).`,
      );
    }
    allowed.add(origin);
  }
  return {
    refuse(request) {
      const origin = request.headers.get("origin");
      if (origin !== null && !allowed.has(origin)) {
        return errorResponse(
          new FiberlineError(
            "origin_not_allowed",
            `Pages on ${origin} may not call this host; add the origin to allowedOrigins to allow it.`,
          ),
        );
      }
      if (request.method === "OPTIONS")
        return new Response(null, { status: 204, headers: headersFor(origin) });
      return null;
    },
    allow(request, response) {
      const origin = request.headers.get("origin");
      if (origin === null || !allowed.has(origin)) return response;
      // A response from a Durable Object (or a fetch) is immutable: copy it to add headers.
      const headers = new Headers(response.headers);
      for (const [name, value] of Object.entries(headersFor(origin))) headers.set(name, value);
      return new Response(response.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      });
    },
  };
}

function headersFor(origin: string | null): Record<string, string> {
  return {
    ...(origin === null ? {} : { "access-control-allow-origin": origin }),
    vary: "origin",
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": ALLOWED_HEADERS,
    "access-control-expose-headers": "x-fiberline, x-fiberline-created",
    "access-control-max-age": "600",
  };
}
