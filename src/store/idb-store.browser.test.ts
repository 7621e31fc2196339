/**
 * `IdbStore` on Chromium's real IndexedDB (Vitest browser mode): the `Store` contract suite, the
 * upgrade of a schema-v1 database, and data surviving a close and a reopen of the store.
 */

import { deleteDB } from "idb";
import { describe, expect, it } from "vitest";
import type { FiberRecord } from "../core/records";
import { runFencelessAppendTests } from "./idb-fenceless-cases";
import { IdbStore } from "./idb-store";
import { runUpgradeTests, step } from "./idb-upgrade-cases";
import { runStoreContract } from "./store-contract";

const run = Date.now().toString(36);
let dbCount = 0;
const uniqueName = () => `fiberline-browser-${run}-${++dbCount}`;

runStoreContract("IdbStore (Chromium)", () => new IdbStore({ name: uniqueName() }), {
  cleanup: (store) => deleteDB((store as IdbStore).name),
});

// The same contract with a fold at every second commit of a journal: no case may tell it apart.
runStoreContract(
  "IdbStore (Chromium, journal folded every 2 commits)",
  () => new IdbStore({ name: uniqueName(), journalFold: 2 }),
  { cleanup: (store) => deleteDB((store as IdbStore).name) },
);

runUpgradeTests(() => ({ factory: indexedDB, name: uniqueName() }));

describe("IdbStore appending a journal without a fence read (Chromium)", () => {
  runFencelessAppendTests(() => ({ indexedDB, name: uniqueName() }));
});

const record: FiberRecord = {
  id: "f1",
  name: "research",
  version: "1",
  input: { topic: "durable execution" },
  status: "running",
  idempotencyKey: "k1",
  createdAt: 1,
  updatedAt: 1,
  generation: 0,
  streamHead: 1,
  emitOrdinal: 0,
  epoch: 0,
  stalledRecoveries: 0,
  progressMark: "",
};

it("keeps data across closing and reopening the store", async () => {
  const name = uniqueName();
  const first = new IdbStore({ name, durability: "strict" });
  await first.createFiber(record, [{ fiberId: "f1", seq: 1, type: "fiber.start", data: null, at: 1 }]);
  const claim = await first.claimFiber("f1", { owner: "tab-1", now: 10, leaseMs: 100 });
  await first.commit([
    {
      fiberId: "f1",
      generation: claim.status === "claimed" ? claim.record.generation : -1,
      snapshot: { fiberId: "f1", value: { phase: "drafting" }, at: 11 },
      journal: [
        {
          fiberId: "f1",
          pos: 0,
          kind: "step",
          key: "search#1",
          status: "completed",
          attempt: 1,
          startedAt: 10,
          result: [1, 2],
        },
      ],
    },
  ]);
  await first.close();

  const second = new IdbStore({ name });
  try {
    expect(await second.getFiber("f1")).toMatchObject({ owner: "tab-1", generation: 1 });
    expect(await second.findByIdempotencyKey("k1")).toMatchObject({ id: "f1" });
    expect(await second.readSnapshot("f1")).toMatchObject({ value: { phase: "drafting" } });
    expect(await second.readJournal("f1")).toMatchObject([{ key: "search#1", result: [1, 2] }]);
    expect(await second.readStream("f1", 0)).toMatchObject([{ seq: 1, type: "fiber.start" }]);
  } finally {
    await second.close();
    await deleteDB(name);
  }
});

it("lets a second store that knows nothing of a fiber write it: it reads the fiber's keys first", async () => {
  const name = uniqueName();
  const first = new IdbStore({ name });
  await first.createFiber(record, [{ fiberId: "f1", seq: 1, type: "fiber.start", data: null, at: 1 }]);
  await first.commit([{ fiberId: "f1", generation: 0, journal: [step(0, "started")] }]);
  // A fresh store (another context, or the same one after a restart): its first commit has to
  // read the handle and the last journal segment inside its transaction, then write.
  const second = new IdbStore({ name });
  expect(
    await second.commit([
      {
        fiberId: "f1",
        generation: 0,
        journal: [step(0, "completed"), step(1, "started")],
        chunks: [{ fiberId: "f1", seq: 2, type: "token", data: "hi", at: 2, step: 0 }],
        fiber: { streamHead: 2 },
      },
    ]),
  ).toEqual({ fenced: [] });
  expect((await first.readJournal("f1")).map((entry) => [entry.pos, entry.status])).toEqual([
    [0, "completed"],
    [1, "started"],
  ]);
  expect((await first.readStream("f1", 0)).map((chunk) => chunk.type)).toEqual(["fiber.start", "token"]);
  expect((await first.getFiber("f1"))?.streamHead).toBe(2);
  await first.close();
  await second.close();
  await deleteDB(name);
});
