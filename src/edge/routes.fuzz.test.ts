/**
 * Bad input at the edge routes, fuzzed with fast-check in real workerd (issue 17): any method,
 * path, body and caller against a host with an `authorize` hook. Every answer is a success or a
 * JSON error with a known code, and whatever strangers send, the fiber another principal owns is
 * exactly as it was.
 */

import fc from "fast-check";
import { afterAll, expect, it } from "vitest";
import { bundleWorker, TestWorker } from "./testing/workerd";

const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/owned-worker.ts"),
  durableObjects: { SHARED: "SharedObject" },
});

afterAll(() => worker.dispose());

const KNOWN_CODES = new Set([
  "unauthorized",
  "invalid_argument",
  "invalid_id",
  "not_cloneable",
  "payload_too_large",
  "unknown_fiber",
  "fiber_not_found",
  "fiber_ended",
  "route_not_found",
  "too_many_fibers",
]);

async function ownerView(): Promise<string> {
  const response = await worker.fetch("/__fiberline/fibers/owned-1/inspect", {
    headers: { "x-user": "owner" },
  });
  const { record, journal, inbox, snapshot, streamHead } = (await response.json()) as Record<
    string,
    unknown
  > & {
    record: Record<string, unknown>;
  };
  return JSON.stringify({ status: record.status, journal, inbox, snapshot, streamHead });
}

it("answers any request with success or a typed JSON error, and strangers never change another's fiber", async () => {
  const started = await worker.fetch("/__fiberline/fibers", {
    method: "POST",
    headers: { "x-user": "owner", "content-type": "application/json" },
    body: JSON.stringify({ name: "approval", id: "owned-1" }),
  });
  expect(started.status).toBe(201);
  const before = await ownerView();

  const segments = fc.oneof(
    fc.constantFrom("fibers", "owned-1", "events", "cancel", "inspect", "%", "%2F", "..", ""),
    fc.string({ maxLength: 12 }).map(encodeURIComponent),
  );
  const bodies = fc.oneof(
    fc.constant(undefined),
    fc.string({ maxLength: 40 }),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc
      .record({
        name: fc.oneof(fc.constantFrom("approval", "x"), fc.anything()),
        id: fc.oneof(fc.constant("owned-1"), fc.string()),
        payload: fc.jsonValue(),
        input: fc.jsonValue(),
      })
      .map((v) => JSON.stringify(v)),
    fc.integer({ min: 1_000, max: 3_000 }).map((n) => "x".repeat(n)),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom("GET", "POST", "PUT", "DELETE"),
      fc.array(segments, { minLength: 1, maxLength: 4 }),
      fc.constantFrom(undefined, "stranger", "crash", ""),
      bodies,
      async (method, parts, user, body) => {
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (user !== undefined) headers["x-user"] = user;
        const response = await worker.fetch(`/__fiberline/${parts.join("/")}`, {
          method,
          headers,
          ...(method === "GET" || body === undefined ? {} : { body }),
        });
        if (response.ok) {
          await response.body?.cancel();
          return;
        }
        const parsed = (await response.json()) as { error: { code: string } };
        expect(KNOWN_CODES).toContain(parsed.error.code);
      },
    ),
    {
      numRuns: 150,
      // The requests that would change the owner's fiber if ownership leaked, always tried.
      examples: [
        [
          "POST",
          ["fibers", "owned-1", "events"],
          "stranger",
          JSON.stringify({ name: "approval", payload: 1 }),
        ],
        ["POST", ["fibers", "owned-1", "cancel"], "stranger", "{}"],
        ["POST", ["fibers"], "stranger", JSON.stringify({ name: "approval", id: "owned-1" })],
      ],
    },
  );
  expect(await ownerView()).toBe(before);
}, 120_000);
