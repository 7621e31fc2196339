/**
 * A browser home in the Node process of a workerd test, replicating to the test Worker's edge
 * over HTTP (`shipOverHttp`): the `approval` fiber of `continuity-worker.ts` (it waits for an
 * "approval" event, then a step records that the browser consumed it), an `Outbox`, a
 * `ReplicatingStore` over a `MemoryStore`, a runtime and a `Shipper` heartbeating every 300 ms.
 */

import { Outbox } from "../../continuity/outbox";
import { browserHome } from "../../continuity/protocol";
import { ReplicatingStore } from "../../continuity/replicating-store";
import { Shipper, type ShipperOptions } from "../../continuity/shipper";
import { defineFiber } from "../../core/define";
import { createRuntime, type Runtime } from "../../core/runtime";
import { MemoryStore } from "../../store/memory-store";
import { type ReplicaSnapshot, shipOverHttp } from "../replica-routes";
import { decodeValue } from "../value-codec";
import type { TestWorker } from "./workerd";

/** The route prefix of the test Workers. */
export const PREFIX = "/__fiberline";
/** The browser's home name in these tests. */
export const NODE_HOME = browserHome("node");

/**
 * Starts the home; `shipper` adds options to its `Shipper` (it gets the runtime, and the shipper
 * itself for a hook that stops it). `effects` lists "browser" each time the step after the wait ran.
 */
export function nodeBrowserHome(
  worker: TestWorker,
  shipper?: (parts: { runtime: Runtime; shipper: () => Shipper }) => Partial<ShipperOptions>,
) {
  const effects: string[] = [];
  const approval = defineFiber("approval", {
    async run(ctx) {
      const answer = await ctx.waitForEvent<unknown>("approval");
      return await ctx.step("after", async () => {
        effects.push("browser");
        return { answer, where: "browser" };
      });
    },
  });
  const outbox = new Outbox();
  const store = new ReplicatingStore(new MemoryStore(), { outbox, home: NODE_HOME, replicates: () => true });
  const runtime = createRuntime({ store, fibers: [approval], replication: outbox });
  const send = shipOverHttp(`http://edge.test${PREFIX}`, (url, init) =>
    worker.fetch(new URL(url).pathname, init),
  );
  const started: Shipper = new Shipper({
    outbox,
    home: NODE_HOME,
    send,
    heartbeatMs: 300,
    ...shipper?.({ runtime, shipper: () => started }),
  });
  started.start();
  return { effects, outbox, runtime, shipper: started, store };
}

/** The test Worker's whole replica of fiber `id` (`GET .../replica?after=0`). */
export async function replicaOf(worker: TestWorker, id: string): Promise<ReplicaSnapshot> {
  return decodeValue(
    await (await worker.fetch(`${PREFIX}/fibers/${id}/replica?after=0`)).text(),
  ) as ReplicaSnapshot;
}
