/**
 * `createDurableObjectHost`: runs a Fiberline runtime inside a Cloudflare Durable Object on its
 * SQLite storage. Recovers fibers when the object starts (inside `blockConcurrencyWhile`) and on
 * every alarm, drives durable timers with the object's single alarm slot, keeps the object alive
 * while fibers run, and serves the HTTP routes of `protocol.ts` (control calls and the event
 * stream, the same bytes the Service Worker host sends).
 *
 * What wakes a stopped object (and so resumes its fibers): any request routed to it, and its
 * alarm, which is always set to the earliest of the next durable timer and, while fibers run, a
 * heartbeat `keepAliveMs` ahead. So a fiber sleeping across an eviction, a crash or a deploy
 * wakes on time with no request arriving, and a fiber cut off mid-step resumes within one
 * heartbeat.
 */

import { Arbiter } from "../continuity/arbiter";
import { ArbitratedStore } from "../continuity/arbitrated-store";
import { cancelReplicated } from "../continuity/cancel";
import { FiberlineError } from "../core/errors";
import type { FiberLocks } from "../core/locks";
import { type FiberStatus, isTerminal } from "../core/records";
import type { RecoverySummary, Runtime } from "../core/runtime";
import type { Store } from "../core/store";
import { type CancelReply, DEFAULT_PREFIX } from "../sw/protocol";
import type { Authorize } from "./authorize";
import { type OriginPolicy, originPolicy } from "./cors";
import { FiberOwners, OwnedStore } from "./fiber-owners";
import { errorResponse, handleFiberlineRequest } from "./http-routes";
import { objectLocks } from "./object-locks";
import { type HostLimits, handleOwnedRequest } from "./owned-routes";
import type { DurableObjectStateLike } from "./platform";
import { readUntil } from "./replica-read";
import { handleReplicaRequest } from "./replica-routes";
import { SqliteStore } from "./sqlite-store";
import { WatchedStore } from "./watched-store";

/** What the host hands the runtime factory; spread it into `createRuntime`. */
export interface RuntimeParts {
  /**
   * The object's `SqliteStore`; with `continuity`, an `ArbitratedStore` over it, which keeps the
   * runtime off replicas a browser still holds (and, beneath it, a `WatchedStore` that wakes the
   * mirrors' held reads).
   */
  store: Store;
  /** Locks that know a Durable Object runs once (see `objectLocks`). */
  locks: FiberLocks;
  /**
   * A long lease (60 s): with exclusive locks no other runner waits on it, so renewing it rarely
   * only saves storage writes (each renewal is a billed row write).
   */
  leaseMs: number;
  /**
   * 900 KiB (`EDGE_MAX_PAYLOAD_BYTES`): a fiber's record is one SQLite row holding its input and
   * its result, and Cloudflare caps a row at 2 MB, so each must stay under half of it. A runtime
   * given more can accept a value its store then cannot write.
   */
  maxPayloadBytes: number;
}

/** The edge's largest payload (see `RuntimeParts.maxPayloadBytes`). */
export const EDGE_MAX_PAYLOAD_BYTES = 900 * 1024;

/** Options of `createDurableObjectHost`. */
export interface DurableObjectHostOptions {
  /**
   * Builds the runtime on the parts the host owns, once per object instance. Spread `parts` into
   * `createRuntime`; close over `env` here to give fibers their bindings and secrets.
   */
  runtime(parts: RuntimeParts): Runtime;
  /** Route prefix (default "/__fiberline"); clients must use the same. */
  prefix?: string;
  /**
   * While fibers run, the alarm fires at least this often, keeping the object busy and bringing
   * an evicted object back to resume them (default 30 s).
   */
  keepAliveMs?: number;
  /** Where unexpected failures are reported (default `console.error`). */
  onError?(error: unknown, doing: string): void;
  /**
   * Decides who sent each request (see `Authorize`). With it, a fiber belongs to the principal
   * that started it: every other principal gets `404 fiber_not_found` for it, exactly as for an
   * id that does not exist, `list` shows each principal only its own fibers, and idempotency
   * keys are scoped to their principal. Without it, anyone who reaches the object may do anything.
   */
  authorize?: Authorize;
  /** Per-principal limits, enforced before anything is written (needs `authorize`). */
  limits?: HostLimits;
  /**
   * Continuity (issue #18, docs/design/continuity.md): this object is the arbiter of fibers a
   * browser replicates to it (`POST .../replicate`, `GET .../replica?after=&cursor=&wait=`), and takes over a
   * fiber once the browser's lease lapses (`leaseMs`, default 30 s). With `authorize`, the
   * principal whose shipment created a replica owns it, as a start owns a fiber: nobody else can
   * ship to it, read it or signal it (`404`, as for an id that does not exist).
   *
   * A cancel of a fiber a browser runs is carried out by that browser: the arbiter keeps it and
   * sends it in the browser's next shipment answer (or, if the browser's lease lapses first, the
   * takeover ends the fiber as `cancelled`). The route waits up to `cancelWaitMs` (default 12 s,
   * above the browser's 10 s heartbeat) for the fiber to end and answers its status; past that it
   * answers `202 { status, forwarded: true }`.
   */
  continuity?: { leaseMs?: number; cancelWaitMs?: number };
  /**
   * Origins whose pages and Service Workers may call the routes across origins (CORS), exactly
   * as they send them (`"http://localhost:5199"`, `"https://app.example"`; no wildcard). The host
   * answers their preflights and adds the CORS headers to its answers; a request from any other
   * origin gets `403 origin_not_allowed` and writes nothing. Requests without an `Origin` header
   * pass. Credentials (cookies) are not allowed: send a token in `Authorization`. Pass the same
   * list to `routeToFiberObject`, which answers the preflights before they reach an object.
   * Without it, no CORS headers are sent and browsers keep other origins' pages out.
   */
  allowedOrigins?: readonly string[];
}

/** A runtime hosted in a Durable Object. */
export interface DurableObjectHost {
  readonly runtime: Runtime;
  readonly store: SqliteStore;
  readonly prefix: string;
  /** Settles after the start-up `recover()` (undefined when it failed; the alarm retries it). */
  readonly ready: Promise<RecoverySummary | undefined>;
  /** Fiber runs and keep-alives in progress. */
  readonly pendingWork: number;
  /** Answers a Fiberline route, or a JSON `404` for any other path. */
  fetch(request: Request): Promise<Response>;
  /** Answers a Fiberline route, or `null` for a path outside the prefix (the object's own). */
  handle(request: Request): Promise<Response | null>;
  /** Call from the object's `alarm()`: fires due timers, resumes interrupted fibers, re-arms. */
  alarm(): Promise<void>;
}

const RETRY_MS = 5_000;

/** How long a cancel forwarded to a browser waits for the fiber's end before answering `202`. */
const CANCEL_WAIT_MS = 12_000;

/**
 * Hosts a runtime in the Durable Object whose state is `ctx`. Call it in the object's
 * constructor (a class field works) and forward `fetch` and `alarm` to it.
 *
 * Failure semantics: every write is a SQLite transaction of the object, durable before any
 * response leaves it. An object evicted or crashed mid-run loses only what was in memory: at the
 * next start (a request or the heartbeat alarm) `recover()` replays each interrupted fiber from
 * its journal; completed steps return their recorded results, an interrupted step runs again with
 * `interrupted: true`. A failed start-up recovery is reported to `onError` and retried by the
 * alarm `RETRY_MS` later; the alarm handler itself never throws, so Cloudflare never retries it
 * into a loop.
 *
 * @example
 * import { DurableObject } from "cloudflare:workers";
 * import { createRuntime } from "fiberline";
 * import { createDurableObjectHost } from "fiberline/edge";
 *
 * export class Fibers extends DurableObject<Env> {
 *   host = createDurableObjectHost(this.ctx, {
 *     runtime: (parts) => createRuntime({ ...parts, fibers: [research] }),
 *   });
 *   fetch(request: Request) { return this.host.fetch(request); }
 *   alarm() { return this.host.alarm(); }
 * }
 */
export function createDurableObjectHost(
  ctx: DurableObjectStateLike,
  options: DurableObjectHostOptions,
): DurableObjectHost {
  return new Host(ctx, options);
}

class Host implements DurableObjectHost {
  readonly runtime: Runtime;
  readonly store: SqliteStore;
  readonly prefix: string;
  readonly ready: Promise<RecoverySummary | undefined>;
  readonly #ctx: DurableObjectStateLike;
  readonly #keepAliveMs: number;
  readonly #report: (error: unknown, doing: string) => void;
  readonly #work = new Set<Promise<void>>();
  readonly #authorize: Authorize | undefined;
  readonly #limits: HostLimits;
  readonly #owners: FiberOwners | undefined;
  readonly #arbiter: Arbiter | undefined;
  readonly #cancelWaitMs: number;
  /** With continuity: the store the arbiter and the runtime write through, watched by held reads. */
  readonly #watched: WatchedStore | undefined;
  readonly #cors: OriginPolicy | undefined;
  #starts: Promise<unknown> = Promise.resolve();
  #arming: Promise<void> = Promise.resolve();
  #retryAt: number | undefined;

  constructor(ctx: DurableObjectStateLike, options: DurableObjectHostOptions) {
    this.#ctx = ctx;
    this.prefix = (options.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, "");
    this.#keepAliveMs = options.keepAliveMs ?? 30_000;
    this.#report =
      options.onError ?? ((error, doing) => console.error(`[fiberline/edge] ${doing} failed:`, error));
    this.#authorize = options.authorize;
    this.#limits = options.limits ?? {};
    if (!this.#authorize && options.limits) {
      throw new FiberlineError(
        "invalid_argument",
        "createDurableObjectHost: limits are kept per principal, so they need an authorize hook too.",
      );
    }
    this.#cors = options.allowedOrigins ? originPolicy(options.allowedOrigins) : undefined;
    this.#cancelWaitMs = options.continuity?.cancelWaitMs ?? CANCEL_WAIT_MS;
    if (!Number.isFinite(this.#cancelWaitMs) || this.#cancelWaitMs < 0) {
      throw new FiberlineError(
        "invalid_argument",
        `createDurableObjectHost: continuity.cancelWaitMs must be a number of milliseconds >= 0 (got ${String(options.continuity?.cancelWaitMs)}); leave it out for 12 s.`,
      );
    }
    this.store = new SqliteStore(ctx.storage);
    this.#owners = this.#authorize ? new FiberOwners(ctx.storage.sql) : undefined;
    this.#watched = options.continuity ? new WatchedStore(this.store) : undefined;
    this.#arbiter = this.#watched
      ? new Arbiter({
          store: this.#watched,
          ...(options.continuity?.leaseMs === undefined ? {} : { leaseMs: options.continuity.leaseMs }),
        })
      : undefined;
    const arbitrated =
      this.#arbiter && this.#watched ? new ArbitratedStore(this.#watched, this.#arbiter) : this.store;
    // The runtime's deletions are its collector's; the arbiter's (a replica replaced by a new
    // fiber of its id, whose owner the route has just recorded) go beneath this.
    const store = this.#owners ? new OwnedStore(arbitrated, this.#owners) : arbitrated;
    this.runtime = options.runtime({
      store,
      locks: objectLocks(),
      leaseMs: 60_000,
      maxPayloadBytes: EDGE_MAX_PAYLOAD_BYTES,
    });
    if (this.runtime.store !== store) {
      throw new FiberlineError(
        "invalid_argument",
        "createDurableObjectHost: the runtime must use the store the host gives it; write runtime: (parts) => createRuntime({ ...parts, fibers }).",
      );
    }
    this.runtime.onKeepAlive((work) => this.#track(work));
    this.ready = ctx.blockConcurrencyWhile(() => this.#recover("recovering fibers at object start"));
  }

  get pendingWork(): number {
    return this.#work.size;
  }

  async fetch(request: Request): Promise<Response> {
    const response = await this.handle(request);
    if (response) return response;
    return errorResponse(
      new FiberlineError(
        "route_not_found",
        `No Fiberline route at ${new URL(request.url).pathname}; the routes live under ${this.prefix}/.`,
      ),
    );
  }

  async handle(request: Request): Promise<Response | null> {
    const cors = this.#cors;
    if (!cors || !this.#underPrefix(request)) return this.#handle(request);
    const refused = cors.refuse(request);
    if (refused) return refused;
    const response = await this.#handle(request);
    return response && cors.allow(request, response);
  }

  #underPrefix(request: Request): boolean {
    const path = new URL(request.url).pathname;
    return path === this.prefix || path.startsWith(`${this.prefix}/`);
  }

  async #handle(request: Request): Promise<Response | null> {
    await this.ready;
    if (this.#arbiter) {
      const replica = await handleReplicaRequest(request, {
        arbiter: this.#arbiter,
        store: this.store,
        prefix: this.prefix,
        ...(this.#watched ? { writes: this.#watched } : {}),
        ...(this.#authorize && this.#owners
          ? {
              owned: {
                authorize: this.#authorize,
                owners: this.#owners,
                limits: this.#limits,
                exclusive: (work) => this.#exclusive(work),
              },
            }
          : {}),
      });
      if (replica) {
        // A shipment renews or creates a lease: the alarm must be at its end.
        if (request.method === "POST") await this.#arm();
        return replica;
      }
    }
    const arbiter = this.#arbiter;
    const routes = {
      runtime: this.runtime,
      prefix: this.prefix,
      ...(arbiter
        ? {
            cancel: (id: string, reason: string | undefined): Promise<CancelReply> =>
              cancelReplicated(
                { runtime: this.runtime, arbiter, waitForEnd: (fiberId) => this.#waitForEnd(fiberId) },
                id,
                reason,
              ),
          }
        : {}),
    };
    const response =
      this.#authorize && this.#owners
        ? await handleOwnedRequest(request, {
            ...routes,
            authorize: this.#authorize,
            owners: this.#owners,
            limits: this.#limits,
            exclusive: (work) => this.#exclusive(work),
          })
        : await handleFiberlineRequest(request, routes);
    // A start, event or cancel may have moved the next wake-up; settle the alarm before answering.
    if (response && request.method === "POST") await this.#arm();
    return response;
  }

  async alarm(): Promise<void> {
    await this.ready;
    if (this.#arbiter) {
      // Fibers whose browser lease lapsed move here first, so the recovery below runs them.
      await this.#arbiter
        .takeOverLapsed()
        .catch((error: unknown) => this.#report(error, "taking over fibers"));
    }
    await this.#recover("recovering fibers on alarm");
    // Holding the alarm event open while fibers run keeps the object busy, so it is not evicted
    // mid-run; the next heartbeat follows at most keepAliveMs later.
    await this.#idle(this.#keepAliveMs);
    await this.#arm(true);
  }

  /**
   * Resolves with `fiberId`'s status once the replica shows it ended, or `undefined` after
   * `cancelWaitMs` (a cancel forwarded to the browser that runs it).
   */
  async #waitForEnd(fiberId: string): Promise<FiberStatus | undefined> {
    if (!this.#watched) return undefined;
    const status = await readUntil(
      this.#watched,
      fiberId,
      this.#cancelWaitMs,
      async () => (await this.store.getFiber(fiberId))?.status,
      (read) => read === undefined || isTerminal(read),
    );
    return status !== undefined && isTerminal(status) ? status : undefined;
  }

  /** Runs `work` after every start before it has settled. */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#starts.then(work);
    this.#starts = result.catch(() => {});
    return result;
  }

  async #recover(doing: string): Promise<RecoverySummary | undefined> {
    try {
      const summary = await this.runtime.recover();
      this.#retryAt = undefined;
      return summary;
    } catch (error) {
      this.#report(error, doing);
      this.#retryAt = Date.now() + RETRY_MS;
      return undefined;
    } finally {
      await this.#arm();
    }
  }

  #track(work: Promise<unknown>): void {
    const settled = work.then(
      () => {},
      () => {},
    );
    this.#work.add(settled);
    if (this.#work.size === 1) void this.#arm();
    void settled.then(() => {
      this.#work.delete(settled);
      return this.#arm();
    });
  }

  /** Resolves once no tracked work is left, or after `capMs`. */
  async #idle(capMs: number): Promise<void> {
    const deadline = Date.now() + capMs;
    while (this.#work.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(this.#work),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, left);
        }),
      ]);
      clearTimeout(timer);
    }
  }

  /**
   * Sets the alarm to the next moment the object must run; calls are serialized. Outside the
   * alarm handler the alarm only ever moves earlier: an alarm left early fires once, finds
   * nothing to do and re-arms exactly (`exact`), which is cheaper and less racy than moving a
   * scheduled alarm later on every run that ends.
   */
  #arm(exact = false): Promise<void> {
    this.#arming = this.#arming
      .then(() => this.#armNow(exact))
      .catch((error: unknown) => this.#report(error, "setting the alarm"));
    return this.#arming;
  }

  async #armNow(exact: boolean): Promise<void> {
    const storage = this.#ctx.storage;
    const held = await this.#browserHeld();
    const candidates = [this.#nextWake(held), this.#retryAt, await this.#nextLapse()];
    // A heartbeat while fibers run here, and while a running fiber runs nowhere (its pick-up
    // failed and waits for a retry in memory, which an eviction would lose): the alarm's
    // recover() picks it up.
    if (this.#work.size > 0 || (await this.#stranded(held))) candidates.push(Date.now() + this.#keepAliveMs);
    const times = candidates.filter((t): t is number => t !== undefined);
    // Never at or before now: an alarm handler that sets the time of the alarm it is running
    // (a wake-up that was due and stayed due) leaves the alarm unchanged to workerd, which then
    // deletes it when the handler returns, and nothing would wake the object again.
    const at = times.length === 0 ? undefined : Math.max(Math.min(...times), Date.now() + 1);
    if (exact) {
      if (at === undefined) await storage.deleteAlarm();
      else await storage.setAlarm(at);
      return;
    }
    if (at === undefined) return;
    const current = await storage.getAlarm();
    if (current === null || at < current) await storage.setAlarm(at);
  }

  /** Whether a fiber is `running` here (not held by a browser) with no run of this object on it. */
  async #stranded(held: ReadonlySet<string> | undefined): Promise<boolean> {
    try {
      const running = await this.store.listFibers({
        status: "running",
        withInput: false,
        limit: 1 + (held?.size ?? 0),
      });
      return running.some((record) => !held?.has(record.id));
    } catch (error) {
      this.#report(error, "listing running fibers");
      return true;
    }
  }

  /** When the earliest browser lease ends (continuity), so the alarm takes the fiber over then. */
  async #nextLapse(): Promise<number | undefined> {
    try {
      return await this.#arbiter?.nextLapse();
    } catch (error) {
      this.#report(error, "reading the next lease end");
      return Date.now() + RETRY_MS;
    }
  }

  /** The replicas a browser holds (continuity), whose wake-ups are the browser's. */
  async #browserHeld(): Promise<ReadonlySet<string> | undefined> {
    try {
      return await this.#arbiter?.browserHeld();
    } catch (error) {
      this.#report(error, "reading the replicas a browser holds");
      return undefined;
    }
  }

  #nextWake(skip?: ReadonlySet<string>): number | undefined {
    try {
      return this.store.nextWakeAt(skip);
    } catch (error) {
      this.#report(error, "reading the next wake-up");
      return Date.now() + RETRY_MS;
    }
  }
}
