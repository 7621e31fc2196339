/**
 * `watchStorage` in Node, over a `MemoryStore` that can be made to refuse writes as an origin out
 * of space does (`quota_exceeded`): the fiber pauses (still running, nothing lost), every page
 * hears it on the storage channel, and once writes fit again the runtime's own retry resumes the
 * fiber and the page hears "ok"; `retryPaused` (a page's "Try again") does it at once. Real
 * IndexedDB and a real wiped database are `e2e/storage.spec.ts`.
 */

import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { afterEach, expect, it } from "vitest";
import { Outbox } from "../continuity/outbox";
import { writesOutbox } from "../continuity/outbox-log";
import { ReplicatingStore } from "../continuity/replicating-store";
import { defineFiber } from "../core/define";
import { StoreError } from "../core/errors";
import { createRuntime, type Runtime } from "../core/runtime";
import type { WriteGroup } from "../core/store";
import { IdbStore } from "../store/idb-store";
import { MemoryStore } from "../store/memory-store";
import { createControlApi } from "./control-api";
import {
  type HeartbeatInfo,
  STORAGE_CHANNEL,
  type StorageHealth,
  type StorageHealthMessage,
} from "./protocol";
import { watchStorage } from "./storage-watch";

/** A MemoryStore whose writes are refused while `full` is set, the way IndexedDB refuses them. */
class FullableStore extends MemoryStore {
  full = false;
  override async commit(groups: WriteGroup[]) {
    if (this.full) throw new StoreError("quota_exceeded", "The origin is out of storage quota.");
    return await super.commit(groups);
  }
  override async claimFiber(...args: Parameters<MemoryStore["claimFiber"]>) {
    if (this.full) throw new StoreError("quota_exceeded", "The origin is out of storage quota.");
    return await super.claimFiber(...args);
  }
  override async createFiber(...args: Parameters<MemoryStore["createFiber"]>) {
    if (this.full) throw new StoreError("quota_exceeded", "The origin is out of storage quota.");
    return await super.createFiber(...args);
  }
}

const steps = defineFiber("steps", {
  async run(ctx, input: { count: number }) {
    for (let i = 1; i <= input.count; i++) {
      await ctx.step("step", async () => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return i;
      });
      ctx.emit("progress", { i });
    }
    return input.count;
  },
});

let runtime: Runtime | undefined;
const pages: BroadcastChannel[] = [];
afterEach(async () => {
  await runtime?.close();
  await runtime?.store.close();
  for (const page of pages.splice(0)) page.close();
  runtime = undefined;
});

/** A page listening on the storage channel. */
function page(): StorageHealth[] {
  const heard: StorageHealth[] = [];
  const channel = new BroadcastChannel(STORAGE_CHANNEL);
  channel.addEventListener("message", (event) =>
    heard.push((event as MessageEvent<StorageHealthMessage>).data.health),
  );
  pages.push(channel);
  return heard;
}

it("pauses a fiber whose write found no space, tells pages, and resumes it once writes fit again", async () => {
  const heard = page();
  const inner = new FullableStore();
  const store = watchStorage(inner, { markerCache: false });
  runtime = createRuntime({ store, fibers: [steps], leaseMs: 400 });
  await runtime.recover();
  const { id } = await runtime.start(steps, { count: 20 });
  await expect.poll(async () => (await runtime?.get(id))?.streamHead ?? 0).toBeGreaterThan(2);

  inner.full = true;
  await expect.poll(() => store.health).toMatchObject({ state: "quota_exceeded", paused: [id] });
  await expect.poll(() => heard.at(-1)).toMatchObject({ state: "quota_exceeded", paused: [id] });
  expect((await runtime.get(id))?.status).toBe("running");

  inner.full = false;
  expect(await runtime.result(id)).toBe(20);
  expect(store.health).toMatchObject({ state: "ok", paused: [] });
  await expect.poll(() => heard.at(-1)).toMatchObject({ state: "ok", paused: [] });
  const chunks = await inner.readStream(id, 0);
  expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i + 1));
  expect(chunks.filter((c) => c.type === "progress").map((c) => (c.data as { i: number }).i)).toEqual(
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
});

it("answers a page's query with the current health", async () => {
  const store = watchStorage(new MemoryStore(), { markerCache: false });
  runtime = createRuntime({ store, fibers: [steps] });
  await store.checked;
  const heard = page();
  pages.at(-1)?.postMessage({ type: "fiberline/storage-query" });
  await expect.poll(() => heard.at(-1)).toMatchObject({ state: "ok", paused: [], lost: [] });
});

/**
 * A fiber of 20 steps paused by a full store, its run stopped. A long lease: only the runner's
 * backoff or retryPaused picks the fiber up, never the sweep.
 */
async function pausedFiber() {
  const heard = page();
  const inner = new FullableStore();
  const store = watchStorage(inner, { markerCache: false });
  const rt = createRuntime({ store, fibers: [steps], leaseMs: 60_000 });
  runtime = rt;
  await rt.recover();
  const { id } = await rt.start(steps, { count: 20 });
  await expect.poll(async () => (await rt.get(id))?.streamHead ?? 0).toBeGreaterThan(2);
  inner.full = true;
  await expect.poll(() => store.health).toMatchObject({ state: "quota_exceeded", paused: [id] });
  await expect.poll(() => rt.activeCount).toBe(0);
  return { heard, inner, store, id, rt };
}

it("Try again while still full: the fiber stays paused with the same state, and nothing it wrote changes", async () => {
  const { heard, inner, store, id, rt } = await pausedFiber();
  const record = await inner.getFiber(id);
  const stream = await inner.readStream(id, 0);
  const journal = await inner.readJournal(id);

  const health = await store.retryPaused(rt);
  expect(health).toMatchObject({ state: "quota_exceeded", paused: [id] });
  expect(heard.at(-1)).toMatchObject({ state: "quota_exceeded", paused: [id] });
  expect(rt.activeCount).toBe(0);
  expect(await inner.getFiber(id)).toEqual(record);
  expect(await inner.readStream(id, 0)).toEqual(stream);
  expect(await inner.readJournal(id)).toEqual(journal);

  inner.full = false;
  expect(await rt.result(id)).toBe(20);
  const chunks = await inner.readStream(id, 0);
  expect(chunks.slice(0, stream.length)).toEqual(stream);
  expect(chunks.filter((c) => c.type === "progress").map((c) => (c.data as { i: number }).i)).toEqual(
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
});

it("Try again with room: the paused fiber runs again at once, pages hear ok, and it finishes with every chunk once", async () => {
  const { heard, inner, id, rt } = await pausedFiber();

  // Through the control call a page makes: no waiting for the runner's next backoff.
  const api = createControlApi(rt, () => ({}) as HeartbeatInfo);
  inner.full = false;
  const health = await api.retryPaused();
  expect(health).toMatchObject({ state: "ok", paused: [] });
  expect(rt.activeCount).toBe(1);
  await expect.poll(() => heard.at(-1)).toMatchObject({ state: "ok", paused: [] });

  expect(await rt.result(id)).toBe(20);
  const chunks = await inner.readStream(id, 0);
  expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i + 1));
  expect(chunks.filter((c) => c.type === "progress").map((c) => (c.data as { i: number }).i)).toEqual(
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
});

it("Try again with nothing paused answers the current health, and a store that is not watched answers undefined", async () => {
  const store = watchStorage(new MemoryStore(), { markerCache: false });
  runtime = createRuntime({ store, fibers: [steps] });
  const heard = page();
  expect(await createControlApi(runtime, () => ({}) as HeartbeatInfo).retryPaused()).toMatchObject({
    state: "ok",
    paused: [],
  });
  await expect.poll(() => heard.at(-1)).toMatchObject({ state: "ok", paused: [] });
  const plain = createRuntime({ store: new MemoryStore(), fibers: [steps] });
  expect(await createControlApi(plain, () => ({}) as HeartbeatInfo).retryPaused()).toBeUndefined();
  await plain.close();
});

it("Try again after a start was refused for lack of space (nothing paused) clears the full state", async () => {
  const inner = new FullableStore();
  const store = watchStorage(inner, { markerCache: false });
  runtime = createRuntime({ store, fibers: [steps] });
  const control = createControlApi(runtime, () => ({}) as HeartbeatInfo);
  inner.full = true;
  await expect(runtime.start(steps, { count: 1 })).rejects.toMatchObject({ code: "quota_exceeded" });
  expect(store.health).toMatchObject({ state: "quota_exceeded", paused: [] });
  inner.full = false;
  expect(await control.retryPaused()).toMatchObject({ state: "ok", paused: [] });
  // Full again: the next refused write says so again.
  inner.full = true;
  await expect(runtime.start(steps, { count: 1 })).rejects.toMatchObject({ code: "quota_exceeded" });
  expect(store.health).toMatchObject({ state: "quota_exceeded" });
});

it("keeps continuity's outbox when it watches a store that keeps one: replicated writes land in it, and a restart finds them", async () => {
  const indexedDB = new IDBFactory();
  const open = () =>
    watchStorage(new IdbStore({ name: "watched-outbox", indexedDB }), { markerCache: false });
  const first = open();
  // Watched, the store still keeps the outbox: `createReplicatedRuntime` over it opens that one.
  if (!writesOutbox(first)) throw new Error("the watched IdbStore does not keep the outbox");
  expect(writesOutbox(watchStorage(new MemoryStore(), { markerCache: false }))).toBe(false);
  const outbox = await Outbox.open(first);
  const store = new ReplicatingStore(first, { outbox, home: "browser:d1", replicates: () => true });
  runtime = createRuntime({ store, fibers: [steps], replication: outbox });
  await runtime.start(steps, { count: 2 }, { id: "kept" });
  // Nothing ships (no shipper): every commit waits in the outbox, written by the store itself.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const pending = outbox.batch("kept")?.entries.map((e) => e.type) ?? [];
  expect(pending[0]).toBe("create");
  expect(pending.length).toBeGreaterThan(1);
  await runtime.close();
  runtime = undefined;
  await first.close();

  const second = open();
  if (!writesOutbox(second)) throw new Error("the watched IdbStore does not keep the outbox");
  const reopened = await Outbox.open(second);
  expect(reopened.batch("kept")?.entries.map((e) => e.type)).toEqual(pending);
  await second.close();
});
