/**
 * `FiberWaits` on its own, with a stub run: when the run may unload while a read of the stored
 * inbox is under way.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { FiberWaits, type WaitHost } from "./fiber-waits";
import type { InboxEvent } from "./records";
import { RunJournal } from "./run-journal";

afterEach(() => {
  vi.useRealTimers();
});

function stubRun(readInbox: () => Promise<InboxEvent[]>) {
  const suspend = vi.fn();
  const host: WaitHost = {
    fiberId: "f1",
    journal: new RunJournal("f1", [], () => {}),
    unloadAfterMs: 1_000,
    now: () => Date.now(),
    running: () => true,
    assertLive() {},
    writeLater() {},
    suspend,
    readInbox,
    fail: vi.fn(),
  };
  return { host, suspend };
}

const event = (seq: number, name: string): InboxEvent => ({ fiberId: "f1", seq, name, payload: null, at: 0 });

describe("FiberWaits", () => {
  it("waits for a read of the stored inbox to end before unloading, without spinning on timers meanwhile", async () => {
    vi.useFakeTimers();
    let answer: (events: InboxEvent[]) => void = () => {};
    const { host, suspend } = stubRun(() => new Promise((resolve) => (answer = resolve)));
    const waits = new FiberWaits(host, []);
    void waits.waitForEvent("approval").catch(() => {});
    // Seq 2 arrives, seq 1 was missed: the run reads the stored inbox before deciding anything.
    waits.deliver(event(2, "other"));

    // A read that takes long (or never ends) leaves no timer behind: nothing polls meanwhile.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(suspend).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);

    // Once merged (nothing for this wait), the run unloads, waiting for "approval".
    answer([event(1, "other"), event(2, "other")]);
    await vi.advanceTimersByTimeAsync(1);
    expect(suspend).toHaveBeenCalledTimes(1);
    expect(suspend.mock.calls[0]?.[0]).toMatchObject({ status: "waiting", waitingFor: ["approval"] });
  });
});
