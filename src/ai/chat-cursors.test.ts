/**
 * The transport's per-chat cursors in IndexedDB (fake-indexeddb here): what one page wrote, a page
 * opened later (a new store object on the same database) reads back.
 */

import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
import { idbCursorStore, memoryCursorStore } from "./chat-cursors";

describe("chat cursors", () => {
  it("idbCursorStore keeps each chat's cursor for a later page", async () => {
    await idbCursorStore("cursors-test").set("chat-1", {
      fiberId: "ai/chat-1/u1",
      delivered: 12,
      done: false,
    });
    await idbCursorStore("cursors-test").set("chat-2", { fiberId: "ai/chat-2/u1", delivered: 3, done: true });
    const later = idbCursorStore("cursors-test");
    expect(await later.get("chat-1")).toEqual({ fiberId: "ai/chat-1/u1", delivered: 12, done: false });
    expect(await later.get("chat-2")).toEqual({ fiberId: "ai/chat-2/u1", delivered: 3, done: true });
    expect(await later.get("chat-3")).toBeUndefined();
  });

  it("memoryCursorStore hands out copies", async () => {
    const store = memoryCursorStore();
    await store.set("c", { fiberId: "f", delivered: 1, done: false });
    const read = await store.get("c");
    if (read) read.done = true;
    expect((await store.get("c"))?.done).toBe(false);
  });
});
