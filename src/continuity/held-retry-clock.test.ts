/**
 * A claim of a fiber whose lease lapsed is answered "held" until a time the runner schedules its
 * next try by, on the runner's clock (`request.now`), not the lease clock (Rule C's, which a wall
 * clock set back leaves ahead of `Date.now`): else a "try again in a second" became a minute.
 */

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import { MemoryStore } from "../store/memory-store";
import { createReplicatedRuntime } from "./browser-home";
import type { Shipment, ShipmentAnswer } from "./protocol";

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

let finish = () => {};
const job = defineFiber("job", {
  async run(ctx) {
    await ctx.step("a", async () => {
      await new Promise<void>((resolve) => {
        finish = resolve;
      });
      return 1;
    });
    return 2;
  },
});

describe("a fiber whose lease lapsed after the wall clock was set back", () => {
  it("is retried about a second later on the runtime's clock, not a minute later", async () => {
    const { runtime, continuity } = createReplicatedRuntime({
      store: new MemoryStore(),
      fibers: [job],
      edge: { baseUrl: "http://edge.test", fibers: ["job"], deviceId: "d1", leaseMs: 3_000 },
      onError: () => {},
    });
    const link = { online: true };
    (continuity.link as unknown as Record<string, unknown>).ship = async (
      _id: string,
      s: Shipment,
    ): Promise<ShipmentAnswer> => {
      if (!link.online) throw new TypeError("Failed to fetch");
      return { status: "ok", appliedPos: s.from + s.entries.length - 1, leaseMs: 3_000 };
    };
    await continuity.start();
    await runtime.start("job", null, { id: "j" });
    await vi.advanceTimersByTimeAsync(100);
    const { outbox } = await continuity.opened;
    expect(outbox.where("j")).toMatchObject({ status: "home", deadline: expect.any(Number) });
    // The wall clock is set back a minute, the link drops, and the lease lapses.
    vi.setSystemTime(Date.now() - 60_000);
    link.online = false;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(outbox.mayWrite("j", outbox.now())).toBe(false);
    // What the runner's pick-up gets (runner.ts: #scheduleWake(id, leaseUntil + 1) on host.now()).
    const now = Date.now();
    const claim = await continuity.store.claimFiber("j", { owner: "r", now, leaseMs: 30_000 });
    expect(claim.status).toBe("held");
    const retryIn = (claim.status === "held" ? (claim.record.leaseUntil ?? 0) : 0) - now;
    finish();
    continuity.stop();
    await runtime.close();
    expect(retryIn).toBeLessThanOrEqual(1_000);
  });
});
