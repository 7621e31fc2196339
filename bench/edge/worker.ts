/**
 * B10's edge (continuity, issue #18): a Worker run in real workerd by `bench/lib/edge.mjs`, on a
 * real port, with one SQLite-backed Durable Object per fiber. Each object is the arbiter of the
 * B10 fibers the bench's browser replicates to it (lease `LEASE_MS`, pages of `ALLOWED_ORIGIN`
 * may call it), and runs them on once a lease lapses, exactly as `createDurableObjectHost` does
 * for an app. No authorize hook: the bench measures the continuity path, not token checks.
 *
 * `POST /bench/cost?kind=fiber|memory|raw|none&n=N&object=NAME` is the edge-cost row: inside the
 * named object, a fiber of `n` sequential steps on the host's `SqliteStore` (`fiber`), the same
 * fiber on a runtime over a `MemoryStore` (`memory`: the engine's own cost, no storage at all), or
 * `n` raw single-row inserts with `ctx.storage.sql.exec` of the same row size (`raw`), or nothing
 * (`none`, the request's own round trip). The harness times the request from Node, because the
 * object answers only once its writes are durable (the output gate) and that last flush belongs
 * to the cost; `clockMs`, the object's own clock over the work, is kept beside it.
 */

import {
  createDurableObjectHost,
  type DurableObjectStateLike,
  routeToFiberObject,
} from "../../src/edge/index";
import { createRuntime, MemoryStore, type Runtime } from "../../src/index";
import { edgeStepper, laneStepper, slowStepper } from "../browser/continuity-fibers";

interface Env {
  FIBERS: Parameters<typeof routeToFiberObject>[1] & {
    idFromName(name: string): unknown;
    get(id: unknown): { fetch(request: Request): Promise<Response> };
  };
  LEASE_MS: string;
  ALLOWED_ORIGIN: string;
}

export class BenchFiberObject {
  readonly host;
  readonly #ctx: DurableObjectStateLike;
  /** Length of one journal row of the fiber side, so the raw rows are the same size. */
  #rowBytes = 0;
  #rawFiber = 0;
  /** SQL statements the host has run so far (its `SqliteStore` sees a counting `sql`). */
  #statements = 0;
  /** The `memory` kind's runtime: the same engine with no storage under it. */
  #memory: Runtime | undefined;

  constructor(ctx: DurableObjectStateLike, env: Env) {
    this.#ctx = ctx;
    this.host = createDurableObjectHost(this.#counting(ctx), {
      runtime: (parts) => createRuntime({ ...parts, fibers: [laneStepper, slowStepper, edgeStepper] }),
      continuity: { leaseMs: Number(env.LEASE_MS) },
      allowedOrigins: [env.ALLOWED_ORIGIN],
      keepAliveMs: 1_000,
    });
  }

  /** `ctx` whose `storage.sql.exec` counts the statements the host runs (B10 reports them per step). */
  #counting(ctx: DurableObjectStateLike): DurableObjectStateLike {
    const sql = new Proxy(ctx.storage.sql, {
      get: (target, property) => {
        const value = Reflect.get(target, property, target);
        if (property !== "exec" || typeof value !== "function") return value;
        return (...args: unknown[]) => {
          this.#statements++;
          return value.apply(target, args);
        };
      },
    });
    const storage = new Proxy(ctx.storage, {
      get: (target, property) => {
        if (property === "sql") return sql;
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    return new Proxy(ctx, {
      get: (target, property) => {
        if (property === "storage") return storage;
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/bench/cost") return await this.#cost(url);
    return await this.host.fetch(request);
  }

  alarm(): Promise<void> {
    return this.host.alarm();
  }

  async #cost(url: URL): Promise<Response> {
    const n = Number(url.searchParams.get("n") ?? "0");
    const kind = url.searchParams.get("kind");
    const sql = this.#ctx.storage.sql;
    const t0 = Date.now();
    if (kind === "fiber") {
      await this.host.ready;
      const runtime = this.host.runtime;
      const statements = this.#statements;
      const fiber = await runtime.start(edgeStepper, { n });
      await runtime.result(fiber);
      // One step's journal row as the SqliteStore wrote it: the raw rows are padded to its size.
      const row = sql
        .exec<{ bytes: number }>(
          "SELECT length(entry) AS bytes FROM fiberline_journal WHERE fiber_id = ? ORDER BY pos DESC LIMIT 1",
          fiber.id,
        )
        .one();
      this.#rowBytes = row.bytes;
      const clockMs = Date.now() - t0;
      return Response.json({
        rowBytes: row.bytes,
        clockMs,
        statementsPerStep: (this.#statements - statements) / n,
      });
    }
    if (kind === "memory") {
      this.#memory ??= createRuntime({ store: new MemoryStore(), fibers: [edgeStepper] });
      const fiber = await this.#memory.start(edgeStepper, { n });
      await this.#memory.result(fiber);
      return Response.json({ clockMs: Date.now() - t0 });
    }
    if (kind === "raw") {
      sql.exec(
        "CREATE TABLE IF NOT EXISTS bench_raw (fiber_id TEXT NOT NULL, pos INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (fiber_id, pos)) WITHOUT ROWID",
      );
      const fiberId = `raw-${++this.#rawFiber}-${crypto.randomUUID()}`;
      const pad = "x".repeat(Math.max(0, (this.#rowBytes || 100) - 40));
      for (let pos = 1; pos <= n; pos++) {
        sql.exec("INSERT INTO bench_raw VALUES (?, ?, ?)", fiberId, pos, JSON.stringify({ pos, pad }));
      }
      return Response.json({ rowBytes: this.#rowBytes, clockMs: Date.now() - t0 });
    }
    return Response.json({});
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/bench/cost") {
      const object = env.FIBERS.get(env.FIBERS.idFromName(url.searchParams.get("object") ?? "cost"));
      return await object.fetch(request);
    }
    return (
      (await routeToFiberObject(request, env.FIBERS, { allowedOrigins: [env.ALLOWED_ORIGIN] })) ??
      new Response("not found", { status: 404 })
    );
  },
};
