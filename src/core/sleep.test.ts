/**
 * `sleep`: a wait longer than a timer can hold (2^31 - 1 ms) is cut to that instead of ending at
 * once, so a caller that waits for a time in a loop waits, rather than spinning.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { sleep } from "./sleep";
import { MAX_TIMER_MS } from "./validate";

afterEach(() => {
  vi.useRealTimers();
});

describe("sleep", () => {
  it("waits MAX_TIMER_MS for a longer wait, not a millisecond", async () => {
    vi.useFakeTimers();
    let done = false;
    void sleep(3_000_000_000).then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(MAX_TIMER_MS);
    expect(done).toBe(true);
  });

  it("rejects with the signal's reason when it aborts", async () => {
    const abort = new AbortController();
    const waiting = sleep(60_000, abort.signal);
    abort.abort(new Error("gone"));
    await expect(waiting).rejects.toThrow("gone");
  });
});
