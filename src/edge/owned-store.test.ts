/**
 * The owner rows of a host with `authorize` and the runtime's collector (`OwnedStore`), on a
 * stand-in for the owner table's statements over MemoryStore: races the workerd suites cannot
 * stage.
 */

import { expect, it } from "vitest";
import { defineFiber } from "../core/define";
import { createRuntime } from "../core/runtime";
import type { Store } from "../core/store";
import { MemoryStore } from "../store/memory-store";
import { FiberOwners, OwnedStore } from "./fiber-owners";
import { handleOwnedRequest } from "./owned-routes";
import type { SqlStorageLike } from "./platform";

/** Just the owner table's four statements. */
function fakeSql(): SqlStorageLike {
  const rows = new Map<string, string>();
  return {
    exec(query: string, ...b: unknown[]) {
      let out: Record<string, unknown>[] = [];
      if (query.startsWith("INSERT INTO fiberline_owners")) {
        if (!query.includes("DO NOTHING") || !rows.has(b[0] as string))
          rows.set(b[0] as string, b[1] as string);
      } else if (query.startsWith("DELETE FROM fiberline_owners")) rows.delete(b[0] as string);
      else if (query.startsWith("SELECT principal"))
        out = rows.has(b[0] as string) ? [{ principal: rows.get(b[0] as string) }] : [];
      else if (query.startsWith("SELECT fiber_id"))
        out = [...rows].filter(([, p]) => p === b[0]).map(([fiber_id]) => ({ fiber_id }));
      return { toArray: () => out, one: () => out[0] } as never;
    },
  };
}

it("keeps the owner of a fiber started again while its earlier one is being collected", async () => {
  const owners = new FiberOwners(fakeSql());
  const memory = new MemoryStore();
  let collectBeforeCreate: (() => Promise<unknown>) | undefined;
  // The collector's interval fires while a start request is in flight (after the route's
  // existence check, before the runtime's createFiber): modelled by running it right there.
  const timed: Store = new Proxy(memory, {
    get(target, prop, receiver) {
      if (prop === "createFiber")
        return async (...args: Parameters<Store["createFiber"]>) => {
          const hook = collectBeforeCreate;
          collectBeforeCreate = undefined;
          if (hook) await hook();
          return target.createFiber(...args);
        };
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const store = new OwnedStore(timed, owners);
  const quick = defineFiber("quick", {
    async run() {
      return 1;
    },
  });
  let now = Date.now();
  const runtime = createRuntime({ store, fibers: [quick], retentionMs: 60_000, clock: () => now });
  const options = {
    runtime,
    prefix: "/__fiberline",
    owners,
    limits: {},
    authorize: (r: Request) => r.headers.get("x-user") ?? "",
    exclusive: <T>(work: () => Promise<T>) => work(),
  };
  const call = (path: string, body?: unknown) =>
    handleOwnedRequest(
      new Request(`https://do.test/__fiberline${path}`, {
        method: body === undefined ? "GET" : "POST",
        headers: { "content-type": "application/json", "x-user": "ann" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
      options,
    ) as Promise<Response>;
  expect((await call("/fibers", { name: "quick", id: "x" })).status).toBe(201);
  await expect.poll(async () => (await runtime.get("x"))?.status).toBe("completed");
  // Its retention has passed; ann starts the id again just as the collector runs.
  collectBeforeCreate = () => {
    now += 120_000;
    return runtime.collect();
  };
  const again = await call("/fibers", { name: "quick", id: "x" });
  expect(again.status).toBe(201); // a new fiber: the old one was collected meanwhile
  expect(owners.ownerOf("x")).toBe("ann");
  expect((await call("/fibers/x")).status).toBe(200);
  await runtime.close();
});
