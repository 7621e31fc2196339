/**
 * Events that reach the arbiter while a browser holds the fiber (a webhook at the edge), in one
 * process on `MemoryStore`s: the arbiter keeps the event on the lease and pushes it in its answers
 * (heartbeats included); the browser enqueues it once however often it is pushed, ships it back
 * as part of its history, and the arbiter knows it by its `eventId`: the replica holds it once
 * and pushes it no more. If the browser dies right after the push, before shipping it back, the
 * takeover moves it into the edge's inbox and the edge consumes it, once. Effects are counted
 * outside both homes.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { defineFiber } from "../core/define";
import type { FiberRecord } from "../core/records";
import { MemoryStore } from "../store/memory-store";
import { Arbiter } from "./arbiter";
import { EDGE_HOME, type PushedEvent } from "./protocol";
import { enqueuePushedEvents } from "./send-event";
import { TEST_HOME as HOME, inProcessHomes } from "./test-homes";

const disposers: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const dispose of disposers.splice(0)) await dispose();
});

/** Waits for "approval", then records in a step which home consumed it. */
function approval(effects: string[], where: string) {
  return defineFiber("approval", {
    async run(ctx) {
      const answer = await ctx.waitForEvent<{ ok: boolean }>("approval");
      return await ctx.step("after", async () => {
        effects.push(where);
        return { answer, where };
      });
    },
  });
}

function wait(check: () => unknown): Promise<void> {
  return vi.waitFor(async () => expect(await check()).toBe(true), { timeout: 10_000, interval: 10 });
}

/** A browser and an edge home; `pushed` decides what the browser does with pushed events. */
function homes(
  onPushed?: (fiberId: string, events: PushedEvent[], enqueue: () => Promise<void>) => Promise<void>,
) {
  const effects: string[] = [];
  const pushes: string[][] = [];
  const h = inProcessHomes({
    fiber: (where) => approval(effects, where),
    shipper: ({ browser }) => {
      const take = enqueuePushedEvents(browser);
      return {
        onEvents: async (fiberId, events) => {
          pushes.push(events.map((e) => e.eventId));
          if (onPushed) await onPushed(fiberId, events, () => take(fiberId, events));
          else await take(fiberId, events);
        },
      };
    },
  });
  disposers.push(h.dispose);
  return { ...h, effects, pushes };
}

describe("events pushed to the browser", () => {
  it("a webhook while the browser holds the fiber is pushed to it, consumed there once, and shipped back once", async () => {
    const h = homes();
    await h.browser.start("approval", null, { id: "f1" });
    await wait(async () => (await h.edgeStore.getFiber("f1"))?.status === "waiting");

    // The webhook reaches the edge: buffered on the lease, not in the replica's inbox.
    await h.edge.sendEvent("f1", "approval", { ok: true });
    const held = await h.arbiter.state("f1");
    expect(held?.pushed?.map((e) => e.eventId)).toEqual([`${EDGE_HOME}:1`]);
    expect(await h.edgeStore.readInbox("f1")).toEqual([]);

    // A heartbeat's answer pushes it; the browser's fiber consumes it and ends; it ships back.
    await wait(async () => (await h.edgeStore.getFiber("f1"))?.status === "completed");
    expect(h.effects).toEqual(["browser"]);
    expect((await h.edgeStore.getFiber("f1"))?.result).toEqual({ answer: { ok: true }, where: "browser" });
    const local = await h.local.readInbox("f1");
    expect(local).toHaveLength(1);
    expect(local[0]).toMatchObject({ eventId: `${EDGE_HOME}:1`, payload: { ok: true } });
    const replica = await h.edgeStore.readInbox("f1");
    expect(replica).toHaveLength(1);
    expect(replica[0]).toMatchObject({ seq: 1, name: "approval", payload: { ok: true } });
    expect((await h.arbiter.state("f1"))?.pushed ?? []).toEqual([]);
    // Pushed in more than one answer (heartbeats until it came back), enqueued once all the same.
    expect(h.pushes.length).toBeGreaterThanOrEqual(1);
  });

  it("pushes again to a browser that restarted before shipping it back, which enqueues it once", async () => {
    // The first answers' pushes reach a browser that keeps them but "forgets" it handed them:
    // the local inbox, not the shipper's memory, must stop the second copy.
    let calls = 0;
    const h = homes(async (_fiberId, _events, enqueue) => {
      calls++;
      await enqueue();
      if (calls === 1) await enqueue(); // the same push handed over again (a restarted shipper)
    });
    await h.browser.start("approval", null, { id: "f2" });
    await wait(async () => (await h.edgeStore.getFiber("f2"))?.status === "waiting");
    await h.edge.sendEvent("f2", "approval", { ok: true });
    await wait(async () => (await h.edgeStore.getFiber("f2"))?.status === "completed");
    expect(await h.local.readInbox("f2")).toHaveLength(1);
    expect(await h.edgeStore.readInbox("f2")).toHaveLength(1);
    expect(h.effects).toEqual(["browser"]);
  });

  it("a browser that dies right after the push leaves the event to the edge's takeover, consumed there once", async () => {
    let died = false;
    const h = homes(async (_fiberId, _events, enqueue) => {
      if (died) return;
      died = true;
      // The push arrives and is enqueued here; the browser dies before shipping it back (its
      // shipper is gone before the enqueue can be shipped).
      h.shipper.stop();
      await enqueue();
    });
    await h.browser.start("approval", null, { id: "f3" });
    await wait(async () => (await h.edgeStore.getFiber("f3"))?.status === "waiting");
    await h.edge.sendEvent("f3", "approval", { ok: true });
    await wait(() => died);
    await h.browser.close();
    expect(h.effects).toEqual([]); // its step after the wait never started (Rule A)
    expect(await h.edgeStore.readInbox("f3")).toEqual([]);

    h.lapse();
    expect(await h.arbiter.takeOverLapsed()).toEqual(["f3"]);
    const inbox = await h.edgeStore.readInbox("f3");
    expect(inbox).toHaveLength(1);
    expect(inbox[0]).toMatchObject({ name: "approval", payload: { ok: true }, eventId: `${EDGE_HOME}:1` });
    expect(await h.arbiter.state("f3")).toMatchObject({ home: EDGE_HOME, epoch: 2 });
    expect((await h.arbiter.state("f3"))?.pushed).toBeUndefined();
    await h.edge.recover();
    await wait(async () => (await h.edgeStore.getFiber("f3"))?.status === "completed");
    expect(h.effects).toEqual(["edge"]);
    expect(await h.edgeStore.readInbox("f3")).toHaveLength(1);
  });

  it("a webhook after the takeover goes straight into the edge's inbox", async () => {
    const h = homes();
    await h.browser.start("approval", null, { id: "f4" });
    await wait(async () => (await h.edgeStore.getFiber("f4"))?.status === "waiting");
    h.shipper.stop();
    await h.browser.close();
    h.lapse();
    await h.edge.sendEvent("f4", "approval", { ok: false });
    expect(await h.arbiter.state("f4")).toMatchObject({ home: EDGE_HOME });
    await h.edge.recover();
    await wait(async () => (await h.edgeStore.getFiber("f4"))?.status === "completed");
    expect(h.effects).toEqual(["edge"]);
    expect(await h.edgeStore.readInbox("f4")).toHaveLength(1);
  });

  it("moves pushed events into the inbox once when the takeover crashes midway, after a restart", async () => {
    for (const crash of ["second enqueue", "takeover commit"] as const) {
      const store = new CrashingStore();
      let now = Date.now();
      const arbiter = new Arbiter({ store, clock: () => now, leaseMs: 30_000 });
      const first = await arbiter.receive("f5", {
        home: HOME,
        epoch: 1,
        from: 1,
        entries: [{ pos: 1, type: "create", record: waitingRecord("f5", now), chunks: [] }],
      });
      expect(first).toMatchObject({ status: "ok" });
      await arbiter.accept({ fiberId: "f5", name: "approval", payload: 1, at: now });
      await arbiter.accept({ fiberId: "f5", name: "approval", payload: 2, at: now });
      expect((await arbiter.state("f5"))?.pushed?.map((e) => e.payload)).toEqual([1, 2]);

      now += 31_000;
      store.crashAt = crash;
      await expect(arbiter.takeOverLapsed()).rejects.toThrow(/crash/);
      // Still the browser's: the events move in before the home changes.
      expect(await arbiter.state("f5")).toMatchObject({ home: HOME });

      // The object restarts: a new arbiter on the same replica finishes the move, once.
      const again = new Arbiter({ store, clock: () => now, leaseMs: 30_000 });
      expect(await again.takeOverLapsed()).toEqual(["f5"]);
      expect(await again.state("f5")).toMatchObject({ home: EDGE_HOME, epoch: 2 });
      expect(
        (await store.readInbox("f5")).map((e) => [e.seq, e.payload]),
        crash,
      ).toEqual([
        [1, 1],
        [2, 2],
      ]);
      expect((await again.state("f5"))?.pushed, crash).toBeUndefined();
      await again.takeOverLapsed();
      expect(await store.readInbox("f5"), crash).toHaveLength(2);
    }
  });

  it("moves in no pushed event the browser shipped back, even when a crash lost the record of it", async () => {
    const store = new CrashingStore();
    let now = Date.now();
    const arbiter = new Arbiter({ store, clock: () => now, leaseMs: 30_000 });
    const create = { pos: 1, type: "create" as const, record: waitingRecord("f6", now), chunks: [] };
    await arbiter.receive("f6", { home: HOME, epoch: 1, from: 1, entries: [create] });
    await arbiter.accept({ fiberId: "f6", name: "approval", payload: "once", at: now });
    // The browser ships it back at its inbox seq 1; the arbiter stores it and crashes before
    // recording the position (and that it is no longer pushed).
    const shippedBack = {
      pos: 2,
      type: "event" as const,
      eventId: `${HOME}:1`,
      event: {
        fiberId: "f6",
        seq: 1,
        name: "approval",
        payload: "once",
        at: now + 5,
        eventId: `${EDGE_HOME}:1`,
      },
    };
    store.crashAt = "commit after an enqueue";
    await expect(
      arbiter.receive("f6", { home: HOME, epoch: 1, from: 2, entries: [shippedBack] }),
    ).rejects.toThrow(/crash/);
    expect((await arbiter.state("f6"))?.pushed?.map((e) => e.eventId)).toEqual([`${EDGE_HOME}:1`]);
    // The browser is gone; the takeover finds the event in the inbox by its id.
    now += 31_000;
    const again = new Arbiter({ store, clock: () => now, leaseMs: 30_000 });
    expect(await again.takeOverLapsed()).toEqual(["f6"]);
    expect((await store.readInbox("f6")).map((e) => e.payload)).toEqual(["once"]);
  });

  it("keeps a pushed event the fiber ended without taking in the replica's inbox, unconsumed, once", async () => {
    const store = new CrashingStore();
    const now = Date.now();
    const arbiter = new Arbiter({ store, clock: () => now, leaseMs: 30_000 });
    const create = { pos: 1, type: "create" as const, record: waitingRecord("f7", now), chunks: [] };
    await arbiter.receive("f7", { home: HOME, epoch: 1, from: 1, entries: [create] });
    await arbiter.accept({ fiberId: "f7", name: "approval", payload: "late", at: now });
    const end = {
      pos: 2,
      type: "commit" as const,
      group: { fiberId: "f7", generation: 1, fiber: { status: "cancelled" as const, endedAt: now } },
    };
    // A crash after the event moved in and before the end was recorded: the retry moves it no more.
    store.crashAt = "commit after an enqueue";
    const shipment = { home: HOME, epoch: 1, from: 2, entries: [end] };
    await expect(arbiter.receive("f7", shipment)).rejects.toThrow(/crash/);
    expect(await arbiter.receive("f7", shipment)).toMatchObject({ status: "ok", appliedPos: 2 });
    expect((await store.getFiber("f7"))?.status).toBe("cancelled");
    const inbox = await store.readInbox("f7");
    expect(inbox.map((e) => [e.payload, e.consumedBy])).toEqual([["late", undefined]]);
    expect((await arbiter.state("f7"))?.pushed).toBeUndefined();
  });
});

/** A `MemoryStore` that crashes once at a chosen point. */
class CrashingStore extends MemoryStore {
  crashAt: "second enqueue" | "takeover commit" | "commit after an enqueue" | undefined;
  #enqueued = 0;
  #afterEnqueue = false;
  override async enqueueEvent(...args: Parameters<MemoryStore["enqueueEvent"]>) {
    if (this.crashAt === "second enqueue" && ++this.#enqueued === 2) {
      this.crashAt = undefined;
      throw new Error("simulated crash before the second event was stored");
    }
    const stored = await super.enqueueEvent(...args);
    this.#afterEnqueue = true;
    return stored;
  }
  override async commit(...args: Parameters<MemoryStore["commit"]>) {
    const [groups] = args;
    const takesOver = groups.some((g) => g.fiber?.home?.home === EDGE_HOME);
    if (
      (this.crashAt === "takeover commit" && takesOver) ||
      (this.crashAt === "commit after an enqueue" && this.#afterEnqueue)
    ) {
      this.crashAt = undefined;
      throw new Error("simulated crash before the commit applied");
    }
    return super.commit(...args);
  }
}

function waitingRecord(id: string, now: number): FiberRecord {
  return {
    id,
    name: "approval",
    version: "1",
    input: null,
    status: "waiting",
    createdAt: now,
    updatedAt: now,
    generation: 1,
    streamHead: 0,
    emitOrdinal: 0,
    epoch: 0,
    stalledRecoveries: 0,
    progressMark: "",
  };
}
