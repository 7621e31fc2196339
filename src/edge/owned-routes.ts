/**
 * The edge host's routes with an owner per fiber: every request is authorised first
 * (`authorize`), a start records its caller as the fiber's owner, and every later request by
 * another principal is answered exactly as for an id that does not exist (`404 fiber_not_found`),
 * so fiber ids cannot be probed. Limits (body size, unfinished fibers per principal) refuse a
 * request before anything is written. Behind the checks, `handleFiberlineRequest` does the work.
 */

import { FiberlineError, FiberNotFoundError, LimitExceededError } from "../core/errors";
import { isTerminal } from "../core/records";
import type { Store } from "../core/store";
import type { StartRequest } from "../sw/protocol";
import { type Authorize, fiberRouteOf, principalOf, readBodyText, scopedKey, withBody } from "./authorize";
import type { FiberOwners } from "./fiber-owners";
import { malformedStartKey } from "./fiber-router";
import { errorResponse, handleFiberlineRequest, json, type RouteOptions, readQuery } from "./http-routes";

/** Per-principal limits of a host; each refusal is a typed JSON error. */
export interface HostLimits {
  /** Largest request body accepted, in bytes (`413 payload_too_large` above it). */
  maxBodyBytes?: number;
  /**
   * Most fibers one principal may have unfinished (running, sleeping or waiting) in this object
   * at once; a start beyond it is refused with `429 too_many_fibers`. Joining an existing fiber
   * is never refused.
   */
  maxUnfinishedFibers?: number;
  /**
   * Largest continuity shipment accepted, in bytes (default 8 MiB). Separate from `maxBodyBytes`
   * because a browser batches up to 256 KiB of its history per shipment (one position may be
   * larger still): a shipment refused for its size could never be shipped, and the fiber's
   * outbox would stall.
   */
  maxShipmentBytes?: number;
}

/** What the owned routes need beyond `RouteOptions`. */
export interface OwnedRouteOptions extends RouteOptions {
  authorize: Authorize;
  owners: FiberOwners;
  limits: HostLimits;
  /** Serialises starts, so the owner check, the limit and the start are one decision. */
  exclusive<T>(work: () => Promise<T>): Promise<T>;
}

/**
 * Answers a request under `prefix` for its authorised owner, or returns `null` for any other path.
 *
 * Failure semantics: a refused request (`401`, `404` for another principal's fiber, `413`, `429`)
 * writes nothing. A start records its owner row before the fiber record and removes it again when
 * the start did not create the fiber; a crash in between leaves a row for an id with no fiber,
 * which the next start of that id takes over.
 */
export async function handleOwnedRequest(
  request: Request,
  options: OwnedRouteOptions,
): Promise<Response | null> {
  const url = new URL(request.url);
  const { prefix } = options;
  if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) return null;
  const route = fiberRouteOf(request.method, url.pathname.slice(prefix.length));
  // Unknown paths and methods carry no fiber data: the plain routes answer them (404 / 405).
  if (!route) return await handleFiberlineRequest(request, options);
  try {
    const principal = await principalOf(options.authorize, request, route.action, route.id);
    let forwarded = request;
    if (request.method === "POST") {
      forwarded = withBody(request, await readBodyText(request, options.limits.maxBodyBytes));
    }
    if (route.action === "start") return await start(forwarded, principal, options);
    if (route.action === "list") return await list(url, principal, options);
    if (route.id === undefined || options.owners.ownerOf(route.id) !== principal) {
      throw new FiberNotFoundError(route.id ?? "");
    }
    return await plain(forwarded, options);
  } catch (error) {
    return errorResponse(error);
  }
}

async function start(request: Request, principal: string, options: OwnedRouteOptions): Promise<Response> {
  const body = await startBody(request);
  if (!body) return await plain(request, options); // answers the 400
  const malformed = malformedStartKey(body);
  if (malformed) throw malformed;
  // An idempotency key is the caller's own: two principals using "order-7" never meet.
  const key =
    typeof body.idempotencyKey === "string"
      ? await scopedKey("k-", principal, body.idempotencyKey)
      : undefined;
  const id =
    typeof body.id === "string"
      ? body.id
      : key !== undefined
        ? await scopedKey("key-", principal, body.idempotencyKey as string)
        : crypto.randomUUID();
  const { runtime, owners, limits } = options;
  return await options.exclusive(async () => {
    const existing = await runtime.get(id);
    if (existing) {
      if (owners.ownerOf(id) !== principal) throw new FiberNotFoundError(id);
    } else {
      await refuseOverLimit(runtime.store, owners, principal, limits.maxUnfinishedFibers);
      owners.claim(id, principal);
    }
    const rewritten = { ...body, id, ...(key === undefined ? {} : { idempotencyKey: key }) };
    const response = await plain(withBody(request, JSON.stringify(rewritten)), options);
    if (!existing && !response.ok && !(await runtime.get(id))) owners.release(id);
    // The existing fiber may have been collected (its row with it) while this start made a new one.
    if (existing && response.ok && (await runtime.get(id))) owners.keep(id, principal);
    return response;
  });
}

/** The plain routes' answer to a path already known to be under the prefix. */
async function plain(request: Request, options: RouteOptions): Promise<Response> {
  const response = await handleFiberlineRequest(request, options);
  if (response) return response;
  throw new FiberlineError("route_not_found", `No Fiberline route at ${new URL(request.url).pathname}.`);
}

async function startBody(request: Request): Promise<StartRequest | undefined> {
  try {
    const body: unknown = await request.clone().json();
    if (body !== null && typeof body === "object" && !Array.isArray(body)) return body as StartRequest;
  } catch {
    // not JSON
  }
  return undefined;
}

/**
 * Refuses a new fiber of `principal` (a start, or a browser's first shipment of a replica) when it
 * already has `max` unfinished fibers in this object.
 */
export async function refuseOverLimit(
  store: Pick<Store, "listFibers">,
  owners: FiberOwners,
  principal: string,
  max: number | undefined,
): Promise<void> {
  if (max === undefined) return;
  const mine = owners.idsOf(principal);
  const unfinished = await store.listFibers({ status: ["running", "sleeping", "waiting"] });
  const count = unfinished.filter((record) => mine.has(record.id) && !isTerminal(record.status)).length;
  if (count >= max) {
    throw new LimitExceededError(
      "too_many_fibers",
      `You already have ${count} unfinished fibers, the most this host runs for one caller (${max}); wait for one to end or cancel one, then start again.`,
    );
  }
}

async function list(url: URL, principal: string, options: OwnedRouteOptions): Promise<Response> {
  const { limit, ...query } = readQuery(url);
  const mine = options.owners.idsOf(principal);
  const records = (await options.runtime.list(query)).filter((record) => mine.has(record.id));
  return json(limit === undefined ? records : records.slice(0, limit));
}
