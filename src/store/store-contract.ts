/**
 * The `Store` contract suite: one set of Vitest tests every backend passes (`MemoryStore`,
 * `IdbStore` on fake-indexeddb and in Chromium, the edge `SqliteStore`). Test files call
 * `runStoreContract`; it imports Vitest, so it is not exported from `src/store/index.ts`.
 */

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FiberNotFoundError, StoreError } from "../core/errors";
import type { FiberRecord, JournalEntry, StreamChunk } from "../core/records";
import type { Store, WriteGroup } from "../core/store";

/** Options of `runStoreContract`. */
export interface StoreContractOptions {
  /** Runs after each test once the store is closed (e.g. to delete the test database). */
  cleanup?: (store: Store) => Promise<void> | void;
}

/**
 * Registers the contract suite for one backend. `create` is called once per test and must
 * return an empty store (for `IdbStore`, a unique database name).
 *
 * @example
 * runStoreContract("MemoryStore", () => new MemoryStore());
 */
export function runStoreContract(
  name: string,
  create: () => Promise<Store> | Store,
  options: StoreContractOptions = {},
): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await create();
    });
    afterEach(async () => {
      await store.close();
      await options.cleanup?.(store);
    });

    /** Creates fiber `id` and claims it, returning the claimed generation. */
    async function running(id: string, overrides: Partial<FiberRecord> = {}): Promise<number> {
      await store.createFiber(fiber(id, overrides), []);
      const claim = await store.claimFiber(id, { owner: "runner", now: 1_000, leaseMs: 30_000 });
      if (claim.status !== "claimed") throw new Error(`setup: could not claim ${id}`);
      return claim.record.generation;
    }

    const ids = (records: FiberRecord[]) => records.map((r) => r.id);

    it("names its backend", () => {
      expect(store.kind).toMatch(/^[a-z]+$/);
    });

    describe("createFiber", () => {
      it("writes the record and its first chunks", async () => {
        const record = fiber("f1", { idempotencyKey: "k1" });
        const result = await store.createFiber(record, [chunk("f1", 1, "fiber.start")]);
        expect(result).toEqual({ status: "created", record });
        expect(await store.getFiber("f1")).toEqual(record);
        expect(await store.findByIdempotencyKey("k1")).toEqual(record);
        expect(await store.readStream("f1", 0)).toEqual([chunk("f1", 1, "fiber.start")]);
      });

      it("keeps the generation it was created with as createdGeneration, also when not given one", async () => {
        // The runtime's records come without one: the store adds it, its identity.
        const { createdGeneration: _, ...given } = fiber("f1", { generation: 3 });
        const created = await store.createFiber(given as FiberRecord, []);
        expect(created.record.createdGeneration).toBe(3);
        expect((await store.getFiber("f1"))?.createdGeneration).toBe(3);
      });

      it("answers readStreamAndRecord, where it has it, as readStream and getFiber would", async () => {
        if (store.readStreamAndRecord === undefined) return;
        await store.createFiber(fiber("f1", { streamHead: 3 }), [
          chunk("f1", 1, "fiber.start"),
          chunk("f1", 2),
          chunk("f1", 3),
        ]);
        const read = await store.readStreamAndRecord("f1", 1, 1);
        expect(read).toEqual({
          chunks: await store.readStream("f1", 1, 1),
          record: await store.getFiber("f1"),
        });
        expect(read.chunks.map((c) => c.seq)).toEqual([2]);
        expect(await store.readStreamAndRecord("missing", 0)).toEqual({ chunks: [], record: undefined });
      });

      it("returns the existing fiber for a taken id and writes nothing", async () => {
        const first = fiber("f1", { input: { n: 1 } });
        await store.createFiber(first, [chunk("f1", 1)]);
        const result = await store.createFiber(fiber("f1", { input: { n: 2 }, name: "other" }), [
          chunk("f1", 1, "changed"),
          chunk("f1", 2),
        ]);
        expect(result).toEqual({ status: "exists", record: first });
        expect(await store.getFiber("f1")).toEqual(first);
        expect(await store.readStream("f1", 0)).toEqual([chunk("f1", 1)]);
      });

      it("returns the existing fiber for a taken idempotency key and writes nothing", async () => {
        const first = fiber("f1", { idempotencyKey: "same" });
        await store.createFiber(first, []);
        const result = await store.createFiber(fiber("f2", { idempotencyKey: "same" }), [chunk("f2", 1)]);
        expect(result).toEqual({ status: "exists", record: first });
        expect(await store.getFiber("f2")).toBeUndefined();
        expect(await store.readStream("f2", 0)).toEqual([]);
        expect(await store.listFibers()).toEqual([first]);
      });

      it("creates many fibers that have no idempotency key", async () => {
        for (const id of ["a", "b", "c"]) {
          expect((await store.createFiber(fiber(id), [])).status).toBe("created");
        }
        expect((await store.listFibers()).map((r) => r.id)).toEqual(["a", "b", "c"]);
        expect(await store.findByIdempotencyKey("a")).toBeUndefined();
      });

      it("rejects a value that is not structured-cloneable and writes nothing", async () => {
        const bad = chunk("f1", 1, "progress", { render: () => "not data" });
        await expect(store.createFiber(fiber("f1"), [bad])).rejects.toMatchObject({ code: "store_error" });
        expect(await store.getFiber("f1")).toBeUndefined();
      });
    });

    // `IdbStore` writes a registration without reading first once an earlier one reserved what it
    // needs (`createFiber`): these run after a first fiber, so they cover that path too.
    describe("createFiber after a first fiber", () => {
      it("creates fibers whose rows are their own, beside fibers created by createFiber", async () => {
        await store.createFiber(fiber("old", { idempotencyKey: "k-old", streamHead: 1 }), [
          chunk("old", 1, "fiber.start"),
        ]);
        const fresh = ["n1", "n2", "n3"].map((id) => fiber(id, { idempotencyKey: `k-${id}`, streamHead: 1 }));
        for (const record of fresh) {
          const result = await store.createFiber(record, [chunk(record.id, 1, "fiber.start")]);
          expect(result).toEqual({ status: "created", record });
        }
        for (const record of fresh) {
          expect(await store.getFiber(record.id)).toEqual(record);
          expect(await store.findByIdempotencyKey(`k-${record.id}`)).toEqual(record);
        }
        await store.commit(
          ["old", "n1", "n2", "n3"].map((id, i) => ({
            fiberId: id,
            generation: 0,
            journal: [entry(id, 0, { key: `s${i}#1` })],
            chunks: [chunk(id, 2, `c${i}`)],
            fiber: { streamHead: 2 },
          })),
        );
        for (const [i, id] of ["old", "n1", "n2", "n3"].entries()) {
          expect((await store.readJournal(id)).map((e) => e.key)).toEqual([`s${i}#1`]);
          expect((await store.readStream(id, 0)).map((c) => c.type)).toEqual(["fiber.start", `c${i}`]);
        }
      });

      it("returns the fiber of a taken id or idempotency key and writes nothing", async () => {
        const first = fiber("f1", { idempotencyKey: "same" });
        await store.createFiber(first, [chunk("f1", 1)]);
        const result = await store.createFiber(fiber("f2", { idempotencyKey: "same" }), [chunk("f2", 1)]);
        expect(result).toEqual({ status: "exists", record: first });
        expect(await store.getFiber("f2")).toBeUndefined();
        expect(await store.readStream("f2", 0)).toEqual([]);
        const again = await store.createFiber(fiber("f1", { name: "other" }), [chunk("f1", 1, "changed")]);
        expect(again).toEqual({ status: "exists", record: first });
        expect(await store.readStream("f1", 0)).toEqual([chunk("f1", 1)]);
        expect(await store.listFibers()).toEqual([first]);
      });

      it("starts a fiber created again after a delete above the generation its former fiber reached", async () => {
        await store.createFiber(fiber("first"), []);
        await store.createFiber(fiber("f1", { generation: 1 }), []);
        for (let i = 0; i < 3; i++)
          await store.claimFiber("f1", { owner: "r", now: 1_000, leaseMs: 1, force: true });
        expect((await store.getFiber("f1"))?.generation).toBe(4);
        await store.deleteFibers(["f1"]);
        const again = await store.createFiber(fiber("f1", { generation: 1 }), []);
        expect(again.record.generation).toBe(5);
        const other = await store.createFiber(fiber("f2", { generation: 1 }), []);
        expect(other.record.generation).toBe(5);
        const stale = await store.commit([{ fiberId: "f1", generation: 4, journal: [entry("f1", 0)] }]);
        expect(stale.fenced).toEqual(["f1"]);
      });

      it("fences the stale runner of a fiber created after another, and deletes it whole", async () => {
        await store.createFiber(fiber("first"), []);
        await store.createFiber(fiber("f1"), [chunk("f1", 1, "fiber.start")]);
        const claim = await store.claimFiber("f1", { owner: "runner", now: 1_000, leaseMs: 30_000 });
        if (claim.status !== "claimed") throw new Error("setup: could not claim f1");
        const snap = (value: string) => ({ fiberId: "f1", value, at: 2_000 });
        const stale = await store.commit([
          { fiberId: "f1", generation: 0, snapshot: snap("stale"), journal: [entry("f1", 0)] },
        ]);
        expect(stale.fenced).toEqual(["f1"]);
        const current = await store.commit([
          { fiberId: "f1", generation: claim.record.generation, snapshot: snap("current") },
        ]);
        expect(current.fenced).toEqual([]);
        const staleStash = await store.commit([{ fiberId: "f1", generation: 0, snapshot: snap("stale") }]);
        expect(staleStash.fenced).toEqual(["f1"]);
        expect((await store.readSnapshot("f1"))?.value).toBe("current");
        expect(await store.readJournal("f1")).toEqual([]);
        expect(await store.deleteFibers(["f1"])).toEqual(["f1"]);
        expect(await store.getFiber("f1")).toBeUndefined();
        expect(await store.readStream("f1", 0)).toEqual([]);
      });

      it("rejects a value that is not structured-cloneable and writes nothing", async () => {
        await store.createFiber(fiber("first"), []);
        const bad = chunk("f1", 1, "progress", { render: () => "not data" });
        await expect(store.createFiber(fiber("f1"), [bad])).rejects.toMatchObject({
          code: "store_error",
        });
        expect(await store.getFiber("f1")).toBeUndefined();
        // The store goes on creating fibers.
        expect((await store.createFiber(fiber("f2"), [])).status).toBe("created");
        expect((await store.createFiber(fiber("f3"), [])).status).toBe("created");
      });
    });

    describe("claimFiber", () => {
      const request = { owner: "a", now: 1_000, leaseMs: 5_000 };

      it("reports a missing fiber", async () => {
        expect(await store.claimFiber("nope", request)).toEqual({ status: "missing" });
      });

      it("claims a free fiber: generation + 1, owner, lease and updatedAt set", async () => {
        await store.createFiber(fiber("f1", { generation: 4 }), []);
        const result = await store.claimFiber("f1", request);
        const expected = {
          ...fiber("f1", { generation: 4 }),
          generation: 5,
          owner: "a",
          leaseUntil: 6_000,
          updatedAt: 1_000,
        };
        expect(result).toEqual({ status: "claimed", record: expected });
        expect(await store.getFiber("f1")).toEqual(expected);
      });

      it("leaves a fiber held by another owner's live lease, unless forced", async () => {
        await store.createFiber(fiber("f1"), []);
        await store.claimFiber("f1", request);
        const held = await store.claimFiber("f1", { owner: "b", now: 5_999, leaseMs: 5_000 });
        expect(held).toMatchObject({ status: "held", record: { owner: "a", generation: 1 } });
        expect(await store.getFiber("f1")).toMatchObject({ owner: "a", generation: 1, leaseUntil: 6_000 });

        const forced = await store.claimFiber("f1", { owner: "b", now: 5_999, leaseMs: 5_000, force: true });
        expect(forced).toMatchObject({
          status: "claimed",
          record: { owner: "b", generation: 2, leaseUntil: 10_999 },
        });
      });

      it("settles claims made at once one by one: one owner wins a fiber, every fiber is claimed", async () => {
        const ids = ["f1", "f2", "f3", "f4"];
        for (const id of ids) await store.createFiber(fiber(id), []);
        const results = await Promise.all([
          ...ids.map((id) => store.claimFiber(id, request)),
          store.claimFiber("f1", { ...request, owner: "b" }),
          store.claimFiber("nope", request),
        ]);
        expect(results.slice(0, 4).map((r) => r.status)).toEqual([
          "claimed",
          "claimed",
          "claimed",
          "claimed",
        ]);
        // The second claim of f1 saw the first one's live lease.
        expect(results[4]).toMatchObject({ status: "held", record: { owner: "a", generation: 1 } });
        expect(results[5]).toEqual({ status: "missing" });
        for (const id of ids) expect(await store.getFiber(id)).toMatchObject({ owner: "a", generation: 1 });
      });

      it("takes over an expired lease (a lease ending at `now` has expired)", async () => {
        await store.createFiber(fiber("f1"), []);
        await store.claimFiber("f1", request);
        const result = await store.claimFiber("f1", { owner: "b", now: 6_000, leaseMs: 5_000 });
        expect(result).toMatchObject({ status: "claimed", record: { owner: "b", generation: 2 } });
      });

      it("claims a fiber whose owner has no lease", async () => {
        await store.createFiber(fiber("f1", { owner: "ghost" }), []);
        expect(await store.claimFiber("f1", request)).toMatchObject({
          status: "claimed",
          record: { owner: "a" },
        });
      });

      it("bumps the generation on every claim, also by the same owner", async () => {
        await store.createFiber(fiber("f1"), []);
        const generations: number[] = [];
        for (let i = 0; i < 3; i++) {
          const result = await store.claimFiber("f1", { ...request, now: request.now + i });
          if (result.status === "claimed") generations.push(result.record.generation);
        }
        expect(generations).toEqual([1, 2, 3]);
        expect(await store.getFiber("f1")).toMatchObject({ generation: 3, leaseUntil: 6_002 });
      });

      it.each(["completed", "failed", "cancelled"] as const)(
        "never claims a %s fiber, even forced",
        async (status) => {
          const record = fiber("f1", { status, generation: 2 });
          await store.createFiber(record, []);
          expect(await store.claimFiber("f1", { ...request, force: true })).toEqual({
            status: "held",
            record,
          });
          expect(await store.getFiber("f1")).toEqual(record);
        },
      );
    });

    describe("commit", () => {
      it("applies a group whose fence holds: patch, journal, snapshot, chunks", async () => {
        const generation = await running("f1");
        const result = await store.commit([
          {
            fiberId: "f1",
            generation,
            fiber: { streamHead: 2, updatedAt: 2_000 },
            journal: [entry("f1", 0)],
            snapshot: { fiberId: "f1", value: { phase: "drafting" }, at: 2_000 },
            chunks: [chunk("f1", 1), chunk("f1", 2)],
          },
        ]);
        expect(result).toEqual({ fenced: [] });
        expect(await store.getFiber("f1")).toMatchObject({
          streamHead: 2,
          updatedAt: 2_000,
          generation,
          owner: "runner",
        });
        expect(await store.readJournal("f1")).toEqual([entry("f1", 0)]);
        expect(await store.readSnapshot("f1")).toEqual({
          fiberId: "f1",
          value: { phase: "drafting" },
          at: 2_000,
        });
        expect(await store.readStream("f1", 0)).toEqual([chunk("f1", 1), chunk("f1", 2)]);
      });

      it("skips only the fenced group and reports it", async () => {
        const g1 = await running("f1");
        const g2 = await running("f2");
        await store.claimFiber("f2", { owner: "thief", now: 1_000, leaseMs: 1, force: true });
        const before = await store.getFiber("f2");
        const result = await store.commit([
          { fiberId: "f1", generation: g1, fiber: { streamHead: 1 }, chunks: [chunk("f1", 1)] },
          {
            fiberId: "f2",
            generation: g2,
            fiber: { streamHead: 1 },
            journal: [entry("f2", 0)],
            snapshot: { fiberId: "f2", value: 1, at: 1 },
            chunks: [chunk("f2", 1)],
          },
        ]);
        expect(result).toEqual({ fenced: ["f2"] });
        expect(await store.getFiber("f1")).toMatchObject({ streamHead: 1 });
        expect(await store.readStream("f1", 0)).toHaveLength(1);
        expect(await store.getFiber("f2")).toEqual(before);
        expect(await store.readJournal("f2")).toEqual([]);
        expect(await store.readSnapshot("f2")).toBeUndefined();
        expect(await store.readStream("f2", 0)).toEqual([]);
      });

      it("fences a journal-only write of a stale generation, after the same writer wrote once", async () => {
        const generation = await running("f1");
        // The first write teaches a store where the fiber's rows go (IdbStore then writes without
        // looking them up): the fence must hold for the writes after it too.
        expect(await store.commit([{ fiberId: "f1", generation, journal: [entry("f1", 0)] }])).toEqual({
          fenced: [],
        });
        expect(await store.commit([{ fiberId: "f1", generation, journal: [entry("f1", 1)] }])).toEqual({
          fenced: [],
        });
        await store.claimFiber("f1", { owner: "thief", now: 1_000, leaseMs: 1, force: true });
        const stale = { fiberId: "f1", generation, journal: [entry("f1", 2)] };
        expect(await store.commit([stale])).toEqual({ fenced: ["f1"] });
        expect(await store.commit([{ ...stale, clearJournal: true }])).toEqual({ fenced: ["f1"] });
        expect((await store.readJournal("f1")).map((e) => e.pos)).toEqual([0, 1]);
      });

      it("fences a journal-only write of a deleted fiber, and of one created again under its id", async () => {
        const generation = await running("f1");
        await store.commit([{ fiberId: "f1", generation, journal: [entry("f1", 0)] }]);
        await store.deleteFibers(["f1"]);
        const stale = { fiberId: "f1", generation, journal: [entry("f1", 1)] };
        expect(await store.commit([stale])).toEqual({ fenced: ["f1"] });
        expect(await store.readJournal("f1")).toEqual([]);
        const created = await store.createFiber(fiber("f1"), [chunk("f1", 1, "fiber.start")]);
        expect(created.status).toBe("created");
        expect(await store.commit([stale])).toEqual({ fenced: ["f1"] });
        expect(await store.readJournal("f1")).toEqual([]);
        // The new fiber's own writer writes.
        const own = { fiberId: "f1", generation: created.record.generation, journal: [entry("f1", 0)] };
        expect(await store.commit([own])).toEqual({ fenced: [] });
        expect(await store.readJournal("f1")).toHaveLength(1);
      });

      it("reports a group for a missing fiber as fenced and writes nothing for it", async () => {
        const result = await store.commit([{ fiberId: "ghost", generation: 0, chunks: [chunk("ghost", 1)] }]);
        expect(result).toEqual({ fenced: ["ghost"] });
        expect(await store.getFiber("ghost")).toBeUndefined();
        expect(await store.readStream("ghost", 0)).toEqual([]);
      });

      it("accepts an empty commit", async () => {
        expect(await store.commit([])).toEqual({ fenced: [] });
      });

      it("is atomic across groups: one bad value rejects the commit and nothing is written", async () => {
        const g1 = await running("f1");
        const g2 = await running("f2");
        const groups: WriteGroup[] = [
          { fiberId: "f1", generation: g1, fiber: { streamHead: 1 }, chunks: [chunk("f1", 1)] },
          { fiberId: "f2", generation: g2, chunks: [chunk("f2", 1, "progress", { fn: () => 1 })] },
        ];
        const error = await store.commit(groups).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StoreError);
        expect(error).toMatchObject({ code: "store_error" });
        expect(await store.getFiber("f1")).toMatchObject({ streamHead: 0 });
        expect(await store.readStream("f1", 0)).toEqual([]);
      });

      it("refuses chunks that would leave a hole or repeat a seq, writing nothing of the commit", async () => {
        const g1 = await running("f1");
        const g2 = await running("f2");
        await store.commit([{ fiberId: "f1", generation: g1, chunks: [chunk("f1", 1), chunk("f1", 2)] }]);
        expect(await store.getFiber("f1")).toMatchObject({ streamHead: 2 });
        for (const chunks of [[chunk("f1", 4)], [chunk("f1", 2)], [chunk("f1", 3), chunk("f1", 5)]]) {
          const groups: WriteGroup[] = [
            { fiberId: "f2", generation: g2, chunks: [chunk("f2", 1)] },
            { fiberId: "f1", generation: g1, fiber: { streamHead: chunks.at(-1)?.seq ?? 0 }, chunks },
          ];
          await expect(store.commit(groups)).rejects.toMatchObject({ code: "stream_gap" });
        }
        expect((await store.readStream("f1", 0)).map((c) => c.seq)).toEqual([1, 2]);
        expect(await store.readStream("f2", 0)).toEqual([]);
        expect(await store.getFiber("f1")).toMatchObject({ streamHead: 2 });
        // Two groups of one fiber in one commit continue each other.
        await store.commit([
          { fiberId: "f1", generation: g1, chunks: [chunk("f1", 3)] },
          { fiberId: "f1", generation: g1, chunks: [chunk("f1", 4)] },
        ]);
        expect(await store.getFiber("f1")).toMatchObject({ streamHead: 4 });
      });

      it("is atomic when a key is invalid", async () => {
        const g1 = await running("f1");
        const groups: WriteGroup[] = [
          { fiberId: "f1", generation: g1, journal: [entry("f1", 0)], chunks: [chunk("f1", Number.NaN)] },
        ];
        await expect(store.commit(groups)).rejects.toMatchObject({ code: "store_error" });
        expect(await store.readJournal("f1")).toEqual([]);
      });

      it("refuses to give two fibers one idempotency key, writing nothing", async () => {
        await store.createFiber(fiber("f1", { idempotencyKey: "k1" }), []);
        const g2 = await running("f2", { idempotencyKey: "k2" });
        const groups: WriteGroup[] = [
          { fiberId: "f2", generation: g2, fiber: { idempotencyKey: "k1" }, chunks: [chunk("f2", 1)] },
        ];
        await expect(store.commit(groups)).rejects.toMatchObject({ code: "store_error" });
        expect(await store.findByIdempotencyKey("k1")).toMatchObject({ id: "f1" });
        expect(await store.findByIdempotencyKey("k2")).toMatchObject({ id: "f2" });
        expect(await store.readStream("f2", 0)).toEqual([]);
      });

      it("merges the patch; undefined values delete fields", async () => {
        const generation = await running("f1");
        const end = {
          status: "completed",
          result: { ok: true },
          endedAt: 9,
          owner: undefined,
          leaseUntil: undefined,
        } as const;
        await store.commit([{ fiberId: "f1", generation, fiber: end }]);
        const record = await store.getFiber("f1");
        expect(record).toMatchObject({
          status: "completed",
          result: { ok: true },
          endedAt: 9,
          name: "research",
        });
        expect(record && "owner" in record).toBe(false);
        expect(record && "leaseUntil" in record).toBe(false);
        expect((await store.listFibers({ status: "completed" })).map((r) => r.id)).toEqual(["f1"]);
        expect(await store.listFibers({ status: "running" })).toEqual([]);
      });

      it("replaces a journal entry at the same pos and orders entries by pos", async () => {
        const generation = await running("f1");
        const started = entry("f1", 0, { status: "started", result: undefined });
        await store.commit([
          { fiberId: "f1", generation, journal: [started, entry("f1", 10), entry("f1", 2)] },
        ]);
        await store.commit([{ fiberId: "f1", generation, journal: [entry("f1", 0), entry("f1", 1)] }]);
        expect(await store.readJournal("f1")).toEqual([0, 1, 2, 10].map((pos) => entry("f1", pos)));
      });

      it("keeps the last entry per pos across runners: each new claim writes after the previous one", async () => {
        const g1 = await running("f1");
        await store.commit([
          { fiberId: "f1", generation: g1, journal: [entry("f1", 0), entry("f1", 1, { status: "started" })] },
        ]);
        const again = await store.claimFiber("f1", { owner: "next", now: 60_000, leaseMs: 30_000 });
        if (again.status !== "claimed") throw new Error("setup: second claim failed");
        const g2 = again.record.generation;
        await store.commit([{ fiberId: "f1", generation: g2, journal: [entry("f1", 1, { attempt: 2 })] }]);
        await store.commit([
          { fiberId: "f1", generation: g2, journal: [entry("f1", 2, { status: "started" })] },
        ]);
        await store.commit([{ fiberId: "f1", generation: g2, journal: [entry("f1", 2)] }]);
        expect(await store.readJournal("f1")).toEqual([
          entry("f1", 0),
          entry("f1", 1, { attempt: 2 }),
          entry("f1", 2),
        ]);
        // The stale runner's entries are refused and change nothing.
        const stale = await store.commit([
          { fiberId: "f1", generation: g1, journal: [entry("f1", 0, { key: "stale#1" })] },
        ]);
        expect(stale.fenced).toEqual(["f1"]);
        expect((await store.readJournal("f1"))[0]).toEqual(entry("f1", 0));
      });

      it("reads a journal entry's every field back, absent ones absent", async () => {
        const generation = await running("f1");
        const full = entry("f1", 0, {
          kind: "sleep",
          key: "sleep:nap#1",
          status: "failed",
          attempt: 3,
          result: null,
          error: { name: "Error", message: "boom", code: "step_failed" },
          dueAt: 5_000,
          streamFrom: 7,
        });
        const bare = entry("f1", 1, {
          kind: "now",
          status: "started",
          endedAt: undefined,
          result: undefined,
        });
        const undefinedResult = entry("f1", 2, { result: undefined });
        await store.commit([{ fiberId: "f1", generation, journal: [full, bare, undefinedResult] }]);
        const [a, b, c] = await store.readJournal("f1");
        expect(a).toEqual(full);
        expect(b).toEqual(bare);
        expect(b && "endedAt" in b).toBe(false);
        expect(c?.result).toBeUndefined();
      });

      it("clears the journal before writing when clearJournal is set, for that fiber only", async () => {
        const g1 = await running("f1");
        const g2 = await running("f2");
        await store.commit([
          { fiberId: "f1", generation: g1, journal: [entry("f1", 0), entry("f1", 1), entry("f1", 2)] },
          { fiberId: "f2", generation: g2, journal: [entry("f2", 0)] },
        ]);
        const fresh = entry("f1", 0, { key: "restart#1" });
        await store.commit([{ fiberId: "f1", generation: g1, clearJournal: true, journal: [fresh] }]);
        expect(await store.readJournal("f1")).toEqual([fresh]);
        await store.commit([{ fiberId: "f1", generation: g1, clearJournal: true }]);
        expect(await store.readJournal("f1")).toEqual([]);
        expect(await store.readJournal("f2")).toEqual([entry("f2", 0)]);
      });

      it("replaces the snapshot, keeps it when omitted and deletes it on null", async () => {
        const generation = await running("f1");
        await store.commit([{ fiberId: "f1", generation, snapshot: { fiberId: "f1", value: "one", at: 1 } }]);
        await store.commit([{ fiberId: "f1", generation, snapshot: { fiberId: "f1", value: "two", at: 2 } }]);
        await store.commit([{ fiberId: "f1", generation, fiber: { updatedAt: 3 } }]);
        expect(await store.readSnapshot("f1")).toEqual({ fiberId: "f1", value: "two", at: 2 });
        await store.commit([{ fiberId: "f1", generation, snapshot: null }]);
        expect(await store.readSnapshot("f1")).toBeUndefined();
      });

      it("keeps the stash ordinal with the snapshot, in a stash-only write", async () => {
        const generation = await running("f1");
        const stash = { fiberId: "f1", value: { phase: 3 }, at: 3, ordinal: 3 };
        expect(await store.commit([{ fiberId: "f1", generation, snapshot: stash }])).toEqual({ fenced: [] });
        expect(await store.readSnapshot("f1")).toEqual(stash);
      });

      it("keeps where the stashing run stood (resumeFrom: stash) with the snapshot, and moves it with a claim", async () => {
        const generation = await running("f1");
        const resume = { pos: 4, calls: { "step:work": 3, "sleep:sleep:nap": 1 }, settled: 4, emits: 2 };
        const stash = { fiberId: "f1", value: { done: 3 }, at: 3, ordinal: 3, resume };
        await store.commit([{ fiberId: "f1", generation, snapshot: stash }]);
        expect(await store.readSnapshot("f1")).toEqual(stash);
        await store.claimFiber("f1", { owner: "next", now: 1_000, leaseMs: 1, force: true });
        expect(await store.readSnapshot("f1")).toEqual(stash);
      });

      it("fences a stash from a stale generation, keeping the current runner's snapshot", async () => {
        const stale = await running("f1");
        const other = await running("f2");
        const stash = (fiberId: string, generation: number, value: string): WriteGroup => ({
          fiberId,
          generation,
          snapshot: { fiberId, value, at: 1 },
        });
        await store.commit([stash("f1", stale, "before the takeover")]);
        const claim = await store.claimFiber("f1", { owner: "thief", now: 1_000, leaseMs: 1, force: true });
        if (claim.status !== "claimed") throw new Error("setup: takeover");
        // The claim carries the snapshot over to the new generation.
        expect(await store.readSnapshot("f1")).toMatchObject({ value: "before the takeover" });
        await store.commit([stash("f1", claim.record.generation, "the thief's")]);

        expect(await store.commit([stash("f1", stale, "stale")])).toEqual({ fenced: ["f1"] });
        expect(await store.readSnapshot("f1")).toMatchObject({ value: "the thief's" });
        // In a batch, only the stale group is skipped; a removal is fenced like a replacement.
        expect(
          await store.commit([
            stash("f2", other, "fresh"),
            { fiberId: "f1", generation: stale, snapshot: null },
          ]),
        ).toEqual({ fenced: ["f1"] });
        expect(await store.readSnapshot("f1")).toMatchObject({ value: "the thief's" });
        expect(await store.readSnapshot("f2")).toMatchObject({ value: "fresh" });
        expect(await store.getFiber("f1")).toMatchObject({
          generation: claim.record.generation,
          owner: "thief",
        });
      });

      it("fences a stash for a deleted fiber and leaves nothing of it behind", async () => {
        const generation = await running("f1");
        await store.deleteFibers(["f1"]);
        const late = { fiberId: "f1", generation, snapshot: { fiberId: "f1", value: "late", at: 1 } };
        expect(await store.commit([late])).toEqual({ fenced: ["f1"] });
        expect(await store.readSnapshot("f1")).toBeUndefined();
        // A fiber created again under the same id starts without a snapshot and stashes as usual.
        const again = await running("f1");
        expect(await store.readSnapshot("f1")).toBeUndefined();
        await store.commit([
          { fiberId: "f1", generation: again, snapshot: { fiberId: "f1", value: 2, at: 2 } },
        ]);
        expect(await store.readSnapshot("f1")).toEqual({ fiberId: "f1", value: 2, at: 2 });
      });

      it("never moves the generation through a patch: only a claim does", async () => {
        const generation = await running("f1");
        await store.commit([
          { fiberId: "f1", generation, fiber: { generation: generation + 5, updatedAt: 9 } },
        ]);
        expect(await store.getFiber("f1")).toMatchObject({ generation, updatedAt: 9 });
        const stash = { fiberId: "f1", value: "still mine", at: 1 };
        expect(await store.commit([{ fiberId: "f1", generation, snapshot: stash }])).toEqual({ fenced: [] });
        expect(await store.readSnapshot("f1")).toEqual(stash);
      });

      it("appends chunks that readStream returns by seq, after and limit", async () => {
        const g1 = await running("f1");
        const g2 = await running("f2");
        await store.commit([
          { fiberId: "f1", generation: g1, chunks: [chunk("f1", 1), chunk("f1", 2)] },
          { fiberId: "f2", generation: g2, chunks: [chunk("f2", 1)] },
        ]);
        await store.commit([
          { fiberId: "f1", generation: g1, chunks: [3, 4, 5].map((seq) => chunk("f1", seq)) },
        ]);
        const seqs = async (after: number, limit?: number) =>
          (await store.readStream("f1", after, limit)).map((c) => c.seq);
        expect(await store.readStream("f1", 0)).toEqual([1, 2, 3, 4, 5].map((seq) => chunk("f1", seq)));
        expect(await seqs(2)).toEqual([3, 4, 5]);
        expect(await seqs(2, 2)).toEqual([3, 4]);
        expect(await seqs(0, 0)).toEqual([]);
        expect(await seqs(5)).toEqual([]);
        expect(await store.readStream("f2", 0)).toEqual([chunk("f2", 1)]);
        expect(await store.readStream("nobody", 0)).toEqual([]);
      });

      it("marks consumed events with the consuming journal position", async () => {
        const generation = await running("f1");
        await store.enqueueEvent({ fiberId: "f1", name: "approval", payload: { ok: true }, at: 1 });
        await store.enqueueEvent({ fiberId: "f1", name: "approval", payload: { ok: false }, at: 2 });
        await store.commit([{ fiberId: "f1", generation, consumeEvents: [{ seq: 1, consumedBy: 3 }] }]);
        const inbox = await store.readInbox("f1");
        expect(inbox.map((e) => e.consumedBy)).toEqual([3, undefined]);
        expect(inbox[0]).toMatchObject({ name: "approval", payload: { ok: true }, seq: 1 });
      });

      it("releases a consumed event again with consumedBy null (a restart from scratch)", async () => {
        const generation = await running("f1");
        await store.enqueueEvent({ fiberId: "f1", name: "approval", payload: { ok: true }, at: 1 });
        await store.commit([{ fiberId: "f1", generation, consumeEvents: [{ seq: 1, consumedBy: 3 }] }]);
        expect((await store.readInbox("f1"))[0]?.consumedBy).toBe(3);
        await store.commit([{ fiberId: "f1", generation, consumeEvents: [{ seq: 1, consumedBy: null }] }]);
        const [event] = await store.readInbox("f1");
        expect(event).toEqual({ fiberId: "f1", seq: 1, name: "approval", payload: { ok: true }, at: 1 });
      });

      it("does not consume events for a fenced group", async () => {
        const generation = await running("f1");
        await store.enqueueEvent({ fiberId: "f1", name: "go", payload: null, at: 1 });
        const result = await store.commit([
          { fiberId: "f1", generation: generation - 1, consumeEvents: [{ seq: 1, consumedBy: 0 }] },
        ]);
        expect(result).toEqual({ fenced: ["f1"] });
        expect((await store.readInbox("f1"))[0]?.consumedBy).toBeUndefined();
      });
    });

    describe("enqueueEvent and readInbox", () => {
      it("stores an event another home gave an id once: the same id again answers the held event", async () => {
        await store.createFiber(fiber("f1"), []);
        await store.createFiber(fiber("f2"), []);
        const first = await store.enqueueEvent({
          fiberId: "f1",
          name: "go",
          payload: 1,
          at: 1,
          eventId: "edge:7",
        });
        const again = await store.enqueueEvent({
          fiberId: "f1",
          name: "go",
          payload: 1,
          at: 2,
          eventId: "edge:7",
        });
        expect(again).toEqual(first);
        // Another id, no id, or the same id for another fiber: new events.
        await store.enqueueEvent({ fiberId: "f1", name: "go", payload: 2, at: 3, eventId: "edge:8" });
        await store.enqueueEvent({ fiberId: "f1", name: "go", payload: 3, at: 4 });
        await store.enqueueEvent({ fiberId: "f2", name: "go", payload: 1, at: 5, eventId: "edge:7" });
        expect((await store.readInbox("f1")).map((e) => [e.seq, e.eventId])).toEqual([
          [1, "edge:7"],
          [2, "edge:8"],
          [3, undefined],
        ]);
        expect((await store.readInbox("f2")).map((e) => e.seq)).toEqual([1]);
      });

      it("numbers events 1, 2, 3 per fiber and reads them in order", async () => {
        await store.createFiber(fiber("f1"), []);
        await store.createFiber(fiber("f2"), []);
        const seqs: number[] = [];
        for (const name of ["a", "b", "c"]) {
          seqs.push((await store.enqueueEvent({ fiberId: "f1", name, payload: name, at: 5 })).seq);
        }
        expect(seqs).toEqual([1, 2, 3]);
        const other = await store.enqueueEvent({ fiberId: "f2", name: "x", payload: 0, at: 6 });
        expect(other).toEqual({ fiberId: "f2", seq: 1, name: "x", payload: 0, at: 6 });
        const inbox = await store.readInbox("f1");
        expect(inbox.map((e) => [e.seq, e.name])).toEqual([
          [1, "a"],
          [2, "b"],
          [3, "c"],
        ]);
        expect(inbox[0]).toEqual({ fiberId: "f1", seq: 1, name: "a", payload: "a", at: 5 });
      });

      it("gives concurrent events distinct consecutive seqs", async () => {
        await store.createFiber(fiber("f1"), []);
        const events = await Promise.all(
          [0, 1, 2, 3, 4].map((i) => store.enqueueEvent({ fiberId: "f1", name: `e${i}`, payload: i, at: i })),
        );
        expect(events.map((e) => e.seq).sort()).toEqual([1, 2, 3, 4, 5]);
        expect((await store.readInbox("f1")).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      });

      it("makes a fiber waiting for the event due at its time, in the same write", async () => {
        await store.createFiber(fiber("w", { status: "waiting", waitingFor: ["go"] }), []);
        await store.createFiber(fiber("timed", { status: "waiting", waitingFor: ["go"], wakeAt: 50 }), []);
        await store.createFiber(fiber("other", { status: "waiting", waitingFor: ["stop"] }), []);
        await store.createFiber(fiber("nap", { status: "sleeping", wakeAt: 500 }), []);
        for (const id of ["w", "timed", "other", "nap"]) {
          await store.enqueueEvent({ fiberId: id, name: "go", payload: 1, at: 100 });
        }
        expect((await store.getFiber("w"))?.wakeAt).toBe(100);
        expect((await store.getFiber("timed"))?.wakeAt).toBe(50); // an earlier timer stays
        expect((await store.getFiber("other"))?.wakeAt).toBeUndefined(); // not what it waits for
        expect((await store.getFiber("nap"))?.wakeAt).toBe(500); // not waiting
        expect((await store.getFiber("w"))?.generation).toBe(0);
      });

      it("makes a fiber that suspends waiting for an event already stored due at its time", async () => {
        // Events stored while the fibers ran: no wait was pending, so none became due then.
        const sent: Array<[string, string, number]> = [
          ["s", "go", 100],
          ["earliest", "go", 100],
          ["earliest", "go", 70],
          ["timed", "go", 100],
          ["other", "stop", 100],
          ["consumed", "go", 100],
          ["mirror", "go", 100],
        ];
        for (const id of new Set(sent.map(([id]) => id))) await store.createFiber(fiber(id), []);
        for (const [fiberId, name, at] of sent) await store.enqueueEvent({ fiberId, name, payload: 1, at });
        expect((await store.getFiber("s"))?.wakeAt).toBeUndefined();
        const suspend = (fiberId: string, more: Partial<WriteGroup> = {}, wakeAt?: number): WriteGroup => ({
          fiberId,
          generation: 0,
          fiber: { status: "waiting", waitingFor: ["go"], wakeAt, owner: undefined },
          ...more,
        });
        await store.commit([suspend("s"), suspend("earliest"), suspend("timed", {}, 50), suspend("other")]);
        await store.commit([suspend("consumed", { consumeEvents: [{ seq: 1, consumedBy: 3 }] })]);
        await store.commit([suspend("mirror", { unclaimed: true })]);
        expect((await store.getFiber("s"))?.wakeAt).toBe(100);
        expect((await store.getFiber("earliest"))?.wakeAt).toBe(70);
        expect((await store.getFiber("timed"))?.wakeAt).toBe(50); // an earlier timer stays
        expect((await store.getFiber("other"))?.wakeAt).toBeUndefined(); // not what it waits for
        expect((await store.getFiber("consumed"))?.wakeAt).toBeUndefined(); // taken by this commit
        expect((await store.getFiber("mirror"))?.wakeAt).toBeUndefined(); // a copy keeps its fields
        expect((await store.getFiber("s"))?.status).toBe("waiting");
      });

      it("judges a suspension on what the whole commit leaves of the fiber's inbox", async () => {
        await store.createFiber(fiber("r"), []);
        await store.enqueueEvent({ fiberId: "r", name: "go", payload: 1, at: 100 });
        await store.commit([{ fiberId: "r", generation: 0, consumeEvents: [{ seq: 1, consumedBy: 3 }] }]);
        // Suspended, then its event released by a later group of the same commit: it is due.
        const suspension: WriteGroup = {
          fiberId: "r",
          generation: 0,
          fiber: { status: "waiting", waitingFor: ["go"] },
        };
        await store.commit([
          suspension,
          { fiberId: "r", generation: 0, consumeEvents: [{ seq: 1, consumedBy: null }] },
        ]);
        expect((await store.getFiber("r"))?.wakeAt).toBe(100);
      });

      it("looks only past what the run saw (inboxSeen) for an event that makes a suspension due", async () => {
        for (const id of ["seen", "unseen", "whole"]) {
          await store.createFiber(fiber(id), []);
          await store.enqueueEvent({ fiberId: id, name: "go", payload: 1, at: 40 });
          await store.enqueueEvent({ fiberId: id, name: "other", payload: 2, at: 50 });
        }
        // "unseen" got its third event after its run's last look; "whole" says nothing of its look.
        await store.enqueueEvent({ fiberId: "unseen", name: "go", payload: 3, at: 60 });
        const suspend = (fiberId: string, inboxSeen?: number): WriteGroup => ({
          fiberId,
          generation: 0,
          fiber: { status: "waiting", waitingFor: ["go"] },
          ...(inboxSeen === undefined ? {} : { inboxSeen }),
        });
        await store.commit([suspend("seen", 2), suspend("unseen", 2), suspend("whole")]);
        // Its run knew event 1 and left it (stamped past a deadline, say): waking it again for it
        // would only suspend it again.
        expect((await store.getFiber("seen"))?.wakeAt).toBeUndefined();
        expect((await store.getFiber("unseen"))?.wakeAt).toBe(60);
        expect((await store.getFiber("whole"))?.wakeAt).toBe(40);
        for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
          await expect(store.commit([suspend("seen", bad)])).rejects.toMatchObject({ code: "store_error" });
        }
        expect((await store.getFiber("seen"))?.waitingFor).toEqual(["go"]);
      });

      it("makes a fiber due no later than the store's own clock, whatever an event's stamp says", async () => {
        // Stamped an hour ahead (a sender whose clock is fast): due now, not in an hour.
        const ahead = Date.now() + 3_600_000;
        await store.createFiber(fiber("waits", { status: "waiting", waitingFor: ["go"] }), []);
        await store.createFiber(fiber("runs"), []);
        const before = Date.now();
        await store.enqueueEvent({ fiberId: "waits", name: "go", payload: 1, at: ahead });
        await store.enqueueEvent({ fiberId: "runs", name: "go", payload: 1, at: ahead });
        await store.commit([
          { fiberId: "runs", generation: 0, fiber: { status: "waiting", waitingFor: ["go"] } },
        ]);
        const after = Date.now();
        for (const id of ["waits", "runs"]) {
          const wakeAt = (await store.getFiber(id))?.wakeAt ?? Number.NaN;
          expect(wakeAt).toBeGreaterThanOrEqual(before);
          expect(wakeAt).toBeLessThanOrEqual(after);
        }
      });

      it("rejects an event for an ended fiber with fiber_ended, storing nothing", async () => {
        for (const status of ["completed", "failed", "cancelled"] as const) {
          const id = `ended-${status}`;
          await store.createFiber(fiber(id, { status }), []);
          await expect(
            store.enqueueEvent({ fiberId: id, name: "x", payload: 1, at: 1 }),
          ).rejects.toMatchObject({ code: "fiber_ended" });
          expect(await store.readInbox(id)).toEqual([]);
        }
      });

      it("rejects an event for a missing fiber with FiberNotFoundError", async () => {
        const error = await store
          .enqueueEvent({ fiberId: "ghost", name: "x", payload: 1, at: 1 })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(FiberNotFoundError);
        expect(error).toMatchObject({ code: "fiber_not_found" });
        expect(await store.readInbox("ghost")).toEqual([]);
      });
    });

    describe("listFibers", () => {
      beforeEach(async () => {
        // Inserted out of order: the listing order must come from createdAt, then id.
        await store.createFiber(fiber("d", { createdAt: 30, name: "chat", status: "waiting" }), []);
        await store.createFiber(fiber("c", { createdAt: 20, name: "chat" }), []);
        await store.createFiber(fiber("b", { createdAt: 20, status: "completed" }), []);
        await store.createFiber(fiber("a", { createdAt: 10 }), []);
        await store.createFiber(fiber("e", { createdAt: 5, status: "sleeping", name: "chat" }), []);
      });
      it("lists all fibers, oldest first, ties by id", async () => {
        expect(ids(await store.listFibers())).toEqual(["e", "a", "b", "c", "d"]);
      });

      it("filters by one status or several", async () => {
        expect(ids(await store.listFibers({ status: "running" }))).toEqual(["a", "c"]);
        expect(ids(await store.listFibers({ status: ["waiting", "sleeping", "running"] }))).toEqual([
          "e",
          "a",
          "c",
          "d",
        ]);
        expect(await store.listFibers({ status: "failed" })).toEqual([]);
      });

      it("filters by name and cuts at limit", async () => {
        expect(ids(await store.listFibers({ name: "chat" }))).toEqual(["e", "c", "d"]);
        expect(ids(await store.listFibers({ limit: 2 }))).toEqual(["e", "a"]);
        expect(ids(await store.listFibers({ name: "chat", limit: 2 }))).toEqual(["e", "c"]);
        expect(
          ids(await store.listFibers({ status: ["running", "waiting"], name: "chat", limit: 1 })),
        ).toEqual(["c"]);
        expect(await store.listFibers({ limit: 0 })).toEqual([]);
      });

      it("lists only fibers that ended by endedBefore (what the collector reads), with the other filters", async () => {
        await store.createFiber(fiber("x", { createdAt: 40, status: "failed", endedAt: 100 }), []);
        await store.createFiber(
          fiber("y", { createdAt: 1, status: "cancelled", endedAt: 200, name: "chat" }),
          [],
        );
        await store.createFiber(fiber("z", { createdAt: 50, status: "completed", endedAt: 300 }), []);
        // Listed oldest first like any listing; "b" ended without an endedAt and is not listed.
        expect(ids(await store.listFibers({ endedBefore: 200 }))).toEqual(["y", "x"]);
        expect(ids(await store.listFibers({ endedBefore: Number.POSITIVE_INFINITY }))).toEqual([
          "y",
          "x",
          "z",
        ]);
        expect(await store.listFibers({ endedBefore: 99 })).toEqual([]);
        expect(await store.listFibers({ endedBefore: Number.NaN })).toEqual([]);
        expect(ids(await store.listFibers({ status: ["failed", "completed"], endedBefore: 1_000 }))).toEqual([
          "x",
          "z",
        ]);
        expect(ids(await store.listFibers({ endedBefore: 1_000, name: "chat" }))).toEqual(["y"]);
        expect(ids(await store.listFibers({ endedBefore: 1_000, limit: 2 }))).toEqual(["y", "x"]);

        // Ending a fiber through a commit lists it from then on; a record that loses its endedAt
        // is no longer listed.
        const claim = await store.claimFiber("a", { owner: "runner", now: 1_000, leaseMs: 30_000 });
        if (claim.status !== "claimed") throw new Error("setup: could not claim a");
        const generation = claim.record.generation;
        await store.commit([{ fiberId: "a", generation, fiber: { status: "completed", endedAt: 150 } }]);
        expect(ids(await store.listFibers({ endedBefore: 200 }))).toEqual(["y", "a", "x"]);
        await store.commit([{ fiberId: "a", generation, fiber: { endedAt: undefined } }]);
        expect(ids(await store.listFibers({ endedBefore: 200 }))).toEqual(["y", "x"]);
      });
    });

    describe("deleteFibers", () => {
      it("removes records, journals, snapshots, streams and inboxes, and nothing else", async () => {
        for (const id of ["f1", "f2", "keep"]) {
          const generation = await running(id, { idempotencyKey: `k-${id}` });
          await store.enqueueEvent({ fiberId: id, name: "go", payload: null, at: 1 });
          await store.commit([
            {
              fiberId: id,
              generation,
              journal: [entry(id, 0)],
              snapshot: { fiberId: id, value: id, at: 1 },
              chunks: [chunk(id, 1), chunk(id, 2)],
            },
          ]);
        }
        expect(await store.deleteFibers(["f1", "f2", "never-existed", "f1"])).toEqual(["f1", "f2"]);
        for (const id of ["f1", "f2"]) {
          expect(await store.getFiber(id)).toBeUndefined();
          expect(await store.findByIdempotencyKey(`k-${id}`)).toBeUndefined();
          expect(await store.readJournal(id)).toEqual([]);
          expect(await store.readSnapshot(id)).toBeUndefined();
          expect(await store.readStream(id, 0)).toEqual([]);
          expect(await store.readInbox(id)).toEqual([]);
        }
        expect(ids(await store.listFibers())).toEqual(["keep"]);
        expect(await store.readJournal("keep")).toHaveLength(1);
        expect(await store.readSnapshot("keep")).toMatchObject({ value: "keep" });
        expect(await store.readStream("keep", 0)).toHaveLength(2);
        expect(await store.readInbox("keep")).toHaveLength(1);

        // The id and the key are free again; a new inbox starts at 1.
        expect((await store.createFiber(fiber("f1", { idempotencyKey: "k-f1" }), [])).status).toBe("created");
        expect((await store.enqueueEvent({ fiberId: "f1", name: "go", payload: 1, at: 2 })).seq).toBe(1);
        expect(await store.deleteFibers([])).toEqual([]);
      });

      it("skips a fiber whose generation is not the one ifGeneration names (a stale collector's list)", async () => {
        await store.createFiber(fiber("old", { status: "completed" }), []);
        await store.createFiber(fiber("new", { status: "waiting", generation: 5 }), [chunk("new", 1)]);
        await store.enqueueEvent({ fiberId: "new", name: "go", payload: null, at: 1 });
        // "new" was collected by another context and started again: the list says generation 4.
        const ifGeneration = new Map([
          ["old", 0],
          ["new", 4],
          ["not-listed", 0],
        ]);
        expect(await store.deleteFibers(["old", "new", "gone"], { ifGeneration })).toEqual(["old"]);
        expect(await store.getFiber("old")).toBeUndefined();
        // The skipped fiber is left whole.
        expect(await store.getFiber("new")).toMatchObject({ generation: 5 });
        expect(await store.readStream("new", 0)).toEqual([chunk("new", 1)]);
        expect(await store.readInbox("new")).toHaveLength(1);
        // Only the deleted fiber raised the floor: a fiber created now may start at generation 1.
        expect((await store.createFiber(fiber("next", { generation: 1 }), [])).record.generation).toBe(1);
      });

      it("never repeats a generation for an id created again: runners of the deleted fiber stay fenced", async () => {
        // The deleted fiber lived through generations 0 (created), 1 and 2 (two claims).
        const held = [0, await running("f1")];
        const takeover = await store.claimFiber("f1", {
          owner: "b",
          now: 1_000,
          leaseMs: 30_000,
          force: true,
        });
        if (takeover.status !== "claimed") throw new Error("setup: takeover failed");
        held.push(takeover.record.generation);
        await store.deleteFibers(["f1"]);

        const created = await store.createFiber(fiber("f1"), [chunk("f1", 1, "fiber.start")]);
        expect(created.status).toBe("created");
        const generation = created.record.generation;
        expect(generation).toBeGreaterThan(Math.max(...held));
        expect(await store.getFiber("f1")).toEqual(created.record);

        // A runner of the deleted fiber, stalled past its lease, writes nothing into the new one.
        for (const stale of held) {
          const write = {
            fiberId: "f1",
            generation: stale,
            fiber: { streamHead: 2 },
            journal: [entry("f1", 0)],
            snapshot: { fiberId: "f1", value: "stale", at: 1 },
            chunks: [chunk("f1", 2)],
          };
          expect(await store.commit([write])).toEqual({ fenced: ["f1"] });
        }
        expect(await store.readJournal("f1")).toEqual([]);
        expect(await store.readSnapshot("f1")).toBeUndefined();
        expect(await store.readStream("f1", 0)).toEqual([chunk("f1", 1, "fiber.start")]);

        // The new fiber's own writer is not fenced, and claims count on from its generation.
        const own = { fiberId: "f1", generation, snapshot: { fiberId: "f1", value: "own", at: 2 } };
        expect(await store.commit([own])).toEqual({ fenced: [] });
        expect(await store.readSnapshot("f1")).toMatchObject({ value: "own" });
        const claim = await store.claimFiber("f1", { owner: "c", now: 1_000, leaseMs: 30_000, force: true });
        expect(claim).toMatchObject({ status: "claimed", record: { generation: generation + 1 } });
        // Deleting a fiber that never got past the floor leaves new fibers where they were.
        await store.deleteFibers(["never-existed"]);
        expect((await store.createFiber(fiber("f2"), [])).record.generation).toBe(generation);
      });
    });

    describe("isolation of values", () => {
      it("does not let a caller change stored state through returned values", async () => {
        const created = await store.createFiber(fiber("f1", { input: { topic: "x" } }), [chunk("f1", 1)]);
        created.record.input = "mutated";
        const read = await store.getFiber("f1");
        if (read === undefined) throw new Error("missing");
        (read.input as { topic: string }).topic = "mutated";
        read.status = "failed";
        const [listed] = await store.listFibers();
        if (listed) listed.name = "mutated";
        const claim = await store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1 });
        if (claim.status === "claimed") claim.record.generation = 99;
        const [streamed] = await store.readStream("f1", 0);
        if (streamed) streamed.data = "mutated";
        const event = await store.enqueueEvent({ fiberId: "f1", name: "go", payload: { n: 1 }, at: 1 });
        event.payload = "mutated";

        expect(await store.getFiber("f1")).toMatchObject({
          input: { topic: "x" },
          status: "running",
          name: "research",
          generation: 1,
        });
        expect(await store.readStream("f1", 0)).toEqual([chunk("f1", 1)]);
        expect((await store.readInbox("f1"))[0]?.payload).toEqual({ n: 1 });
      });

      it("does not let a caller change stored state through values it passed in", async () => {
        const record = fiber("f1", { input: { topic: "x" } });
        const first = chunk("f1", 1, "progress", { pct: 1 });
        await store.createFiber(record, [first]);
        (record.input as { topic: string }).topic = "mutated";
        first.data = "mutated";
        const claim = await store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1 });
        const generation = claim.status === "claimed" ? claim.record.generation : -1;
        const rows = [1];
        const journal = [entry("f1", 0, { result: { rows } })];
        const snapshot = { fiberId: "f1", value: { phase: "a" }, at: 1 };
        await store.commit([{ fiberId: "f1", generation, journal, snapshot }]);
        rows.push(2);
        snapshot.value.phase = "mutated";

        expect(await store.getFiber("f1")).toMatchObject({ input: { topic: "x" } });
        expect((await store.readStream("f1", 0))[0]?.data).toEqual({ pct: 1 });
        expect((await store.readJournal("f1"))[0]?.result).toEqual({ rows: [1] });
        expect(await store.readSnapshot("f1")).toMatchObject({ value: { phase: "a" } });
      });
    });

    describe("close", () => {
      it("makes every later call reject with store_closed", async () => {
        await store.createFiber(fiber("f1"), []);
        await store.close();
        await store.close();
        const calls: Array<[string, () => Promise<unknown>]> = [
          ["getFiber", () => store.getFiber("f1")],
          ["findByIdempotencyKey", () => store.findByIdempotencyKey("k")],
          ["listFibers", () => store.listFibers()],
          ["readJournal", () => store.readJournal("f1")],
          ["readSnapshot", () => store.readSnapshot("f1")],
          ["readStream", () => store.readStream("f1", 0)],
          ["readInbox", () => store.readInbox("f1")],
          ["createFiber", () => store.createFiber(fiber("f2"), [])],
          ["claimFiber", () => store.claimFiber("f1", { owner: "a", now: 1, leaseMs: 1 })],
          ["commit", () => store.commit([{ fiberId: "f1", generation: 0 }])],
          ["enqueueEvent", () => store.enqueueEvent({ fiberId: "f1", name: "x", payload: 1, at: 1 })],
          ["deleteFibers", () => store.deleteFibers(["f1"])],
        ];
        for (const [method, call] of calls) {
          const error = await call().then(
            () => new Error(`${method} resolved after close`),
            (e: unknown) => e,
          );
          expect(error, method).toBeInstanceOf(StoreError);
          expect(error, method).toMatchObject({ code: "store_closed" });
        }
      });
    });
  });
}

/** A running fiber record of generation 0, the contract's fixture (`overrides` on top). */
export function fiber(id: string, overrides: Partial<FiberRecord> = {}): FiberRecord {
  return {
    id,
    name: "research",
    version: "1",
    input: { topic: id },
    status: "running",
    createdAt: 1_000,
    updatedAt: 1_000,
    generation: 0,
    streamHead: 0,
    emitOrdinal: 0,
    epoch: 0,
    stalledRecoveries: 0,
    progressMark: "",
    // What createFiber stores (it keeps the generation a fiber was created with).
    createdGeneration: overrides.generation ?? 0,
    ...overrides,
  };
}

function chunk(fiberId: string, seq: number, type = "progress", data: unknown = { seq }): StreamChunk {
  return { fiberId, seq, type, data, at: 1_000 + seq };
}

function entry(fiberId: string, pos: number, overrides: Partial<JournalEntry> = {}): JournalEntry {
  const base: JournalEntry = {
    fiberId,
    pos,
    kind: "step",
    key: `step#${pos}`,
    status: "completed",
    attempt: 1,
    startedAt: 1_000,
    endedAt: 1_001,
    result: { pos },
  };
  const merged = { ...base, ...overrides };
  // An override of `undefined` means "no such field", as a stored record would read back.
  for (const key of Object.keys(overrides) as Array<keyof JournalEntry>) {
    if (overrides[key] === undefined) Reflect.deleteProperty(merged, key);
  }
  return merged;
}
