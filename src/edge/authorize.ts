/**
 * Who may do what at the edge: the `authorize` hook that `createDurableObjectHost` and
 * `routeToFiberObject` call before every Fiberline route, the actions it is asked about, and the
 * bounded body reader both use so an oversized request is refused before it is parsed.
 */

import { FiberlineError, LimitExceededError, UnauthorizedError } from "../core/errors";
import { sha256Hex } from "../core/sha256";

/**
 * What a request wants to do; `authorize` is asked about each one. `replicate` is a browser's
 * continuity shipment (`POST .../replicate`, docs/design/continuity.md); reading a replica
 * (`GET .../replica`) is a `read`, and asking for a fiber back (`POST .../come-home`) a `replicate`.
 */
export type FiberAction = "start" | "read" | "event" | "cancel" | "inspect" | "list" | "replicate";

/**
 * Decides who sent `request`: returns the caller's principal (a stable, non-empty string such as a
 * user id), or throws to refuse it. `fiberId` is the fiber the request names (`undefined` for a
 * start without an id, and for `list`).
 *
 * A thrown `FiberlineError` is answered as it is (e.g. `UnauthorizedError` with `401`); anything
 * else is answered `401 unauthorized` without its message, so a verifier's details never leak.
 *
 * @example
 * authorize: async (request) => {
 *   const claims = await verifyToken(request.headers.get("authorization"), env.AUTH_SECRET);
 *   return claims.sub;
 * }
 */
export type Authorize = (
  request: Request,
  action: FiberAction,
  fiberId: string | undefined,
) => string | Promise<string>;

/** The action a request asks for and the fiber it names. */
export interface FiberRoute {
  action: FiberAction;
  id?: string;
}

/**
 * The action of a Fiberline path below the prefix (`/fibers`, `/fibers/<id>`, `/fibers/<id>/<action>`),
 * or `undefined` for any other path or method.
 */
export function fiberRouteOf(requestMethod: string, path: string): FiberRoute | undefined {
  // A HEAD is answered as its GET (the events route tells existence, end and head that way).
  const method = requestMethod === "HEAD" ? "GET" : requestMethod;
  const segments = path.split("/");
  if (segments[1] !== "fibers" || segments.length > 4) return undefined;
  if (segments.length === 2) {
    if (method === "POST") return { action: "start" };
    if (method === "GET") return { action: "list" };
    return undefined;
  }
  let id: string;
  try {
    id = decodeURIComponent(segments[2] ?? "");
  } catch {
    return undefined; // answered `invalid_id` by the plain routes
  }
  const action = segments[3];
  if (action === undefined && method === "GET") return { action: "read", id };
  if (action === "inspect" && method === "GET") return { action: "inspect", id };
  if (action === "events" && method === "GET") return { action: "read", id };
  if (action === "events" && method === "POST") return { action: "event", id };
  if (action === "cancel" && method === "POST") return { action: "cancel", id };
  if (action === "replicate" && method === "POST") return { action: "replicate", id };
  // Asking for a fiber back (continuity's handoff back) is part of replicating it.
  if (action === "come-home" && method === "POST") return { action: "replicate", id };
  if (action === "replica" && method === "GET") return { action: "read", id };
  return undefined;
}

/** Runs `authorize`, turning every refusal into a typed error. */
export async function principalOf(
  authorize: Authorize,
  request: Request,
  action: FiberAction,
  fiberId: string | undefined,
): Promise<string> {
  let principal: unknown;
  try {
    principal = await authorize(request, action, fiberId);
  } catch (error) {
    if (error instanceof FiberlineError) throw error;
    throw new UnauthorizedError(
      "unauthorized",
      "This request was not authorised: send valid credentials (see the host's authorize hook).",
    );
  }
  if (typeof principal !== "string" || principal === "") {
    throw new FiberlineError(
      "invalid_argument",
      "authorize must return the caller's principal as a non-empty string, or throw to refuse the request.",
    );
  }
  return principal;
}

/**
 * Reads a request body as text, refusing it with `413 payload_too_large` as soon as it passes
 * `maxBytes` (whatever its `content-length` claims), so a huge body is never buffered whole.
 */
export async function readBodyText(request: Request, maxBytes: number | undefined): Promise<string> {
  if (maxBytes === undefined) return await request.text();
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge(maxBytes);
  if (!request.body) return "";
  const reader = request.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(maxBytes);
    }
    parts.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

function tooLarge(maxBytes: number): LimitExceededError {
  return new LimitExceededError(
    "payload_too_large",
    `The request body is larger than this host accepts (${maxBytes} bytes); send a smaller input or payload, or keep large data elsewhere and send a reference.`,
  );
}

/** A request with the same URL, method and headers as `request` and `body` as its text. */
export function withBody(request: Request, body: string): Request {
  const headers = new Headers(request.headers);
  headers.delete("content-length");
  return new Request(request.url, { method: request.method, headers, body });
}

/** A stable id (or idempotency key) scoped to one principal: other principals' keys never meet it. */
export async function scopedKey(prefix: string, principal: string, key: string): Promise<string> {
  return `${prefix}${(await sha256Hex(`${principal}\u0000${key}`)).slice(0, 40)}`;
}
