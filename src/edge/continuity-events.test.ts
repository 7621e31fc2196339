/**
 * Events pushed to the browser, with a real edge home (workerd): a webhook `POST .../events` that
 * reaches a fiber's Durable Object while a browser (a runtime in this Node process) holds the
 * fiber is buffered by the arbiter and pushed in the answer to the browser's next shipment (a
 * heartbeat here); the browser's fiber consumes it once and it ships back once. A browser that
 * dies right after the push, before shipping it back, leaves it to the takeover: the edge consumes
 * it, once. Effects are counted outside both homes (the edge's through a ledger binding).
 */

import { afterAll, describe, expect, it, vi } from "vitest";
import { EDGE_HOME } from "../continuity/protocol";
import { enqueuePushedEvents } from "../continuity/send-event";
import { NODE_HOME, nodeBrowserHome, PREFIX, replicaOf } from "./testing/browser-home";
import { Ledger } from "./testing/ledger";
import { bundleWorker, TestWorker } from "./testing/workerd";

const ledger = new Ledger();
const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/continuity-worker.ts"),
  durableObjects: { FIBERS: "FiberObject" },
  // Long enough that answers arrive before Rule C's deadline on a loaded machine (see continuity.test.ts).
  bindings: { LEASE_MS: "10000" },
  serviceBindings: { LEDGER: ledger.binding },
});
afterAll(() => worker.dispose());

/** A browser home in this process; `dieAfterPush` stops it right after it enqueues the first push. */
function browserHomeOf(dieAfterPush = false) {
  const state = { pushes: 0, died: false };
  const home = nodeBrowserHome(worker, ({ runtime, shipper }) => {
    const take = enqueuePushedEvents(runtime);
    return {
      onEvents: async (fiberId, events) => {
        state.pushes++;
        if (state.died) return;
        if (dieAfterPush) {
          // Every tab closes the moment the event is here: it is enqueued, and nothing more ships.
          state.died = true;
          shipper().stop();
        }
        await take(fiberId, events);
      },
    };
  });
  return { ...home, state };
}

const replicaNow = (id: string) => replicaOf(worker, id);

async function webhook(id: string, payload: unknown): Promise<number> {
  const response = await worker.fetch(`${PREFIX}/fibers/${id}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "approval", payload }),
  });
  await response.arrayBuffer();
  return response.status;
}

const until = (check: () => Promise<void> | void, timeout = 30_000) =>
  vi.waitFor(check, { timeout, interval: 100 });

describe("events that reach the edge while a browser holds the fiber", () => {
  it("are pushed to the browser, consumed there once, and shipped back once", async () => {
    const browser = browserHomeOf();
    await browser.runtime.start("approval", null, { id: "pushed-1" });
    await until(async () => expect((await replicaNow("pushed-1")).record.status).toBe("waiting"));

    expect(await webhook("pushed-1", { ok: true })).toBeLessThan(300);
    // Buffered on the lease, not in the replica's inbox: the browser gives it its seq.
    await until(async () => expect((await replicaNow("pushed-1")).record.status).toBe("completed"));
    const replica = await replicaNow("pushed-1");
    expect(replica.record.result).toEqual({ answer: { ok: true }, where: "browser" });
    expect(replica.inbox).toHaveLength(1);
    expect(replica.inbox[0]).toMatchObject({ seq: 1, name: "approval", payload: { ok: true } });
    expect(replica.record.home?.pushed ?? []).toEqual([]);
    expect(replica.record.home).toMatchObject({ home: NODE_HOME, epoch: 1 });
    expect(browser.effects).toEqual(["browser"]);
    expect(ledger.count("pushed-1", "after")).toBe(0);
    expect(await browser.store.readInbox("pushed-1")).toHaveLength(1);
    browser.shipper.stop();
    await browser.runtime.close();
  }, 60_000);

  it("are consumed once by the edge after a takeover when the browser dies right after the push", async () => {
    const browser = browserHomeOf(true);
    await browser.runtime.start("approval", null, { id: "pushed-2" });
    await until(async () => expect((await replicaNow("pushed-2")).record.status).toBe("waiting"));

    expect(await webhook("pushed-2", { ok: "edge" })).toBeLessThan(300);
    await until(() => expect(browser.state.died).toBe(true));
    await browser.runtime.close();
    // The browser got it and died before shipping it back: the replica still holds it as pushed.
    const before = await replicaNow("pushed-2");
    expect(before.inbox).toEqual([]);
    expect(before.record.home?.pushed?.map((e) => e.eventId)).toEqual([`${EDGE_HOME}:1`]);

    // The lease lapses; the alarm takes the fiber over and the edge consumes the event.
    await ledger.arrived("pushed-2", "after", { attempt: 1, timeoutMs: 40_000 });
    await until(async () => expect((await replicaNow("pushed-2")).record.status).toBe("completed"));
    const after = await replicaNow("pushed-2");
    expect(after.record.result).toEqual({ answer: { ok: "edge" }, where: "edge" });
    expect(after.inbox).toHaveLength(1);
    expect(after.record.home).toMatchObject({ home: EDGE_HOME, epoch: 2 });
    expect(after.record.home?.pushed).toBeUndefined();
    expect(browser.effects).toEqual([]);
    expect(ledger.count("pushed-2", "after")).toBe(1);
  }, 90_000);
});
