/**
 * The browser side without an engine: the outbox's positions and bound, and the shipper's
 * batches, backoff, answers and Rule C deadline, on fake timers (virtual time, no waiting).
 */

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Outbox } from "./outbox";
import { leaseDeadline, type Shipment, type ShipmentAnswer } from "./protocol";
import { Shipper } from "./shipper";

const HOME = "browser:d1";

function fill(outbox: Outbox, id: string, count: number): void {
  outbox.append(id, {
    type: "create",
    record: { id } as never,
    chunks: [{ fiberId: id, seq: 1, type: "fiber.start", data: null, at: 0 }],
  });
  for (let seq = 2; seq <= count; seq++) {
    outbox.append(id, {
      type: "commit",
      group: {
        fiberId: id,
        generation: 1,
        chunks: [{ fiberId: id, seq, type: "t", data: "x".repeat(100), at: 0 }],
      },
    });
  }
}

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("Outbox", () => {
  it("numbers entries per fiber and lets acknowledged ones go, releasing readers up to their chunks", () => {
    const outbox = new Outbox();
    fill(outbox, "a", 3);
    fill(outbox, "b", 1);
    expect(outbox.batch("a")?.entries.map((e) => e.pos)).toEqual([1, 2, 3]);
    expect(outbox.visibleHead("a")).toBe(0);
    expect(outbox.visibleHead("unreplicated")).toBe(Number.POSITIVE_INFINITY);
    const shipped: string[] = [];
    outbox.onShipped((id) => shipped.push(id));
    outbox.acknowledge("a", 2);
    expect(outbox.batch("a")).toEqual({ epoch: 1, from: 3, entries: [expect.objectContaining({ pos: 3 })] });
    expect(outbox.visibleHead("a")).toBe(2);
    expect(shipped).toEqual(["a"]);
    expect(outbox.batch("b")?.entries.length).toBe(1);
  });

  it("takes a fiber it created for leased only up to a lease after its create while the arbiter has not answered", () => {
    let now = 1_000;
    const outbox = new Outbox({ clock: () => now, leaseMs: 30_000 });
    fill(outbox, "a", 1);
    expect(outbox.leased("a", now)).toBe(true);
    // The create's answer was lost and the link is down: the lease it granted ends by then.
    now = 1_000 + 30_000 - 3_000; // leaseDeadline: a tenth of the lease (at least 1 s) early
    expect(outbox.leased("a", now)).toBe(false);
    // An answer renews it as always.
    outbox.acknowledge("a", 1, now + 20_000);
    expect(outbox.leased("a", now)).toBe(true);
    // A fiber the arbiter knows of, from an earlier life of this outbox (no create seen here), waits.
    const reopened = new Outbox({ clock: () => now });
    reopened.appended("b", 1, { pos: 2, type: "commit", group: { fiberId: "b", generation: 1 } });
    expect(reopened.leased("b", now)).toBe(false);
  });

  it("lapses a fiber it created when no answer came within a lease: a step in progress hears it", async () => {
    const outbox = new Outbox({ leaseMs: 30_000 });
    const lapsed: string[] = [];
    outbox.onLapsed((id, reason) => lapsed.push(`${id} ${(reason as { code?: string }).code}`));
    fill(outbox, "a", 1);
    fill(outbox, "b", 1);
    outbox.acknowledge("b", 1); // answered: the arbiter's lease from now on
    await vi.advanceTimersByTimeAsync(26_000);
    expect(lapsed).toEqual([]);
    await vi.advanceTimersByTimeAsync(2_000); // past leaseDeadline(create, 30 s): 27 s
    expect(lapsed).toEqual(["a lease_lapsed"]);
    expect(outbox.leased("a", Date.now())).toBe(false);
  });

  it("ignores, and reports, an acknowledgement of positions it never appended", () => {
    const reported: unknown[] = [];
    const outbox = new Outbox({ onError: (error) => reported.push(error) });
    fill(outbox, "a", 2);
    // An answer about another fiber under this id (one the browser collected, at position 7).
    outbox.acknowledge("a", 7);
    expect(outbox.acked("a")).toBe(0);
    expect(outbox.visibleHead("a")).toBe(0);
    expect(outbox.batch("a")?.entries.map((e) => e.pos)).toEqual([1, 2]);
    expect(String(reported[0])).toContain("past the last one sent (2)");
    outbox.acknowledge("a", 2);
    expect(outbox.acked("a")).toBe(2);
  });

  it("makes a full fiber's commits wait until acknowledgements free room", async () => {
    const outbox = new Outbox({ maxBytesPerFiber: 500 });
    fill(outbox, "a", 6);
    let roomy = false;
    void outbox.room("a")?.then(() => {
      roomy = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(roomy).toBe(false);
    outbox.acknowledge("a", 6);
    await vi.advanceTimersByTimeAsync(0);
    expect(roomy).toBe(true);
  });
});

describe("Shipper", () => {
  it("ships in order in batches within the limits", async () => {
    const outbox = new Outbox();
    fill(outbox, "a", 5);
    const sent: Shipment[] = [];
    const shipper = new Shipper({
      outbox,
      home: HOME,
      batch: { entries: 2 },
      send: async (_id, shipment) => {
        sent.push(shipment);
        const last = shipment.entries.at(-1)?.pos ?? shipment.from - 1;
        return { status: "ok", appliedPos: last, leaseMs: 30_000 };
      },
    });
    shipper.start();
    await vi.advanceTimersByTimeAsync(0);
    shipper.stop();
    expect(sent.map((s) => s.entries.map((e) => e.pos))).toEqual([[1, 2], [3, 4], [5]]);
    expect(sent.map((s) => s.from)).toEqual([1, 3, 5]);
    expect(outbox.hasPending("a")).toBe(false);
  });

  it("retries a failed send with doubling backoff and resends from what the arbiter holds", async () => {
    const outbox = new Outbox();
    fill(outbox, "a", 3);
    const sentAt: number[] = [];
    const answers: Array<ShipmentAnswer | Error> = [
      new Error("offline"),
      new Error("offline"),
      { status: "out_of_order", appliedPos: 1 },
      { status: "ok", appliedPos: 3, leaseMs: 30_000 },
    ];
    const froms: number[] = [];
    const shipper = new Shipper({
      outbox,
      home: HOME,
      retry: { initialMs: 100, maxMs: 1_000 },
      send: async (_id, shipment) => {
        sentAt.push(Date.now());
        froms.push(shipment.from);
        const answer = answers.shift();
        if (answer === undefined || answer instanceof Error) throw answer ?? new Error("no more");
        return answer;
      },
    });
    shipper.kick("a");
    await vi.advanceTimersByTimeAsync(1_000);
    shipper.stop();
    expect(sentAt).toEqual([0, 100, 300, 300]);
    expect(froms).toEqual([1, 1, 1, 2]);
    expect(shipper.stats).toMatchObject({ shipments: 4, failures: 2 });
    expect(outbox.acked("a")).toBe(3);
  });

  it("stops writing at the Rule C deadline, on its own clock, from when the shipment was sent", async () => {
    const outbox = new Outbox();
    fill(outbox, "a", 1);
    let answer!: (value: ShipmentAnswer) => void;
    const shipper = new Shipper({
      outbox,
      home: HOME,
      send: () =>
        new Promise((resolve) => {
          answer = resolve;
        }),
    });
    shipper.kick("a");
    await vi.advanceTimersByTimeAsync(2_000);
    // Sent at 0, answered at 2 s with 5 s left: the lease ends at 5 s - 1 s (the minimum margin).
    answer({ status: "ok", appliedPos: 1, leaseMs: 5_000 });
    await vi.advanceTimersByTimeAsync(0);
    expect(leaseDeadline(0, 5_000)).toBe(4_000);
    expect(leaseDeadline(0, 30_000)).toBe(27_000);
    expect(outbox.where("a")).toEqual({ status: "home", deadline: 4_000 });
    expect(outbox.mayWrite("a", 3_999)).toBe(true);
    expect(outbox.mayWrite("a", 4_000)).toBe(false);
    // A step start waiting on the arbiter when the lease runs out is refused with lease_lapsed.
    outbox.append("a", { type: "commit", group: { fiberId: "a", generation: 1 } });
    const waiting = outbox.shipped("a");
    const refused = expect(waiting).rejects.toMatchObject({ code: "lease_lapsed" });
    await vi.advanceTimersByTimeAsync(2_000);
    await refused;
    shipper.stop();
  });

  it("marks a fenced fiber away, drops its unshipped tail and refuses its step starts", async () => {
    const outbox = new Outbox();
    fill(outbox, "a", 1);
    // Position 1 reached the replica before the change of home; position 2 did not.
    const first = outbox.acknowledged("a");
    outbox.append("a", { type: "commit", group: { fiberId: "a", generation: 1 } });
    const waiting = outbox.shipped("a");
    const refused = expect(waiting).rejects.toMatchObject({
      code: "fenced",
      data: { epoch: 2, home: "edge" },
    });
    const shipper = new Shipper({
      outbox,
      home: HOME,
      send: async () => ({ status: "fenced", epoch: 2, home: "edge", appliedPos: 1 }),
    });
    shipper.kick("a");
    await vi.advanceTimersByTimeAsync(0);
    await refused;
    await first;
    expect(outbox.acked("a")).toBe(1);
    expect(outbox.where("a")).toEqual({ status: "away", epoch: 2, home: "edge" });
    expect(outbox.hasPending("a")).toBe(false);
    expect(outbox.mayWrite("a", 0)).toBe(false);
    expect(shipper.stats.fenced).toBe(1);
    shipper.stop();
  });
});

describe("Shipper and pushed events", () => {
  it("keeps shipping while onEvents waits (it may wait for room only shipping makes), and hands each event over once", async () => {
    const outbox = new Outbox();
    fill(outbox, "a", 1);
    const pushed = { eventId: "edge:1", name: "go", payload: 1, at: 0 };
    const sent: number[] = [];
    let releaseTake: () => void = () => {};
    const handed: string[][] = [];
    const shipper = new Shipper({
      outbox,
      home: HOME,
      heartbeatMs: 100,
      send: async (_id: string, shipment: Shipment): Promise<ShipmentAnswer> => {
        sent.push(shipment.from);
        const last = shipment.entries.at(-1)?.pos ?? shipment.from - 1;
        return { status: "ok", appliedPos: last, leaseMs: 30_000, events: [pushed] };
      },
      // Like an enqueue into a full outbox: done only once later shipments went out.
      onEvents: (_id, events) => {
        handed.push(events.map((e) => e.eventId));
        return new Promise<void>((resolve) => {
          releaseTake = resolve;
        });
      },
    });
    shipper.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(handed).toEqual([["edge:1"]]);
    // The first hand-over is still pending; shipping goes on, position 2 and heartbeats with it.
    fill2(outbox, "a", 2);
    await vi.advanceTimersByTimeAsync(350);
    expect(sent.length).toBeGreaterThanOrEqual(3);
    expect(outbox.acked("a")).toBe(2);
    releaseTake();
    await vi.advanceTimersByTimeAsync(350);
    // Pushed in every answer, handed over once.
    expect(handed).toEqual([["edge:1"]]);
    shipper.stop();
  });
});

/** Appends one more commit at chunk `seq` of fiber `id`. */
function fill2(outbox: Outbox, id: string, seq: number): void {
  outbox.append(id, {
    type: "commit",
    group: { fiberId: id, generation: 1, chunks: [{ fiberId: id, seq, type: "t", data: "x", at: 0 }] },
  });
}
