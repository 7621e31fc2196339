/**
 * Continuity behind `authorize`, in real workerd: the principal whose shipment created a replica
 * (position 1) owns it. Another principal can neither ship to it (not even with the owner's home
 * and epoch, which are not secrets), nor read it, nor signal it, nor ask for it back, nor take its id over with a
 * first position of its own: every such request is answered exactly like one for an id that does
 * not exist, and the replica is unchanged after. The owner keeps shipping and reading it, through
 * one shared object and through `routeToFiberObject`.
 */

import { afterAll, describe, expect, it, vi } from "vitest";
import { Outbox } from "../continuity/outbox";
import { browserHome, type Shipment } from "../continuity/protocol";
import { ReplicatingStore } from "../continuity/replicating-store";
import { Shipper } from "../continuity/shipper";
import { defineFiber } from "../core/define";
import { createRuntime } from "../core/runtime";
import { MemoryStore } from "../store/memory-store";
import { originPolicy } from "./cors";
import { type ReplicaSnapshot, shipOverHttp } from "./replica-routes";
import { bundleWorker, TestWorker } from "./testing/workerd";
import { decodeValue, encodeValue } from "./value-codec";

const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/owned-continuity-worker.ts"),
  durableObjects: { FIBERS: "FiberObject" },
});
afterAll(() => worker.dispose());

const PREFIX = "/__fiberline";

/** `vi.waitFor` with room for a loaded machine (its default gives up after 1 s). */
function waitLong<T>(check: () => T | Promise<T>): Promise<T> {
  return vi.waitFor(check, { timeout: 15_000, interval: 50 });
}

const approval = defineFiber("approval", {
  async run(ctx) {
    const answer = await ctx.waitForEvent<{ ok: boolean }>("approval");
    return answer.ok ? "approved" : "rejected";
  },
});

/** A browser home of `user` in this process, shipping through `object` ("shared" or the router). */
function browserOf(user: string, object: "shared" | "routed") {
  const home = browserHome(`${user}-device`);
  const outbox = new Outbox();
  const store = new ReplicatingStore(new MemoryStore(), { outbox, home, replicates: () => true });
  const runtime = createRuntime({ store, fibers: [approval], replication: outbox });
  const headers = { "x-user": user, ...(object === "shared" ? { "x-object": "shared" } : {}) };
  // Asked at every shipment, as a host refreshing a short-lived token would be.
  const send = shipOverHttp(
    `http://edge.test${PREFIX}`,
    (url, init) => worker.fetch(new URL(url).pathname, init),
    async () => headers,
  );
  const shipper = new Shipper({ outbox, home, send, heartbeatMs: 300 });
  shipper.start();
  return { home, outbox, runtime, shipper, headers };
}

function call(headers: Record<string, string>, path: string, body?: string): Promise<Response> {
  return worker.fetch(`${PREFIX}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body }),
  });
}

async function answer(response: Response): Promise<{ status: number; body: string }> {
  return { status: response.status, body: await response.text() };
}

async function replicaOf(headers: Record<string, string>, id: string): Promise<ReplicaSnapshot> {
  const response = await call(headers, `/fibers/${id}/replica?after=0`);
  expect(response.status).toBe(200);
  return decodeValue(await response.text()) as ReplicaSnapshot;
}

describe("continuity behind authorize", () => {
  it("keeps a replica its owner's: another principal cannot ship to it, read it, signal it or take it over", async () => {
    const ann = browserOf("ann", "shared");
    await ann.runtime.start(approval, null, { id: "ann-1" });
    await waitLong(async () => {
      expect(ann.outbox.hasPending("ann-1")).toBe(false);
      expect((await replicaOf(ann.headers, "ann-1")).record.status).toBe("waiting");
    });
    const before = await replicaOf(ann.headers, "ann-1");
    const state = before.record.home;
    if (!state) throw new Error("the replica has no home lease");
    expect(state).toMatchObject({ home: ann.home, epoch: 1 });

    const ben = { "x-user": "ben", "x-object": "shared" };
    // Everything ben might send: a heartbeat under ann's very home and epoch, the next position,
    // a first position of his own for ann's id, a read of the replica, an event, a cancel.
    const heartbeat: Shipment = {
      home: state.home,
      epoch: state.epoch,
      from: state.appliedPos + 1,
      entries: [],
    };
    const event: Shipment = {
      home: state.home,
      epoch: state.epoch,
      from: state.appliedPos + 1,
      entries: [
        {
          pos: state.appliedPos + 1,
          type: "event",
          eventId: `${state.home}:1`,
          event: { fiberId: "ann-1", seq: 1, name: "approval", payload: { ok: false }, at: Date.now() },
        },
      ],
    };
    const takeover: Shipment = {
      home: browserHome("ben-device"),
      epoch: 1,
      from: 1,
      entries: [
        {
          pos: 1,
          type: "create",
          record: { ...before.record, home: undefined },
          chunks: before.chunks.slice(0, 1),
        },
      ],
    };
    // A shipment to ann's replica gets the answer one to no replica gets (a gap at 0, which
    // applies nothing); a first position for ann's id is refused as a start of it would be.
    expect(await answer(await call(ben, "/fibers/ann-1/replicate", encodeValue(takeover)))).toMatchObject({
      status: 404,
      body: expect.stringContaining('"fiber_not_found"'),
    });
    for (const shipment of [heartbeat, event]) {
      const theirs = await answer(await call(ben, "/fibers/ann-1/replicate", encodeValue(shipment)));
      // The same shipment for an id nobody holds (its rows name that id: a shipment's rows name its fiber).
      const nobodys = encodeValue(shipment).replaceAll('"ann-1"', '"nobody"');
      const missing = await answer(await call(ben, "/fibers/nobody/replicate", nobodys));
      expect(theirs).toEqual({ status: 409, body: encodeValue({ status: "out_of_order", appliedPos: 0 }) });
      expect(theirs).toEqual(missing);
    }
    for (const [path, body] of [
      ["/fibers/ID/replica?after=0", undefined],
      ["/fibers/ID", undefined],
      ["/fibers/ID/events", JSON.stringify({ name: "approval", payload: { ok: false } })],
      ["/fibers/ID/cancel", "{}"],
      // Asking for it back (continuity's comeHome) is a shipment's action: refused the same way.
      ["/fibers/ID/come-home", encodeValue({ home: browserHome("ben-device") })],
    ] as const) {
      const theirs = await answer(await call(ben, path.replace("ID", "ann-1"), body));
      const missing = await answer(await call(ben, path.replace("ID", "nobody"), body));
      expect(theirs.status, path).toBe(404);
      expect(theirs.body.replace("ann-1", "ID"), path).toBe(missing.body.replace("nobody", "ID"));
    }
    // ben's attempts left nothing: no owner row for "nobody" either (its create is still refused).
    expect((await call(ben, "/fibers/nobody/replica?after=0")).status).toBe(404);
    const after = await replicaOf(ann.headers, "ann-1");
    expect(after.inbox).toEqual([]);
    expect(after.record.status).toBe("waiting");
    expect(after.record.home).toMatchObject({ home: ann.home, epoch: 1 });
    expect(after.chunks).toEqual(before.chunks);

    // Without credentials: 401, nothing read.
    expect((await call({ "x-object": "shared" }, "/fibers/ann-1/replica?after=0")).status).toBe(401);

    // ann's own browser still ships: its event reaches the replica and the fiber ends there.
    await ann.runtime.sendEvent("ann-1", "approval", { ok: true });
    await waitLong(async () => {
      const replica = await replicaOf(ann.headers, "ann-1");
      expect(replica.record.status).toBe("completed");
      expect(replica.inbox.map((e) => e.payload)).toEqual([{ ok: true }]);
    });
    ann.shipper.stop();
    await ann.runtime.close();
  }, 60_000);

  it("counts a new fiber under an id whose replica ended toward the caller's limit of unfinished fibers", async () => {
    const headers = { "x-user": "lim", "x-object": "shared" };
    const home = browserHome("lim-device");
    const t0 = Date.now();
    const create = (id: string, createdAt: number): Shipment => ({
      home,
      epoch: 1,
      from: 1,
      entries: [
        {
          pos: 1,
          type: "create",
          record: {
            id,
            name: "approval",
            version: "1",
            input: null,
            status: "running",
            createdAt,
            updatedAt: createdAt,
            generation: 1,
            owner: "runner",
            leaseUntil: createdAt + 15_000,
            streamHead: 1,
            emitOrdinal: 0,
            epoch: 0,
            stalledRecoveries: 0,
            progressMark: "",
          },
          chunks: [{ fiberId: id, seq: 1, type: "fiber.start", data: null, at: createdAt }],
        },
      ],
    });
    const end = (id: string): Shipment => ({
      home,
      epoch: 1,
      from: 2,
      entries: [
        {
          pos: 2,
          type: "commit",
          group: { fiberId: id, generation: 1, fiber: { status: "completed", endedAt: t0 } },
        },
      ],
    });
    const ship = async (id: string, shipment: Shipment) =>
      (await call(headers, `/fibers/${id}/replicate`, encodeValue(shipment))).status;
    for (const id of ["lim-a", "lim-b", "lim-c"]) {
      expect(await ship(id, create(id, t0))).toBe(200);
      expect(await ship(id, end(id))).toBe(200);
    }
    expect(await ship("lim-d", create("lim-d", t0))).toBe(200); // unfinished: 1 of 3
    // The browser collected the ended ones and started their ids again: new, unfinished fibers.
    expect(await ship("lim-a", create("lim-a", t0 + 1))).toBe(200); // 2 of 3
    expect(await ship("lim-b", create("lim-b", t0 + 1))).toBe(200); // 3 of 3
    expect(await ship("lim-c", create("lim-c", t0 + 1))).toBe(429); // over the limit
    // A resend of a create the edge holds is not a new fiber: answered as before.
    expect(await ship("lim-a", create("lim-a", t0 + 1))).toBe(200);
    expect((await replicaOf(headers, "lim-c")).record.status).toBe("completed");
  });

  it("routes shipments and replica reads by principal through routeToFiberObject", async () => {
    const ann = browserOf("ann", "routed");
    const ben = browserOf("ben", "routed");
    await ann.runtime.start(approval, null, { id: "chat" });
    await ben.runtime.start(approval, null, { id: "chat" });
    await waitLong(() => {
      expect(ann.outbox.hasPending("chat")).toBe(false);
      expect(ben.outbox.hasPending("chat")).toBe(false);
    });
    // The same id is two replicas, one per principal, each only its owner's.
    expect((await replicaOf(ann.headers, "chat")).record.home).toMatchObject({ home: ann.home });
    expect((await replicaOf(ben.headers, "chat")).record.home).toMatchObject({ home: ben.home });
    await ann.runtime.sendEvent("chat", "approval", { ok: true });
    await waitLong(async () =>
      expect((await replicaOf(ann.headers, "chat")).record.status).toBe("completed"),
    );
    expect((await replicaOf(ben.headers, "chat")).record.status).toBe("waiting");
    // Without credentials the router answers 401 and reaches no object.
    expect((await call({}, "/fibers/chat/replicate", "{}")).status).toBe(401);
    // A malformed percent-encoding of the id is the caller's error, on the host's own routes too.
    for (const path of ["/fibers/%E0%A4%A/replica", "/fibers/%E0%A4%A/replicate"]) {
      const bad = await call(
        { "x-user": "ann", "x-object": "shared" },
        path,
        path.endsWith("replicate") ? "{}" : undefined,
      );
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ error: { code: "invalid_id" } });
    }
    // A start whose id is not a string is refused by the router before it reaches an object.
    const numeric = await call(ann.headers, "/fibers", JSON.stringify({ name: "approval", id: 5 }));
    expect(numeric.status).toBe(400);
    expect(await numeric.json()).toMatchObject({ error: { code: "invalid_id" } });
    for (const b of [ann, ben]) {
      b.shipper.stop();
      await b.runtime.close();
    }
  }, 60_000);

  it("answers CORS preflights for allowed origins only, in the router and in the host, and writes nothing for others", async () => {
    for (const object of [{}, { "x-object": "shared" }] as Record<string, string>[]) {
      const preflight = await worker.fetch(`${PREFIX}/fibers/cors-1/replicate`, {
        method: "OPTIONS",
        headers: {
          ...object,
          origin: "http://app.test",
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization, content-type",
        },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-origin")).toBe("http://app.test");
      expect(preflight.headers.get("access-control-allow-headers")).toContain("authorization");
      expect(preflight.headers.get("access-control-allow-credentials")).toBeNull();
      expect(preflight.headers.get("vary")).toContain("origin");

      const stranger = await worker.fetch(`${PREFIX}/fibers/cors-1/replicate`, {
        method: "OPTIONS",
        headers: { ...object, origin: "http://evil.test", "access-control-request-method": "POST" },
      });
      expect(stranger.status).toBe(403);
      expect(stranger.headers.get("access-control-allow-origin")).toBeNull();
    }
    // A real shipment from the allowed origin gets the header; the same from another origin is
    // refused before it is applied.
    const ann = browserOf("ann", "routed");
    const send = shipOverHttp(`http://edge.test${PREFIX}`, (url, init) =>
      worker.fetch(new URL(url).pathname, {
        ...init,
        headers: { ...(init.headers as object), "x-user": "ann", origin: "http://evil.test" },
      }),
    );
    const outbox = new Outbox();
    const store = new ReplicatingStore(new MemoryStore(), { outbox, home: ann.home, replicates: () => true });
    const runtime = createRuntime({ store, fibers: [approval], replication: outbox });
    const failures: unknown[] = [];
    const evil = new Shipper({
      outbox,
      home: ann.home,
      send: (id, sh) =>
        send(id, sh).catch((e: unknown) => {
          failures.push(e);
          throw e;
        }),
    });
    evil.start();
    await runtime.start(approval, null, { id: "cors-1" });
    await waitLong(() => expect(String(failures[0])).toContain("origin_not_allowed"));
    evil.stop();
    await runtime.close();
    expect(await call(ann.headers, "/fibers/cors-1/replica?after=0").then((r) => r.status)).toBe(404);

    const shipped = await call(
      { ...ann.headers, origin: "http://app.test" },
      "/fibers/cors-1/replica?after=0",
    );
    expect(shipped.headers.get("access-control-allow-origin")).toBe("http://app.test");
    ann.shipper.stop();
    await ann.runtime.close();
  }, 60_000);

  it("refuses a wildcard or a malformed origin at start-up", () => {
    expect(() => originPolicy(["*"])).toThrow(/no wildcard/);
    expect(() => originPolicy(["http://app.test/"])).toThrow(/not an origin/);
    expect(() => originPolicy(["app.test"])).toThrow(/not an origin/);
    expect(() => originPolicy(["http://app.test:8080"])).not.toThrow();
  });
});
