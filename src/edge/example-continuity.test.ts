/**
 * `examples/edge` with continuity on (`CONTINUITY_LEASE_MS`), in workerd, against a browser home
 * in this Node process that runs the same `continuityFibers` module: alice's browser ships a
 * `steps` fiber through the example's router (her bearer token, an allowed origin), dies in its
 * second step, and once the lease lapses the edge runs that step again, interrupted, and finishes
 * the fiber; the replica's stream is one contiguous stream. Bob, with a valid token of his own,
 * cannot read it; a page on another origin cannot ship at all.
 */

import { resolve } from "node:path";
import { afterAll, expect, it, vi } from "vitest";
import { continuityFibers } from "../../examples/edge/src/continuity-fibers";
import { signToken } from "../../examples/edge/src/token";
import { Outbox } from "../continuity/outbox";
import { browserHome } from "../continuity/protocol";
import { ReplicatingStore } from "../continuity/replicating-store";
import { Shipper } from "../continuity/shipper";
import { defineFiber } from "../core/define";
import { createRuntime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { type ReplicaSnapshot, shipOverHttp } from "./replica-routes";
import { bundleWorker, TestWorker } from "./testing/workerd";
import { decodeValue } from "./value-codec";

const SECRET = "test-secret-for-the-example";
const worker = new TestWorker({
  script: await bundleWorker("examples/edge/src/worker.ts", {
    fiberline: resolve("src/index.ts"),
    "fiberline/agent": resolve("src/agent/index.ts"),
    "fiberline/edge": resolve("src/edge/index.ts"),
  }),
  durableObjects: { FIBERS: "FiberObject" },
  bindings: { AUTH_SECRET: SECRET, ALLOWED_ORIGINS: "http://app.test", CONTINUITY_LEASE_MS: "10000" },
});
afterAll(() => worker.dispose());

const PREFIX = "/__fiberline";
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;
const alice = await signToken({ sub: "alice", exp: inAnHour() }, SECRET);
const bob = await signToken({ sub: "bob", exp: inAnHour() }, SECRET);
const HOME = browserHome("alice-laptop");

async function replicaOf(id: string, token: string): Promise<ReplicaSnapshot | number> {
  const response = await worker.fetch(`${PREFIX}/fibers/${id}/replica?after=0`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (response.status !== 200) return response.status;
  return decodeValue(await response.text()) as ReplicaSnapshot;
}

it("runs a fiber alice's browser started on at the edge once her browser is gone", async () => {
  const outbox = new Outbox();
  const store = new ReplicatingStore(new MemoryStore(), { outbox, home: HOME, replicates: () => true });
  const browser = createRuntime({
    store,
    fibers: [...continuityFibers("browser", defineFiber)],
    replication: outbox,
  });
  const fetchAs = (origin: string) => (url: string, init: RequestInit) =>
    worker.fetch(new URL(url).pathname, {
      ...init,
      headers: { ...(init.headers as Record<string, string>), origin },
    });
  const headers = async () => ({ authorization: `Bearer ${alice}` });

  // A page on an origin the example does not allow cannot ship.
  const stranger = shipOverHttp(`http://edge.test${PREFIX}`, fetchAs("http://evil.test"), headers);
  await expect(stranger("x", { home: HOME, epoch: 1, from: 1, entries: [] })).rejects.toThrow(/403/);

  const send = shipOverHttp(`http://edge.test${PREFIX}`, fetchAs("http://app.test"), headers);
  const shipper = new Shipper({ outbox, home: HOME, send, heartbeatMs: 300 });
  shipper.start();
  await browser.start("steps", { steps: 2, stepMs: 1_500 }, { id: "walk" });
  // Step 1 done and shipped; the browser dies during step 2.
  await vi.waitFor(
    async () => {
      const replica = await replicaOf("walk", alice);
      expect(typeof replica === "object" && replica.chunks.some((c) => c.type === "progress")).toBe(true);
    },
    { timeout: 20_000, interval: 100 },
  );
  shipper.stop();
  await browser.close();
  expect(await replicaOf("walk", bob)).toBe(404);

  await vi.waitFor(
    async () => {
      const replica = await replicaOf("walk", alice);
      expect(typeof replica === "object" && replica.record.status).toBe("completed");
    },
    { timeout: 40_000, interval: 200 },
  );
  const replica = (await replicaOf("walk", alice)) as ReplicaSnapshot;
  expect(replica.record.result).toEqual({ ran: ["browser", "edge"] });
  expect(replica.chunks.map((c) => c.seq)).toEqual(replica.chunks.map((_, i) => i + 1));
  expect(replica.chunks.map((c) => c.type)).toEqual([
    "fiber.start",
    "progress",
    "fiber.recovered",
    "progress",
    "fiber.end",
  ]);
  expect(replica.chunks[1]?.data).toEqual({ i: 1, where: "browser", interrupted: false });
  expect(replica.chunks[3]?.data).toMatchObject({ i: 2, where: "edge" });
  expect(replica.record.home).toMatchObject({ home: "edge", epoch: 2, formerHome: HOME });
  expect(await replicaOf("walk", bob)).toBe(404);
}, 90_000);
