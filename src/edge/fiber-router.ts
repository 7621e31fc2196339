/**
 * The Worker side of the "one Durable Object per fiber" layout: `routeToFiberObject` sends each
 * Fiberline request to the object named after its fiber id, so fibers spread over as many
 * objects (and Cloudflare locations) as there are fibers. Apps that group fibers instead (one
 * object per conversation or per user) route by their own key and forward to `host.fetch`.
 */

import { FiberlineError, InvalidInputError } from "../core/errors";
import { DEFAULT_PREFIX, type StartRequest } from "../sw/protocol";
import { errorResponse } from "./http-routes";

/** The part of a `DurableObjectNamespace` binding the router uses. */
export interface DurableObjectNamespaceLike {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(request: Request): Promise<Response> };
}

/** Options of `routeToFiberObject`. */
export interface FiberRouterOptions {
  /** Route prefix (default "/__fiberline"), the same as the host's. */
  prefix?: string;
}

/**
 * Forwards a Fiberline request to the Durable Object of its fiber, or returns `null` for a path
 * outside the prefix. A start without an `id` gets one: derived from its `idempotencyKey` (so a
 * retried start reaches the same object and joins the fiber), else a random UUID.
 *
 * Failure semantics: listing (`GET {prefix}/fibers`) spans objects and is refused with `400`
 * (`invalid_argument`); keep an index of your own, or group fibers per object. Everything else
 * is answered by the object, errors included.
 *
 * @example
 * export default {
 *   async fetch(request: Request, env: Env) {
 *     return (await routeToFiberObject(request, env.FIBERS)) ?? new Response("Not found", { status: 404 });
 *   },
 * };
 */
export async function routeToFiberObject(
  request: Request,
  namespace: DurableObjectNamespaceLike,
  options: FiberRouterOptions = {},
): Promise<Response | null> {
  const prefix = (options.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, "");
  const url = new URL(request.url);
  if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) return null;
  const segments = url.pathname.slice(prefix.length).split("/");
  if (segments[1] !== "fibers") {
    return errorResponse(new FiberlineError("route_not_found", `No Fiberline route at ${url.pathname}.`));
  }
  if (segments.length === 2 && request.method === "POST") return await routeStart(request, namespace);
  if (segments.length === 2) {
    return errorResponse(
      new InvalidInputError(
        "invalid_argument",
        "Listing fibers spans Durable Objects, and this Worker keeps one object per fiber: keep your own index of fiber ids, or group fibers in one object per conversation or user and list there.",
      ),
    );
  }
  let id: string;
  try {
    id = decodeURIComponent(segments[2] ?? "");
  } catch {
    return errorResponse(new InvalidInputError("invalid_id", `Malformed fiber id in ${url.pathname}.`));
  }
  return await objectOf(namespace, id).fetch(request);
}

async function routeStart(request: Request, namespace: DurableObjectNamespaceLike): Promise<Response> {
  let body: StartRequest;
  try {
    body = (await request.json()) as StartRequest;
    if (body === null || typeof body !== "object") throw new Error("not an object");
  } catch {
    return errorResponse(new InvalidInputError("invalid_argument", "POST /fibers needs a JSON object body."));
  }
  const id =
    typeof body.id === "string"
      ? body.id
      : typeof body.idempotencyKey === "string"
        ? await idForKey(body.idempotencyKey)
        : crypto.randomUUID();
  const forwarded = new Request(request.url, {
    method: "POST",
    headers: request.headers,
    body: JSON.stringify({ ...body, id }),
  });
  return await objectOf(namespace, id).fetch(forwarded);
}

function objectOf(namespace: DurableObjectNamespaceLike, id: string) {
  return namespace.get(namespace.idFromName(id));
}

/** A stable fiber id for an idempotency key. */
async function idForKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `key-${hex.slice(0, 40)}`;
}
