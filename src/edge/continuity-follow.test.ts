/**
 * The replica route as a following mirror uses it, against a real Durable Object (workerd): a
 * browser home (shipments made by hand here) replicates a fiber; `GET .../replica?after=N` still
 * answers the whole replica; with the cursor of an answer it answers only what changed (new
 * journal entries and chunks, a consumed event, a new stash); with `wait` it holds the read
 * until a shipment changes the replica, or answers "nothing new" at the timeout.
 */

import { afterAll, describe, expect, it } from "vitest";
import type { ShippedEntry } from "../continuity/protocol";
import { browserHome } from "../continuity/protocol";
import type { JournalEntry, StreamChunk } from "../core/records";
import { testRecord } from "../core/test-records";
import type { ReplicaAnswer } from "./replica-read";
import { shipOverHttp } from "./replica-routes";
import { Ledger } from "./testing/ledger";
import { bundleWorker, TestWorker } from "./testing/workerd";
import { decodeValue } from "./value-codec";

const ledger = new Ledger();
const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/continuity-worker.ts"),
  durableObjects: { FIBERS: "FiberObject" },
  // The browser lease outlasts every test: nothing here is taken over.
  bindings: { LEASE_MS: "60000" },
  serviceBindings: { LEDGER: ledger.binding },
});
afterAll(() => worker.dispose());

const PREFIX = "/__fiberline";
const HOME = browserHome("node");
const send = shipOverHttp(`http://edge.test${PREFIX}`, (url, init) =>
  worker.fetch(new URL(url).pathname, init),
);

type Unpositioned = ShippedEntry extends infer E ? (E extends ShippedEntry ? Omit<E, "pos"> : never) : never;

/** A fiber a browser replicates, one shipment at a time, with its positions counted here. */
function replicated(id: string) {
  let pos = 0;
  const record = testRecord({ id, createdAt: Date.now(), updatedAt: Date.now() });
  const chunk = (seq: number): StreamChunk => ({ fiberId: id, seq, type: "tick", data: { seq }, at: seq });
  const entry = (at: number, status: JournalEntry["status"] = "completed"): JournalEntry => ({
    fiberId: id,
    pos: at,
    kind: "step",
    key: `step#${at}`,
    status,
    attempt: 1,
    startedAt: at,
    ...(status === "started" ? {} : { endedAt: at + 1, result: { text: `reply ${at} `.padEnd(200, ".") } }),
  });
  return {
    chunk,
    entry,
    async ship(...entries: Unpositioned[]): Promise<void> {
      const from = pos + 1;
      pos += entries.length;
      const shipment = {
        home: HOME,
        epoch: 1,
        from,
        entries: entries.map((e, i) => ({ ...e, pos: from + i })),
      };
      expect(await send(id, shipment as Parameters<typeof send>[1])).toMatchObject({ status: "ok" });
    },
    create: (): Unpositioned => ({
      type: "create",
      record,
      chunks: [{ fiberId: id, seq: 1, type: "fiber.start", data: null, at: 1 }],
    }),
    commit: (
      group: Omit<Extract<ShippedEntry, { type: "commit" }>["group"], "fiberId" | "generation">,
    ): Unpositioned => ({
      type: "commit",
      group: { fiberId: id, generation: 1, ...group },
    }),
    event: (seq: number, name: string): Unpositioned => ({
      type: "event",
      eventId: `${HOME}:${seq}`,
      event: { fiberId: id, seq, name, payload: { seq }, at: Date.now() },
    }),
    async read(query: string): Promise<{ answer: ReplicaAnswer; bytes: number; ms: number }> {
      const started = Date.now();
      const response = await worker.fetch(`${PREFIX}/fibers/${id}/replica?${query}`);
      const text = await response.text();
      expect(response.status, text).toBe(200);
      return { answer: decodeValue(text) as ReplicaAnswer, bytes: text.length, ms: Date.now() - started };
    },
  };
}

describe("the replica route for a following mirror", () => {
  it("answers an old-style request (after only) with the whole replica", async () => {
    const f = replicated("old-style");
    await f.ship(
      f.create(),
      f.commit({ journal: [f.entry(0), f.entry(1, "started")], chunks: [f.chunk(2)] }),
      f.commit({ snapshot: { fiberId: "old-style", value: { draft: "a" }, at: 3, ordinal: 1 } }),
      f.event(1, "go"),
    );
    const { answer } = await f.read("after=1");
    expect(answer).toMatchObject({
      journal: [f.entry(0), f.entry(1, "started")],
      snapshot: { value: { draft: "a" }, ordinal: 1 },
      inbox: [{ seq: 1, name: "go" }],
      chunks: [f.chunk(2)],
      record: { id: "old-style", home: { home: HOME, epoch: 1 } },
    });
    expect(answer.type).not.toBe("delta");
  });

  it("answers a cursor with what changed: new entries and chunks, a consumed event, a new stash", async () => {
    const f = replicated("deltas");
    await f.ship(f.create(), f.commit({ journal: Array.from({ length: 200 }, (_, i) => f.entry(i)) }));
    const first = await f.read("after=0");
    expect(first.answer.type).toBe("full");

    await f.ship(f.commit({ journal: [f.entry(200)], chunks: [f.chunk(2)] }));
    const whole = await f.read("after=1");
    const delta = await f.read(`after=1&cursor=${first.answer.cursor}`);
    expect(delta.answer).toMatchObject({ type: "delta", journal: { from: 200, entries: [f.entry(200)] } });
    expect(delta.answer.chunks.map((c) => c.seq)).toEqual([2]);
    expect(delta.answer).not.toHaveProperty("inbox");
    expect(delta.answer).not.toHaveProperty("snapshot");
    console.info(
      `replica route, one more step of a 200-entry journal: whole ${whole.bytes} B, delta ${delta.bytes} B`,
    );
    expect(delta.bytes * 20).toBeLessThan(whole.bytes);

    await f.ship(f.event(1, "go"));
    const arrived = await f.read(`after=2&cursor=${delta.answer.cursor}`);
    expect(arrived.answer).toMatchObject({ type: "delta", inbox: [{ seq: 1, name: "go" }] });
    expect(arrived.answer.inbox?.[0]?.consumedBy).toBeUndefined();

    await f.ship(
      f.commit({
        journal: [f.entry(201)],
        consumeEvents: [{ seq: 1, consumedBy: 201 }],
        snapshot: { fiberId: "deltas", value: { draft: "b" }, at: 5, ordinal: 1 },
      }),
    );
    const consumed = await f.read(`after=2&cursor=${arrived.answer.cursor}`);
    expect(consumed.answer).toMatchObject({
      type: "delta",
      journal: { from: 201, entries: [f.entry(201)] },
      inbox: [{ seq: 1, consumedBy: 201 }],
      snapshot: { value: { draft: "b" } },
    });
  });

  it("holds a read until a shipment changes the replica, and answers nothing new at the timeout", async () => {
    const f = replicated("held");
    await f.ship(f.create());
    const first = await f.read("after=0");

    const held = f.read(`after=1&cursor=${first.answer.cursor}&wait=10000`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await f.ship(f.commit({ chunks: [f.chunk(2)] }));
    const woken = await held;
    expect(woken.answer.chunks.map((c) => c.seq)).toEqual([2]);
    expect(woken.ms).toBeGreaterThanOrEqual(250);
    expect(woken.ms).toBeLessThan(5_000);

    const quiet = await f.read(`after=2&cursor=${woken.answer.cursor}&wait=700`);
    expect(quiet.answer).toEqual({ type: "delta", chunks: [], cursor: woken.answer.cursor });
    expect(quiet.ms).toBeGreaterThanOrEqual(650);

    const refused = await worker.fetch(`${PREFIX}/fibers/held/replica?after=0&wait=soon`);
    expect(refused.status).toBe(400);
    await refused.arrayBuffer();
  });
});
