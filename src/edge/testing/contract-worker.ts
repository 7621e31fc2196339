/**
 * A test Worker that runs the `Store` contract suite on `SqliteStore` inside real Durable Objects
 * (bundled by `sqlite-store.test.ts` with `vitest` aliased to `vitest-shim.ts`).
 *
 * `GET /cases` lists the case names; `GET /run?case=N` runs case N in a Durable Object of its own,
 * so every case starts from an empty SQLite database, exactly as `create()` promises.
 */

import { fiber, runStoreContract } from "../../store/store-contract";
import type { DurableObjectStateLike } from "../platform";
import { SqliteStore } from "../sqlite-store";
import { cases, describe, expect, it, runCase } from "./vitest-shim";

interface Env {
  CONTRACT: {
    idFromName(name: string): unknown;
    get(id: unknown): { fetch(request: Request): Promise<Response> };
  };
}

/** The object the case running right now belongs to (the Node side runs cases one at a time). */
let running: DurableObjectStateLike | undefined;

runStoreContract("SqliteStore", () => {
  if (!running) throw new Error("create() called outside a running case");
  return new SqliteStore(running.storage);
});

runSqliteStoreCases();

/** SqliteStore's own cases: what it does at every open for what an earlier release may have written. */
function runSqliteStoreCases(): void {
  describe("SqliteStore opening an earlier release's database", () => {
    it("makes due, at every open, the waiting fibers whose inbox holds what they wait for", async () => {
      if (!running) throw new Error("outside a running case");
      const { storage } = running;
      const store = new SqliteStore(storage);
      await store.createFiber(fiber("w1"), []);
      await store.enqueueEvent({ fiberId: "w1", name: "go", payload: 1, at: 40 });
      // Suspended as an earlier release writes it (a rollback may run one again at any time):
      // waiting, and not made due by its commit. Only a mirror's unclaimed write does that here.
      const earlier = { fiberId: "w1", generation: 0, unclaimed: true };
      for (let open = 1; open <= 2; open++) {
        await store.commit([
          { ...earlier, fiber: { status: "waiting", waitingFor: ["go"], wakeAt: undefined } },
        ]);
        expect((await store.getFiber("w1"))?.wakeAt).toBeUndefined();
        expect((await new SqliteStore(storage).getFiber("w1"))?.wakeAt).toBe(40);
      }
    });
  });
}

/** One Durable Object per case. */
export class ContractObject {
  readonly #ctx: DurableObjectStateLike;

  constructor(ctx: DurableObjectStateLike) {
    this.#ctx = ctx;
  }

  async fetch(request: Request): Promise<Response> {
    const index = Number(new URL(request.url).searchParams.get("case"));
    running = this.#ctx;
    try {
      return Response.json(await runCase(index));
    } finally {
      running = undefined;
    }
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/cases") return Response.json(cases.map((c) => c.name));
    if (url.pathname === "/run") {
      const stub = env.CONTRACT.get(env.CONTRACT.idFromName(`case-${url.searchParams.get("case")}`));
      return stub.fetch(request);
    }
    return new Response("not found", { status: 404 });
  },
};
