/**
 * Ownership inside one Durable Object, in real workerd: principals share the object, and the
 * host's owner rows alone keep their fibers apart. Another principal's fiber answers exactly like
 * a missing id, `list` shows each principal its own fibers, the unfinished-fiber limit counts per
 * principal, and a refused or failed start leaves nothing behind.
 */

import { afterAll, expect, it } from "vitest";
import { bundleWorker, TestWorker } from "./testing/workerd";

const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/owned-worker.ts"),
  durableObjects: { SHARED: "SharedObject", SHORT: "ShortRetentionObject" },
});

afterAll(() => worker.dispose());

function call(user: string | undefined, path: string, body?: unknown): Promise<Response> {
  return worker.fetch(`/__fiberline${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", ...(user ? { "x-user": user } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function answer(response: Response): Promise<{ status: number; body: unknown }> {
  return { status: response.status, body: await response.json() };
}

it("keeps two principals' fibers apart inside one object", async () => {
  expect((await call("ann", "/fibers", { name: "approval", id: "ann-1" })).status).toBe(201);

  // ben sees ann's fiber exactly as an id that never existed, on every route.
  for (const [path, body] of [
    ["/fibers/ID", undefined],
    ["/fibers/ID/inspect", undefined],
    ["/fibers/ID/events?after=0", undefined],
    ["/fibers/ID/events", { name: "approval", payload: { ok: false } }],
    ["/fibers/ID/cancel", {}],
  ] as const) {
    const theirs = await answer(await call("ben", path.replace("ID", "ann-1"), body));
    const missing = await answer(await call("ben", path.replace("ID", "nobody"), body));
    expect(JSON.stringify(theirs).replace("ann-1", "ID")).toBe(
      JSON.stringify(missing).replace("nobody", "ID"),
    );
    expect(theirs.status).toBe(404);
  }
  // ...and cannot take its id over with a start either.
  expect(await answer(await call("ben", "/fibers", { name: "approval", id: "ann-1" }))).toMatchObject({
    status: 404,
    body: { error: { code: "fiber_not_found" } },
  });

  // ann's fiber got nothing from ben: still waiting, no event in its inbox.
  const inspection = (await (await call("ann", "/fibers/ann-1/inspect")).json()) as {
    record: { status: string };
    inbox: unknown[];
  };
  expect(inspection.inbox).toEqual([]);
  expect(inspection.record.status).not.toBe("cancelled");

  expect((await call("ben", "/fibers", { name: "approval", id: "ben-1" })).status).toBe(201);
  const listOf = async (user: string) =>
    ((await (await call(user, "/fibers")).json()) as Array<{ id: string }>).map((r) => r.id);
  expect(await listOf("ann")).toEqual(["ann-1"]);
  expect(await listOf("ben")).toEqual(["ben-1"]);

  // A HEAD of the events route asks the hook too: no principal, or another's fiber, tells nothing.
  const head = async (user: string | undefined, id: string) =>
    (
      await worker.fetch(`/__fiberline/fibers/${id}/events?after=0`, {
        method: "HEAD",
        headers: user ? { "x-user": user } : {},
      })
    ).status;
  expect(await head(undefined, "ann-1")).toBe(401);
  expect(await head("ben", "ann-1")).toBe(await head("ben", "nobody"));
  expect(await head("ben", "ann-1")).toBe(404);
  expect(await head("ann", "ann-1")).toBe(200);

  // A start whose id is not a string is refused, not given a random id.
  expect(await answer(await call("ann", "/fibers", { name: "approval", id: 5 }))).toMatchObject({
    status: 400,
    body: { error: { code: "invalid_id" } },
  });
  expect(await listOf("ann")).toEqual(["ann-1"]);

  const sent = await call("ann", "/fibers/ann-1/events", { name: "approval", payload: { ok: true } });
  expect(sent.status).toBe(202);
}, 20_000);

it("refuses without a principal, hides a verifier's own error, and counts the limit per principal", async () => {
  expect(await answer(await call(undefined, "/fibers"))).toMatchObject({
    status: 401,
    body: { error: { code: "unauthorized", message: "Send x-user." } },
  });
  const crashed = await answer(await call("crash", "/fibers/x"));
  expect(crashed).toMatchObject({ status: 401, body: { error: { code: "unauthorized" } } });
  expect(JSON.stringify(crashed)).not.toContain("internal detail");

  for (const id of ["cy-1", "cy-2"])
    expect((await call("cy", "/fibers", { name: "approval", id })).status).toBe(201);
  expect(await answer(await call("cy", "/fibers", { name: "approval", id: "cy-3" }))).toMatchObject({
    status: 429,
    body: { error: { code: "too_many_fibers", name: "LimitExceededError" } },
  });
  expect((await call("cy", "/fibers/cy-3")).status).toBe(404);
  expect((await call("dee", "/fibers", { name: "approval", id: "dee-1" })).status).toBe(201);
  await call("cy", "/fibers/cy-1/cancel", {});
  expect((await call("cy", "/fibers", { name: "approval", id: "cy-3" })).status).toBe(201);
});

it("leaves no owner behind for a start that failed, so the id stays free", async () => {
  expect(await answer(await call("eve", "/fibers", { name: "no-such-fiber", id: "free-1" }))).toMatchObject({
    status: 400,
    body: { error: { code: "unknown_fiber" } },
  });
  expect(
    await answer(await call("eve", "/fibers", { name: "approval", id: "free-2", input: "x".repeat(2_000) })),
  ).toMatchObject({
    status: 413,
    body: { error: { code: "payload_too_large" } },
  });
  // Had eve's failed start kept its owner row, fay's start of the same id would be refused.
  expect((await call("fay", "/fibers", { name: "approval", id: "free-1" })).status).toBe(201);
  expect((await call("fay", "/fibers", { name: "approval", id: "free-2" })).status).toBe(201);
});

it("forgets the owner of every fiber it collects", async () => {
  const short = (user: string, path: string, body?: unknown) =>
    worker.fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers: { "content-type": "application/json", "x-user": user, "x-object": "short-retention" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  for (let i = 0; i < 5; i++) {
    expect((await short("ann", "/__fiberline/fibers", { name: "quick", id: `q-${i}` })).status).toBe(201);
  }
  // Each ends at once and is collected (retentionMs: 0) with its owner row; before, the rows of
  // every fiber a principal ever ran stayed, read again on each start, list and first shipment.
  await expect
    .poll(async () => (await short("ann", "/debug/rows")).json(), { timeout: 5_000 })
    .toEqual({ fibers: 0, owners: 0 });
  // The id is free again, for anyone.
  expect((await short("ben", "/__fiberline/fibers", { name: "quick", id: "q-0" })).status).toBe(201);
});
