/**
 * The continuity wire over HTTP (issue #18, docs/design/continuity.md), both ends in one file:
 * the edge host's routes `POST {prefix}/fibers/:id/replicate` (a browser's shipment, applied by
 * the fiber's `Arbiter`: `200 { status: "ok", appliedPos, leaseMs }`, or `409` with the `fenced`
 * or `out_of_order` answer) and `GET {prefix}/fibers/:id/replica?after=N[&cursor=C][&wait=MS]`
 * (for a browser that mirrors it: the replica's record, journal, snapshot, inbox and its chunks
 * past seq N; with the cursor of an earlier answer, only what changed since, held up to `wait` ms
 * until something did: `replica-read.ts`), and `shipOverHttp`, the `send` a `Shipper` uses to
 * reach them. Bodies are the edge value codec's JSON, so shipped values keep their structured-clone
 * fidelity.
 */

import { type Arbiter, refusalWithoutReplica } from "../continuity/arbiter";
import type { Shipment, ShipmentAnswer } from "../continuity/protocol";
import { FiberNotFoundError, InvalidInputError } from "../core/errors";
import type { Store } from "../core/store";
import { HOST_HEADER } from "../sw/protocol";
import { type Authorize, principalOf, readBodyText } from "./authorize";
import type { FiberOwners } from "./fiber-owners";
import { errorResponse } from "./http-routes";
import { type HostLimits, refuseOverLimit } from "./owned-routes";
import { MAX_REPLICA_WAIT_MS, type ReplicaWrites, readReplica, readReplicaWhenChanged } from "./replica-read";
import { decodeValue, encodeValue } from "./value-codec";

// Kept importable from here, where they lived before `replica-read.ts` (tests and e2e use them).
export {
  type ReplicaAnswer,
  type ReplicaDelta,
  type ReplicaSnapshot,
  readReplica,
} from "./replica-read";

/** What the routes need. */
export interface ReplicaRouteOptions {
  arbiter: Arbiter;
  /** The replica store (the host's `SqliteStore`). */
  store: Store;
  prefix: string;
  /**
   * With the host's `authorize` hook: the principal whose shipment created a replica (position 1)
   * owns it, and every other principal gets `404 fiber_not_found` for it, on both routes, exactly
   * as the owned routes answer for another principal's fiber.
   */
  owned?: OwnedReplicaOptions;
  /**
   * Tells a held read (`wait`) that the replica was written: the store every writer of the
   * replicas writes through (the host's `WatchedStore`). Without it, `wait` is ignored.
   */
  writes?: ReplicaWrites;
}

/** The owner checks of the continuity routes (see `ReplicaRouteOptions.owned`). */
export interface OwnedReplicaOptions {
  authorize: Authorize;
  owners: FiberOwners;
  limits: HostLimits;
  /** The host's serialiser of starts: a replica's creation is a start. */
  exclusive<T>(work: () => Promise<T>): Promise<T>;
}

/** `HostLimits.maxShipmentBytes` when the host sets none: twice the default outbox bound. */
export const DEFAULT_MAX_SHIPMENT_BYTES = 8 * 1024 * 1024;

const ROUTE = /^\/fibers\/([^/]+)\/(replicate|replica|come-home)$/;

/**
 * Answers a continuity route, or `null` for any other path.
 *
 * Failure semantics: a shipment is applied by `Arbiter.receive` (each of its transactions
 * commits whole, before the answer leaves); a malformed body is `400` and writes nothing.
 */
export async function handleReplicaRequest(
  request: Request,
  { arbiter, store, prefix, owned, writes }: ReplicaRouteOptions,
): Promise<Response | null> {
  const url = new URL(request.url);
  if (!url.pathname.startsWith(`${prefix}/`)) return null;
  const match = ROUTE.exec(url.pathname.slice(prefix.length));
  if (!match) return null;
  try {
    let id: string;
    try {
      id = decodeURIComponent(match[1] ?? "");
    } catch {
      throw new InvalidInputError(
        "invalid_id",
        `${url.pathname}: the fiber id is not valid percent-encoding.`,
      );
    }
    if (match[2] === "replicate") {
      if (request.method !== "POST")
        return errorResponse(invalid(`${url.pathname} only answers POST.`), {
          status: 405,
          headers: { allow: "POST" },
        });
      if (owned) return await ownedShipment(request, id, arbiter, store, owned);
      const answer = await arbiter.receive(id, readShipment(await request.text()));
      return encoded(answer, answer.status === "ok" ? 200 : 409);
    }
    if (match[2] === "come-home") {
      if (request.method !== "POST")
        return errorResponse(invalid(`${url.pathname} only answers POST.`), {
          status: 405,
          headers: { allow: "POST" },
        });
      if (owned) {
        const principal = await principalOf(owned.authorize, request, "replicate", id);
        if (owned.owners.ownerOf(id) !== principal) throw new FiberNotFoundError(id);
      }
      const home = readComeHome(await request.text());
      const answer = await arbiter.comeHome(id, home);
      return encoded(answer, answer.status === "granted" ? 200 : 409);
    }
    if (request.method !== "GET")
      return errorResponse(invalid(`${url.pathname} only answers GET.`), {
        status: 405,
        headers: { allow: "GET" },
      });
    if (owned) {
      const principal = await principalOf(owned.authorize, request, "read", id);
      if (owned.owners.ownerOf(id) !== principal) throw new FiberNotFoundError(id);
    }
    const after = wholeNumber(url.searchParams.get("after"), "after");
    const cursor = url.searchParams.get("cursor") ?? undefined;
    const waitMs = Math.min(wholeNumber(url.searchParams.get("wait"), "wait"), MAX_REPLICA_WAIT_MS);
    const replica =
      writes === undefined
        ? await readReplica(store, id, after, cursor)
        : await readReplicaWhenChanged(store, writes, id, after, {
            ...(cursor === undefined ? {} : { cursor }),
            waitMs,
            signal: request.signal,
          });
    if (replica === undefined) throw new FiberNotFoundError(id);
    return encoded(replica, 200);
  } catch (error) {
    return errorResponse(error);
  }
}

/** A query parameter that must be a whole number (absent: 0). */
function wholeNumber(value: string | null, name: string): number {
  const n = Number(value ?? "0");
  if (!Number.isInteger(n) || n < 0) throw invalid(`replica: \`${name}\` must be a whole number.`);
  return n;
}

/**
 * A shipment from an authorised principal. A fiber nobody owns yet is created by it (position 1)
 * and owned by its sender from then on, inside the host's start serialiser so two principals
 * shipping one new id cannot both win; a replica of another principal answers `404` as though it
 * did not exist (a refusal the arbiter gives for an unknown id, or `404` for a creation, as a
 * start of another principal's id gets), so a shipment can neither write to it nor take it over,
 * not even with the right home and epoch, which are not secrets.
 */
async function ownedShipment(
  request: Request,
  id: string,
  arbiter: Arbiter,
  store: Store,
  owned: OwnedReplicaOptions,
): Promise<Response> {
  const principal = await principalOf(owned.authorize, request, "replicate", id);
  const shipment = readShipment(
    await readBodyText(request, owned.limits.maxShipmentBytes ?? DEFAULT_MAX_SHIPMENT_BYTES),
  );
  const answer = await owned.exclusive(async () => {
    const owner = owned.owners.ownerOf(id);
    if (owner === principal) {
      // A create of a new fiber under an id whose replica ended (the browser collected it and
      // started the id again) makes an unfinished fiber as any creation does: within the limit.
      const [first] = shipment.entries;
      if (first?.type === "create" && first.record.createdAt !== (await store.getFiber(id))?.createdAt)
        await refuseOverLimit(store, owned.owners, principal, owned.limits.maxUnfinishedFibers);
      const received = await arbiter.receive(id, shipment);
      // The ended replica may have been collected (its row with it) while this one was created.
      if (await store.getFiber(id)) owned.owners.keep(id, principal);
      return received;
    }
    // Another principal's replica, or a fiber with no owner row (started before authorize was
    // on): answered as though there were none, and a creation is refused as a start would be.
    if (owner !== undefined || (await store.getFiber(id))) {
      const refused = refusalWithoutReplica(shipment);
      if (refused) return refused;
      throw new FiberNotFoundError(id);
    }
    if (shipment.entries[0]?.type === "create")
      await refuseOverLimit(store, owned.owners, principal, owned.limits.maxUnfinishedFibers);
    owned.owners.claim(id, principal);
    try {
      return await arbiter.receive(id, shipment);
    } finally {
      if (!(await store.getFiber(id))) owned.owners.release(id);
    }
  });
  return encoded(answer, answer.status === "ok" ? 200 : 409);
}

/**
 * The `send` of a `Shipper` that reaches the edge host at `baseUrl` (its origin and prefix, e.g.
 * `https://edge.example/__fiberline`) with `fetch`: resolves with the arbiter's answer, rejects
 * on anything else (the network, a `5xx`, no answer within `timeoutMs`), and the shipper retries.
 *
 * @example
 * const shipper = new Shipper({ outbox, home, send: shipOverHttp("https://edge.example/__fiberline") });
 * // behind authorize: shipOverHttp(base, fetch, async () => ({ authorization: `Bearer ${await token()}` }))
 */
export function shipOverHttp(
  baseUrl: string,
  fetchImpl: (url: string, init: RequestInit) => Promise<Response> = fetch,
  headers: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>) = {},
  timeoutMs = SHIPMENT_TIMEOUT_MS,
): (fiberId: string, shipment: Shipment) => Promise<ShipmentAnswer> {
  const base = baseUrl.replace(/\/+$/, "");
  const exchange = async (fiberId: string, body: string, signal: AbortSignal): Promise<ShipmentAnswer> => {
    // A function is asked at every shipment, so a short-lived token can be refreshed.
    const extra = typeof headers === "function" ? await headers() : headers;
    const response = await fetchImpl(`${base}/fibers/${encodeURIComponent(fiberId)}/replicate`, {
      method: "POST",
      headers: { "content-type": "application/json", ...extra },
      body,
      signal,
    });
    const text = await response.text();
    if (response.status !== 200 && response.status !== 409)
      throw new Error(
        `The edge answered a shipment of fiber ${fiberId} with ${response.status}: ${text.slice(0, 200)}`,
      );
    const answer = decodeValue(text) as ShipmentAnswer;
    if (typeof answer?.status !== "string")
      throw new Error(`The edge answered a shipment with ${text.slice(0, 200)}`);
    return answer;
  };
  // A shipment nobody answers (a network that swallows it) fails after `timeoutMs`, even through a
  // fetch that does not heed the signal, so the shipper sends again: positions make that safe.
  return (fiberId, shipment) => {
    const body = encodeValue(shipment);
    // The upload counts too: a batch of 256 KiB on a slow uplink must not time out every time.
    const signal = AbortSignal.timeout(timeoutMs + Math.ceil(body.length / SHIPMENT_UPLOAD_BYTES_PER_MS));
    const timedOut = new Promise<never>((_, reject) => {
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    timedOut.catch(() => {}); // the exchange settled first
    return Promise.race([exchange(fiberId, body, signal), timedOut]);
  };
}

/** How long a shipment waits for the arbiter's answer before it is sent again (15 s), plus its upload. */
export const SHIPMENT_TIMEOUT_MS = 15_000;
/** The slowest upload a shipment's deadline allows for (32 KB/s: a poor mobile uplink). */
const SHIPMENT_UPLOAD_BYTES_PER_MS = 32;

function readShipment(text: string): Shipment {
  let value: unknown;
  try {
    value = decodeValue(text);
  } catch {
    throw invalid("replicate: the body is not a shipment.");
  }
  const s = value as Partial<Shipment> | null;
  const ok =
    s !== null &&
    typeof s === "object" &&
    typeof s.home === "string" &&
    Number.isInteger(s.epoch) &&
    Number.isInteger(s.from) &&
    Array.isArray(s.entries);
  if (!ok) throw invalid("replicate: the body needs { home, epoch, from, entries }.");
  return s as Shipment;
}

/** The body of a come-home request: `{ home: "browser:<deviceId>" }`. */
function readComeHome(text: string): string {
  let value: unknown;
  try {
    value = decodeValue(text);
  } catch {
    throw invalid("come-home: the body is not JSON.");
  }
  const home = (value as { home?: unknown } | null)?.home;
  if (typeof home !== "string" || !home.startsWith("browser:"))
    throw invalid('come-home: the body needs { home: "browser:<deviceId>" }.');
  return home;
}

function encoded(value: unknown, status: number): Response {
  return new Response(encodeValue(value), {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      [HOST_HEADER]: "1",
    },
  });
}

function invalid(message: string): InvalidInputError {
  return new InvalidInputError("invalid_argument", message);
}
