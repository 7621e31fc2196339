import { describe, expect, it } from "vitest";
import type { FiberEvent } from "../core/records";
import { StreamFollower } from "./stream-follower";

const chunk = (seq: number, type = "tick"): FiberEvent => ({ seq, type, data: {}, at: seq });

describe("StreamFollower", () => {
  it("keeps the current reader's chunks, ignores a replaced reader's, and resumes after the last seq", () => {
    const log = new StreamFollower("f1", 0);
    expect(log.detached).toBe(true);
    const first = log.bind();
    log.receive({ token: first, kind: "chunk", event: chunk(1) });
    log.receive({ token: first, kind: "chunk", event: chunk(2) });
    log.unbind(first); // its page reloaded
    const second = log.bind();
    log.receive({ token: first, kind: "chunk", event: chunk(3) }); // late, from the old page
    expect(log.lastSeq).toBe(2);
    log.receive({ token: second, kind: "chunk", event: chunk(3) });
    log.receive({ token: second, kind: "chunk", event: chunk(4, "fiber.end") });
    expect(log.events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(log.ended).toBe(true);
    expect(log.detached).toBe(false);
    expect(log.attachments).toBe(2);
    expect(log.report()).toMatchObject({ lost: [], duplicated: [], reordered: [], ended: true });
  });

  it("reports a duplicate the current reader delivers, and a gap", () => {
    const log = new StreamFollower("f1", 0);
    const token = log.bind();
    for (const seq of [1, 2, 2, 4]) log.receive({ token, kind: "chunk", event: chunk(seq) });
    expect(log.report()).toMatchObject({ lost: [3], duplicated: [2] });
  });

  it("resolves waiters as chunks arrive and detaches after a reader error", async () => {
    const log = new StreamFollower("f1", 5);
    const token = log.bind();
    const twoTicks = log.count(2, "tick", { timeoutMs: 1_000 });
    log.receive({ token, kind: "chunk", event: chunk(6) });
    log.receive({ token, kind: "chunk", event: chunk(7, "other") });
    log.receive({ token, kind: "chunk", event: chunk(8) });
    await twoTicks;
    log.receive({ token, kind: "error", error: "deadline_exceeded: gave up" });
    expect(log.readerErrors).toEqual(["deadline_exceeded: gave up"]);
    expect(log.detached).toBe(true);
    await expect(log.done({ timeoutMs: 50 })).rejects.toThrow(/fiber\.end did not arrive/);
  });
});
