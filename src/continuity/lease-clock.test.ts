/**
 * Rule C's deadlines. Their clock (`leaseClock`): a wall clock set back (the user, NTP, a VM
 * restored) must not move a browser's deadline out, or the browser goes on writing, and starting
 * `awaitStart: false` steps, past the arbiter's lease while the edge runs the fiber; and a machine
 * that slept (whose monotonic clock may not count the sleep) must find a lease that ended
 * meanwhile ended. And the lease a new fiber holds before its first answer: never longer than
 * the edge was seen to grant, whatever `edge.leaseMs` says.
 */

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { createReplicatedRuntime } from "./browser-home";
import { Outbox } from "./outbox";
import { leaseClock, type ShipmentAnswer } from "./protocol";
import { Shipper } from "./shipper";

describe("leaseClock", () => {
  it("follows the wall clock, goes on at the monotonic pace when it is set back, and never goes back", () => {
    let wall = 1_000_000;
    let mono = 0;
    const now = leaseClock(
      () => wall,
      () => mono,
    );
    expect(now()).toBe(1_000_000);
    wall += 500;
    mono += 500;
    expect(now()).toBe(1_000_500);
    // Set back a minute: real time goes on.
    wall -= 60_000;
    mono += 1_000;
    expect(now()).toBe(1_001_500);
    wall += 1_000;
    mono += 1_000;
    expect(now()).toBe(1_002_500);
    // A sleep the monotonic clock did not count: the wall clock's leap carries it.
    wall += 3_600_000;
    expect(now()).toBe(wall);
  });
});

describe("Rule C on the lease clock", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("lapses a lease a lease of real time after its shipment was sent, the wall clock set back meanwhile", async () => {
    const outbox = new Outbox({ clock: leaseClock() });
    outbox.append("a", {
      type: "create",
      record: { id: "a" } as never,
      chunks: [{ fiberId: "a", seq: 1, type: "fiber.start", data: null, at: 0 }],
    });
    const lapsed: string[] = [];
    outbox.onLapsed((id) => lapsed.push(id));
    let sends = 0;
    // The first shipment is answered (a 30 s lease from its receipt); then the link is cut.
    const shipper = new Shipper({
      outbox,
      home: "browser:d1",
      heartbeatMs: 10_000,
      clock: () => outbox.now(),
      send: async (): Promise<ShipmentAnswer> => {
        sends++;
        if (sends === 1) return { status: "ok", appliedPos: 1, leaseMs: 30_000 };
        throw new Error("offline");
      },
    });
    shipper.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(outbox.leased("a", outbox.now())).toBe(true);
    // The wall clock is set back a minute; timers (and the arbiter, on its own clock) go on. 31 s
    // of real time later the arbiter's lease (receipt + 30 s) has ended: it takes over.
    vi.setSystemTime(Date.now() - 60_000);
    await vi.advanceTimersByTimeAsync(31_000);
    const state = {
      leased: outbox.leased("a", outbox.now()), // the port's test for an awaitStart: false step
      mayWrite: outbox.mayWrite("a", outbox.now()), // ReplicatingStore's test for every write
      lapsed, // a step in progress is aborted through this
    };
    shipper.stop();
    expect(state).toEqual({ leased: false, mayWrite: false, lapsed: ["a"] });
  });

  it.each([
    ["it opens", false],
    ["given as its outbox option", true],
  ])("is the clock of the outbox a replicated runtime keeps its deadlines on (%s)", async (_, given) => {
    const { runtime, continuity } = createReplicatedRuntime({
      store: new MemoryStore(),
      fibers: [],
      ...(given ? { outbox: new Outbox() } : {}),
      edge: { baseUrl: "http://edge.test", fibers: ["x"], deviceId: "d1" },
      onError: () => {},
    });
    const { outbox } = await continuity.opened;
    const before = outbox.now();
    vi.setSystemTime(Date.now() - 60_000);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(outbox.now()).toBe(before + 1_000);
    continuity.stop();
    await runtime.close();
  });
});

describe("the lease a fiber holds before its first answer", () => {
  it("is no longer than the lease the edge was seen to grant", () => {
    const now = 1_000_000;
    const outbox = new Outbox({ leaseMs: 30_000, clock: () => now });
    const create = (id: string) =>
      outbox.append(id, {
        type: "create",
        record: { id } as never,
        chunks: [{ fiberId: id, seq: 1, type: "fiber.start", data: null, at: 0 }],
      });
    create("a");
    // Before any answer: the configured lease (30 s, less Rule C's margin of 3 s).
    expect(outbox.leased("a", now + 26_000)).toBe(true);
    // An answer says the edge grants 5 s.
    outbox.noteGranted(5_000);
    outbox.noteGranted(4_990);
    create("b");
    expect(outbox.leased("b", now + 3_900)).toBe(true);
    expect(outbox.leased("b", now + 4_100)).toBe(false);
  });
});
