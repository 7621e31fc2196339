/**
 * The Worker side of the "one Durable Object per fiber" layout: `routeToFiberObject` sends each
 * Fiberline request to the object named after its fiber id, so fibers spread over as many
 * objects (and Cloudflare locations) as there are fibers. Apps that group fibers instead (one
 * object per conversation or per user) route by their own key and forward to `host.fetch`.
 */

import { FiberlineError, InvalidInputError } from "../core/errors";
import { sha256Hex } from "../core/sha256";
import { DEFAULT_PREFIX, type StartRequest } from "../sw/protocol";
import { type Authorize, fiberRouteOf, principalOf, readBodyText, scopedKey, withBody } from "./authorize";
import { originPolicy } from "./cors";
import { errorResponse } from "./http-routes";
import { DEFAULT_MAX_SHIPMENT_BYTES } from "./replica-routes";

/** The part of a `DurableObjectNamespace` binding the router uses. */
export interface DurableObjectNamespaceLike {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(request: Request): Promise<Response> };
}

/** Options of `routeToFiberObject`. */
export interface FiberRouterOptions {
  /** Route prefix (default "/__fiberline"), the same as the host's. */
  prefix?: string;
  /**
   * Decides who sent each request before it reaches any object (see `Authorize`); pass the same
   * hook to `createDurableObjectHost`, which enforces who owns which fiber. With it, each
   * principal's fiber ids live apart: the object is chosen by principal and id, so another
   * principal's "chat-1" is a different fiber and never the same object.
   */
  authorize?: Authorize;
  /**
   * `"fiber"` (default): one object per fiber. `"principal"`: all fibers of one principal in one
   * object (needs `authorize`), so `list` works and the host's `maxUnfinishedFibers` counts all of
   * that principal's fibers.
   */
  group?: "fiber" | "principal";
  /** Largest request body accepted, in bytes (`413 payload_too_large` above it), checked before routing. */
  maxBodyBytes?: number;
  /**
   * Largest continuity shipment (`POST .../replicate`) accepted, in bytes (default 8 MiB), in
   * place of `maxBodyBytes`: a browser batches up to 256 KiB of history per shipment, and one it
   * can never ship would stall its fiber (see `HostLimits.maxShipmentBytes`).
   */
  maxShipmentBytes?: number;
  /**
   * Origins whose pages and Service Workers may call across origins (CORS; see
   * `DurableObjectHostOptions.allowedOrigins`, same meaning): their preflights are answered here,
   * before `authorize` (a preflight carries no token) and without reaching an object; a request
   * from any other origin gets `403 origin_not_allowed`.
   */
  allowedOrigins?: readonly string[];
}

/**
 * Forwards a Fiberline request to the Durable Object of its fiber, or returns `null` for a path
 * outside the prefix. A start without an `id` gets one: derived from its `idempotencyKey` (so a
 * retried start reaches the same object and joins the fiber; scoped to the principal with
 * `authorize`), else a random UUID (`crypto.randomUUID`, unguessable).
 *
 * Failure semantics: a request `authorize` refuses, or whose body passes `maxBodyBytes`, is
 * answered here and reaches no object, so nothing is written. Listing (`GET {prefix}/fibers`)
 * spans objects and is refused with `400` (`invalid_argument`) unless fibers are grouped per
 * principal. Everything else is answered by the object, errors included.
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
  const cors = options.allowedOrigins ? originPolicy(options.allowedOrigins) : undefined;
  if (!cors) return await route(request, url, prefix, namespace, options);
  const refused = cors.refuse(request);
  if (refused) return refused;
  return cors.allow(request, await route(request, url, prefix, namespace, options));
}

async function route(
  request: Request,
  url: URL,
  prefix: string,
  namespace: DurableObjectNamespaceLike,
  options: FiberRouterOptions,
): Promise<Response> {
  const group = options.group ?? "fiber";
  try {
    if (group === "principal" && !options.authorize) {
      throw new FiberlineError(
        "invalid_argument",
        'routeToFiberObject: group "principal" needs an authorize hook to know the principal.',
      );
    }
    const path = url.pathname.slice(prefix.length);
    const route = fiberRouteOf(request.method, path);
    const principal =
      options.authorize && route
        ? await principalOf(options.authorize, request, route.action, route.id)
        : undefined;
    const object = (id: string) => namespace.get(namespace.idFromName(objectName(group, principal, id)));
    if (request.method === "POST") {
      const max =
        route?.action === "replicate"
          ? (options.maxShipmentBytes ?? DEFAULT_MAX_SHIPMENT_BYTES)
          : options.maxBodyBytes;
      request = withBody(request, await readBodyText(request, max));
    }
    if (route?.action === "start") return await routeStart(request, principal, object);
    if (route?.action === "list") {
      if (group === "principal") return await object("").fetch(request);
      throw new InvalidInputError(
        "invalid_argument",
        "Listing fibers spans Durable Objects, and this Worker keeps one object per fiber: keep your own index of fiber ids, or group fibers in one object per conversation or user and list there.",
      );
    }
    if (route?.id !== undefined) return await object(route.id).fetch(request);
    const segments = path.split("/");
    // With authorize, a request that names no action is answered here: an unauthenticated
    // caller must not make the Worker create (and so write) an object of any name it likes.
    if (segments[1] !== "fibers" || segments.length < 3 || options.authorize) {
      throw new FiberlineError("route_not_found", `No Fiberline route at ${url.pathname}.`);
    }
    let id: string;
    try {
      id = decodeURIComponent(segments[2] ?? "");
    } catch {
      throw new InvalidInputError("invalid_id", `Malformed fiber id in ${url.pathname}.`);
    }
    // An unknown action or method on a fiber: the object answers it (404 / 405) and reads nothing.
    return await object(id).fetch(request);
  } catch (error) {
    return errorResponse(error);
  }
}

async function routeStart(
  request: Request,
  principal: string | undefined,
  object: (id: string) => { fetch(request: Request): Promise<Response> },
): Promise<Response> {
  let body: StartRequest;
  try {
    body = (await request.json()) as StartRequest;
    if (body === null || typeof body !== "object" || Array.isArray(body)) throw new Error("not an object");
  } catch {
    return errorResponse(new InvalidInputError("invalid_argument", "POST /fibers needs a JSON object body."));
  }
  const malformed = malformedStartKey(body);
  if (malformed) return errorResponse(malformed);
  const id =
    typeof body.id === "string"
      ? body.id
      : typeof body.idempotencyKey === "string"
        ? principal === undefined
          ? await idForKey(body.idempotencyKey)
          : await scopedKey("key-", principal, body.idempotencyKey)
        : crypto.randomUUID();
  return await object(id).fetch(withBody(request, JSON.stringify({ ...body, id })));
}

/** The name of the object a fiber lives in. */
function objectName(group: "fiber" | "principal", principal: string | undefined, id: string): string {
  if (principal === undefined) return id;
  // JSON keeps the parts apart whatever characters a principal holds.
  return group === "principal" ? JSON.stringify(["principal", principal]) : JSON.stringify([principal, id]);
}

/** A stable fiber id for an idempotency key. */
async function idForKey(key: string): Promise<string> {
  return `key-${(await sha256Hex(key)).slice(0, 40)}`;
}

/**
 * A start whose `id` or `idempotencyKey` is there but not a string is refused before anything is
 * written (rule 11), not given a random id that every retry would make anew.
 */
export function malformedStartKey(body: StartRequest): InvalidInputError | undefined {
  for (const [field, value] of [
    ["id", body.id],
    ["idempotencyKey", body.idempotencyKey],
  ] as const) {
    if (value !== undefined && typeof value !== "string")
      return new InvalidInputError(
        "invalid_id",
        `POST /fibers: "${field}" must be a string, got ${value === null ? "null" : typeof value}.`,
      );
  }
  return undefined;
}
