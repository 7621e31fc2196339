/**
 * A test Worker that runs the `Store` contract suite on `SqliteStore` inside real Durable Objects
 * (bundled by `sqlite-store.test.ts` with `vitest` aliased to `vitest-shim.ts`).
 *
 * `GET /cases` lists the case names; `GET /run?case=N` runs case N in a Durable Object of its own,
 * so every case starts from an empty SQLite database, exactly as `create()` promises.
 */

import { runStoreContract } from "../../store/store-contract";
import type { DurableObjectStateLike } from "../platform";
import { SqliteStore } from "../sqlite-store";
import { cases, runCase } from "./vitest-shim";

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
