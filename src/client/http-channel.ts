/**
 * The control calls of `fiberline/client` over HTTP, for a host reached by URL instead of a
 * Service Worker (the edge host in a Cloudflare Durable Object): the routes of `protocol.ts`,
 * JSON in and out, each with a deadline, errors rebuilt with their class and `code`. Used by
 * `FiberlineClient` when `connect({ baseUrl })`.
 */

import { ConnectionError, deserializeError, FiberNotFoundError } from "../core/errors";
import {
  type ErrorBody,
  fibersUrl,
  PROTOCOL_VERSION,
  type RpcArgs,
  type RpcMethod,
  type RpcResult,
  type WorkerInfo,
} from "../sw/protocol";
import { notCloneable } from "./not-cloneable";

/** What `FiberlineClient` needs of a control channel (`RpcChannel` and `HttpChannel` both are one). */
export interface ControlChannel {
  readonly worker: WorkerInfo | undefined;
  open(): Promise<WorkerInfo>;
  call<M extends RpcMethod>(method: M, args: RpcArgs<M>): Promise<RpcResult<M>>;
  close(): void;
}

/** Options of {@link HttpChannel}. */
export interface HttpChannelOptions {
  /** The host's origin (and path, if any), e.g. "https://fibers.example.workers.dev". */
  baseUrl: string | URL;
  /** The host's route prefix. */
  prefix: string;
  /** Deadline of every call, in ms. */
  timeoutMs: number;
  /** The fetch to use (default the global one). */
  fetch?: typeof fetch;
}

/**
 * Control calls over HTTP.
 *
 * Failure semantics: a call rejects with the host's error rebuilt (class and `code` kept, e.g.
 * `FiberNotFoundError`, `UnknownFiberError`), with `ConnectionError` `deadline_exceeded` when no
 * answer came in `timeoutMs`, and with `ConnectionError` `protocol_error` when the host could not
 * be reached or did not answer as a Fiberline host. After a `ConnectionError` the call may have
 * taken effect: retry it; `start` with the same `id` or `idempotencyKey` joins instead.
 * `heartbeat()` rejects: an HTTP host keeps itself alive and has no worker instance to report.
 */
export class HttpChannel implements ControlChannel {
  readonly #root: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #info: WorkerInfo;
  #closed = false;

  constructor(options: HttpChannelOptions) {
    this.#root = `${String(options.baseUrl).replace(/\/+$/, "")}${options.prefix}`;
    this.#timeoutMs = options.timeoutMs;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#info = {
      instanceId: `http:${this.#root}`,
      scriptUrl: this.#root,
      startedAt: Date.now(),
      protocol: PROTOCOL_VERSION,
      prefix: options.prefix,
    };
  }

  get worker(): WorkerInfo | undefined {
    return this.#closed ? undefined : this.#info;
  }

  /** Nothing to open over HTTP; resolves with a description of the endpoint. */
  async open(): Promise<WorkerInfo> {
    return this.#info;
  }

  async call<M extends RpcMethod>(method: M, args: RpcArgs<M>): Promise<RpcResult<M>> {
    return (await this.#dispatch(method, args as unknown[])) as RpcResult<M>;
  }

  close(): void {
    this.#closed = true;
  }

  async #dispatch(method: RpcMethod, args: unknown[]): Promise<unknown> {
    const root = this.#root;
    const id = String(args[0]);
    switch (method) {
      case "start": {
        const [name, input, options] = args as RpcArgs<"start">;
        return await this.#request("POST", fibersUrl(root), { name, input, ...options });
      }
      case "get":
        try {
          return await this.#request("GET", fibersUrl(root, id));
        } catch (error) {
          if (error instanceof FiberNotFoundError) return undefined;
          throw error;
        }
      case "list": {
        const [query = {}] = args as RpcArgs<"list">;
        const params = new URLSearchParams();
        const statuses = query.status === undefined ? [] : [query.status].flat();
        for (const status of statuses) params.append("status", status);
        if (query.name !== undefined) params.set("name", query.name);
        if (query.limit !== undefined) params.set("limit", String(query.limit));
        const search = params.size > 0 ? `?${params}` : "";
        return await this.#request("GET", `${fibersUrl(root)}${search}`);
      }
      case "inspect":
        return await this.#request("GET", fibersUrl(root, id, "inspect"));
      case "sendEvent": {
        const [, name, payload] = args as RpcArgs<"sendEvent">;
        await this.#request("POST", fibersUrl(root, id, "events"), { name, payload });
        return undefined;
      }
      case "cancel": {
        const [, reason] = args as RpcArgs<"cancel">;
        const reply = (await this.#request("POST", fibersUrl(root, id, "cancel"), {
          ...(reason === undefined ? {} : { reason }),
        })) as { status: unknown };
        return reply.status;
      }
      case "retryPaused":
        // A host reached over HTTP (the edge host) does not watch its storage or pause fibers.
        return undefined;
      case "heartbeat":
        throw new ConnectionError(
          "protocol_error",
          "heartbeat() is for a Service Worker host; a host reached by baseUrl keeps itself alive.",
        );
    }
  }

  async #request(method: "GET" | "POST", url: string, body?: unknown): Promise<unknown> {
    if (this.#closed) {
      throw new ConnectionError("protocol_error", "This client was closed; call connect() again.");
    }
    let json: string | undefined;
    try {
      json = body === undefined ? undefined : JSON.stringify(body);
    } catch (error) {
      // A bigint or a cycle: nothing was sent, and sending it again cannot help.
      throw notCloneable(`${method} ${url}`, "the Fiberline host (as JSON)", error);
    }
    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(url, {
        method,
        cache: "no-store",
        signal: AbortSignal.timeout(this.#timeoutMs),
        ...(json === undefined ? {} : { headers: { "content-type": "application/json" }, body: json }),
      });
      // The body under the same deadline and mapping: a host can answer headers and then stall.
      text = response.status === 202 || response.status === 204 ? "" : await response.text();
    } catch (error) {
      if (error instanceof Error && error.name === "TimeoutError") {
        throw new ConnectionError(
          "deadline_exceeded",
          `${method} ${url} got no answer within ${this.#timeoutMs} ms; it may or may not have taken effect.`,
          { cause: error },
        );
      }
      throw new ConnectionError(
        "protocol_error",
        `Could not reach the Fiberline host at ${url} or read its answer (${error instanceof Error ? error.message : String(error)}); check baseUrl and that the host allows this origin (CORS).`,
        { cause: error },
      );
    }
    if (response.status === 202 || response.status === 204) return undefined;
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (response.ok) return parsed;
    const error = (parsed as ErrorBody | undefined)?.error;
    if (typeof error?.code !== "string") {
      throw new ConnectionError(
        "protocol_error",
        `${method} ${url} answered HTTP ${response.status} without a Fiberline error body: is baseUrl a Fiberline host, with the same prefix?`,
      );
    }
    throw deserializeError({
      name: error.name ?? "FiberlineError",
      code: error.code,
      message: error.message,
    });
  }
}
