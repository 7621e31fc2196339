/**
 * Bad input at the worker's two boundaries a page of the origin reaches, fuzzed with fast-check
 * (issue 17): the event-stream route (any cursor in `?after` or `Last-Event-ID`, any id in the
 * path) and the control calls (any arguments to start, get, list, inspect, sendEvent, cancel).
 * Whatever arrives, the answer is a typed error with a known code or a normal answer, and a
 * refused call leaves the store exactly as it was.
 */

import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { defineFiber } from "../core/define";
import { type ErrorCode, FiberlineError } from "../core/errors";
import { createRuntime } from "../core/runtime";
import type { Store } from "../core/store";
import { MemoryStore } from "../store/memory-store";
import { createControlApi } from "./control-api";
import { handleEventsRequest } from "./event-route";
import type { ControlApi, HeartbeatInfo } from "./protocol";

const KNOWN_CODES = new Set<ErrorCode | "route_not_found">([
  "invalid_argument",
  "invalid_id",
  "not_cloneable",
  "payload_too_large",
  "unknown_fiber",
  "fiber_not_found",
  "fiber_ended",
  "route_not_found",
]);

const approval = defineFiber("approval", {
  async run(ctx) {
    return await ctx.waitForEvent<unknown>("approval");
  },
});
const quick = defineFiber("quick", {
  async run(_ctx, input: unknown) {
    return input;
  },
});

const store = new MemoryStore();
const runtime = createRuntime({ store, fibers: [approval, quick], maxPayloadBytes: 4_096 });
await runtime.recover();
await runtime.start(approval, undefined, { id: "waiting-1" });
const ended = await runtime.start(quick, { done: true }, { id: "ended-1" });
await runtime.result(ended.id);
const api: ControlApi = createControlApi(runtime, () => ({}) as HeartbeatInfo);

afterAll(() => runtime.close());

/** Everything the store holds, as comparable data. */
async function dump(s: Store): Promise<unknown> {
  const fibers = await s.listFibers();
  return await Promise.all(
    fibers.map(async (f) => ({
      record: { ...f, leaseUntil: undefined },
      journal: await s.readJournal(f.id),
      stream: await s.readStream(f.id, 0),
      inbox: await s.readInbox(f.id),
      snapshot: await s.readSnapshot(f.id),
    })),
  );
}

const ids = fc.oneof(
  fc.constantFrom("waiting-1", "ended-1", "nobody", "", " ", "a/b", "../x", "x".repeat(201)),
  fc.string({ maxLength: 30 }),
  fc.anything(),
);
const cursors = fc.oneof(
  fc.constantFrom("0", "1", "2", "-1", "1.5", "1e3", "9007199254740993", "", " 1", "NaN", "0x10"),
  fc.string({ maxLength: 12 }),
);

describe("the event-stream route", () => {
  it("answers any cursor and any id with a stream, 204, or a typed JSON error, and writes nothing", async () => {
    const before = await dump(store);
    await fc.assert(
      fc.asyncProperty(
        fc.string({ maxLength: 20 }),
        cursors,
        fc.option(cursors),
        async (id, after, lastEventId) => {
          const headers: Record<string, string> =
            lastEventId === null ? {} : { "last-event-id": lastEventId };
          let request: Request;
          try {
            request = new Request(
              `https://app.test/__fiberline/fibers/${encodeURIComponent(id)}/events?after=${encodeURIComponent(after)}`,
              { headers },
            );
          } catch {
            return; // not a request a page could send (a header value fetch itself refuses)
          }
          const response = await handleEventsRequest(request, { runtime, prefix: "/__fiberline" });
          expect(response).not.toBeNull();
          const status = (response as Response).status;
          if (status === 200) {
            await (response as Response).body?.cancel();
          } else if (status !== 204) {
            expect([400, 404, 405]).toContain(status);
            const body = (await (response as Response).json()) as { error: { code: string } };
            expect(KNOWN_CODES).toContain(body.error.code);
          }
        },
      ),
      { numRuns: 200 },
    );
    expect(await dump(store)).toEqual(before);
  });
});

describe("the control calls", () => {
  const calls = fc.oneof(
    fc.tuple(
      fc.constant("start" as const),
      fc.oneof(fc.constantFrom("quick", "approval", ""), fc.anything()),
      fc.anything(),
      fc.anything(),
    ),
    fc.tuple(
      fc.constant("sendEvent" as const),
      ids,
      fc.oneof(fc.constantFrom("approval", ""), fc.anything()),
      fc.anything(),
    ),
    fc.tuple(fc.constant("cancel" as const), ids, fc.anything(), fc.constant(undefined)),
    fc.tuple(
      fc.constantFrom("get" as const, "inspect" as const),
      ids,
      fc.constant(undefined),
      fc.constant(undefined),
    ),
    fc.tuple(fc.constant("list" as const), fc.anything(), fc.constant(undefined), fc.constant(undefined)),
    fc.tuple(fc.constant("retryPaused" as const), fc.anything(), fc.anything(), fc.anything()),
  );

  it("answers any arguments or refuses them with a typed error, and a refusal writes nothing", async () => {
    await fc.assert(
      fc.asyncProperty(calls, async ([method, a, b, c]) => {
        const before = await dump(store);
        const call = (api[method] as (...args: unknown[]) => Promise<unknown>)(a, b, c);
        const outcome = await call.then(
          () => undefined,
          (error: unknown) => error,
        );
        if (outcome === undefined) return;
        expect(outcome).toBeInstanceOf(FiberlineError);
        expect(KNOWN_CODES).toContain((outcome as FiberlineError).code);
        expect(await dump(store)).toEqual(before);
      }),
      { numRuns: 300 },
    );
  });
});
