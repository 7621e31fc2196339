/**
 * `EdgeLink`: how a browser home talks to the edge host of its replicated fibers over HTTP, one
 * object for every call the browser makes there: shipments (`shipOverHttp`), reading the replica
 * for the mirror (`GET {base}/fibers/:id/replica?after=N&cursor=C&wait=MS`), and the control calls it forwards
 * while a fiber is away (`POST {base}/fibers/:id/events`, `POST {base}/fibers/:id/cancel`), and
 * asking for a fiber back (`POST {base}/fibers/:id/come-home`).
 * `baseUrl` is the edge host's origin and route prefix, e.g. `https://edge.example/__fiberline`.
 * Errors the edge answers with an `ErrorBody` come back as the same error class and `code`.
 */

import { deserializeError, FiberlineError } from "../core/errors";
import type { FiberStatus } from "../core/records";
import { eitherSignal } from "../core/signals";
import type { ReplicaAnswer, ReplicaReadOptions, ReplicaSnapshot } from "../edge/replica-read";
import { shipOverHttp } from "../edge/replica-routes";
import { decodeValue, encodeValue } from "../edge/value-codec";
import type { SendEventRequest } from "../sw/protocol";
import type { ComeHomeAnswer, Shipment, ShipmentAnswer } from "./protocol";

/** Options of `new EdgeLink`. */
export interface EdgeLinkOptions {
  /** The edge host's origin and prefix, e.g. `https://edge.example/__fiberline`. */
  baseUrl: string;
  /**
   * Headers sent with every request (credentials the edge's `authorize` checks); a function is
   * asked at every request, so a short-lived token can be refreshed.
   */
  headers?: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  /** The `fetch` to use (default the global one). */
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  /**
   * How long a shipment, a replica read or a cancel waits for the edge's answer (default 15 s; a
   * held replica read, its `waitMs` more): a page's stream and calls wait on them, and a shipment
   * that hangs would stop the fiber's shipping, so a network that swallows requests must not hold
   * them forever (a shipment is sent again: its positions make that safe). An event is not cut short: the edge may have accepted
   * it, and a sender told it failed would send it again.
   */
  timeoutMs?: number;
}

/** The browser's HTTP client of one edge host. */
export class EdgeLink {
  readonly baseUrl: string;
  readonly #headers: NonNullable<EdgeLinkOptions["headers"]>;
  readonly #fetch: (url: string, init: RequestInit) => Promise<Response>;
  readonly #timeoutMs: number;
  /** The shipper's `send`. */
  readonly ship: (fiberId: string, shipment: Shipment) => Promise<ShipmentAnswer>;

  constructor(options: EdgeLinkOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#headers = options.headers ?? {};
    // Looked up at each call, so a test (or a polyfill) that replaces the global fetch is used.
    this.#fetch = options.fetch ?? ((url, init) => fetch(url, init));
    this.#timeoutMs = options.timeoutMs ?? 15_000;
    this.ship = shipOverHttp(this.baseUrl, this.#fetch, this.#headers, this.#timeoutMs);
  }

  /**
   * The replica of `fiberId` with its chunks past `after`, or `undefined` when the edge has no
   * replica of it (`404 fiber_not_found`): whole, or with `options.cursor` what changed since
   * (held up to `options.waitMs` until something did). Rejects on the network, on any other
   * answer, and when `options.signal` aborts.
   */
  async readReplica(fiberId: string, after: number): Promise<ReplicaSnapshot | undefined>;
  async readReplica(
    fiberId: string,
    after: number,
    options?: ReplicaReadOptions,
  ): Promise<ReplicaAnswer | undefined>;
  async readReplica(
    fiberId: string,
    after: number,
    options: ReplicaReadOptions = {},
  ): Promise<ReplicaAnswer | undefined> {
    const query = new URLSearchParams({ after: String(after) });
    if (options.cursor !== undefined) query.set("cursor", options.cursor);
    const waitMs = Math.max(0, Math.round(options.waitMs ?? 0));
    if (waitMs > 0) query.set("wait", String(waitMs));
    const { signal, dispose } = eitherSignal(AbortSignal.timeout(this.#timeoutMs + waitMs), options.signal);
    try {
      const response = await untilAborted(
        this.#fetch(`${this.#fiberUrl(fiberId)}/replica?${query}`, {
          headers: await this.#headersNow(),
          signal,
        }),
        signal,
      );
      if (response.status === 404) {
        const error = await errorOf(response, fiberId);
        if ((error as { code?: string }).code === "fiber_not_found") return undefined;
        throw error;
      }
      if (!response.ok) throw await errorOf(response, fiberId);
      return decodeValue(await response.text()) as ReplicaAnswer;
    } finally {
      dispose();
    }
  }

  /**
   * Sends event `name` to the fiber at the edge; resolves once the edge accepted it (`202`).
   * `eventId`: the id this home gave the event, when it was buffered here first (see
   * `SendEventRequest.eventId`).
   */
  async sendEvent(fiberId: string, name: string, payload?: unknown, eventId?: string): Promise<void> {
    const body: SendEventRequest = {
      name,
      ...(payload === undefined ? {} : { payload }),
      ...(eventId === undefined ? {} : { eventId }),
    };
    const response = await this.#fetch(`${this.#fiberUrl(fiberId)}/events`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(await this.#headersNow()) },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await errorOf(response, fiberId);
    await response.arrayBuffer();
  }

  /** Cancels the fiber at the edge and resolves with the status the edge answered. */
  async cancel(fiberId: string, reason?: string): Promise<FiberStatus> {
    const response = await this.#fetch(`${this.#fiberUrl(fiberId)}/cancel`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(await this.#headersNow()) },
      body: JSON.stringify(reason === undefined ? {} : { reason }),
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    if (!response.ok) throw await errorOf(response, fiberId);
    return ((await response.json()) as { status: FiberStatus }).status;
  }

  /**
   * Asks the arbiter to hand `fiberId` back to browser `home` (`POST {base}/fibers/:id/come-home`):
   * the grant (`200`) or the refusal (`409`). Rejects on the network and on any other answer.
   */
  async comeHome(fiberId: string, home: string): Promise<ComeHomeAnswer> {
    const response = await this.#fetch(`${this.#fiberUrl(fiberId)}/come-home`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(await this.#headersNow()) },
      body: encodeValue({ home }),
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    if (response.status !== 200 && response.status !== 409) throw await errorOf(response, fiberId);
    const answer = decodeValue(await response.text()) as ComeHomeAnswer;
    if (answer?.status !== "granted" && answer?.status !== "refused")
      throw new Error(`The edge answered come-home of fiber ${fiberId} with ${JSON.stringify(answer)}.`);
    return answer;
  }

  async #headersNow(): Promise<Record<string, string>> {
    const headers = this.#headers;
    return typeof headers === "function" ? await headers() : headers;
  }

  #fiberUrl(fiberId: string): string {
    return `${this.baseUrl}/fibers/${encodeURIComponent(fiberId)}`;
  }
}

/**
 * `response`, or a rejection as soon as `signal` aborts, even through a `fetch` that does not
 * heed it (a held read cut short must free its fiber's turn at once); a response that comes
 * after is discarded.
 */
function untilAborted(response: Promise<Response>, signal: AbortSignal): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const aborted = () => reject(signal.reason);
    if (signal.aborted) aborted();
    else signal.addEventListener("abort", aborted, { once: true });
    response.then(
      (value) => {
        signal.removeEventListener("abort", aborted);
        if (signal.aborted) void value.body?.cancel().catch(() => {});
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", aborted);
        reject(error);
      },
    );
  });
}

/** The error an edge answer stands for: its `ErrorBody` rebuilt, or one that says what came back. */
async function errorOf(response: Response, fiberId: string): Promise<Error> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string; name?: string } };
    if (typeof body.error?.code === "string")
      return deserializeError({
        name: body.error.name ?? "FiberlineError",
        code: body.error.code,
        message: body.error.message ?? "",
      });
  } catch {
    // Not an ErrorBody: reported below with what the edge sent.
  }
  return new FiberlineError(
    "edge_unavailable",
    `The edge answered a request for fiber ${fiberId} with ${response.status}: ${text.slice(0, 200)}. Check that the edge host at the configured baseUrl runs with continuity on.`,
  );
}
