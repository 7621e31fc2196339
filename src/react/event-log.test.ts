/**
 * The dedupe logic of `useFiberEvents`, without React: a log keeps each seq once and in order,
 * whatever duplicates, overlaps and stale deliveries reach it.
 */

import { describe, expect, it } from "vitest";
import type { FiberEvent } from "../core/records";
import { type EventLog, emptyLog, eventLogReducer, lastSeq } from "./event-log";

const ev = (seq: number, type = "tick"): FiberEvent => ({ seq, type, data: { seq }, at: seq });

function apply(log: EventLog, ...batches: FiberEvent[][]): EventLog {
  return batches.reduce((state, events) => eventLogReducer(state, { type: "events", id: "f", events }), log);
}

describe("eventLogReducer", () => {
  it("keeps every seq once, in order, across duplicate and overlapping deliveries", () => {
    const log = apply(emptyLog("f"), [ev(1), ev(2)], [ev(1), ev(2), ev(3)], [ev(3)], [ev(2), ev(3), ev(4)]);
    expect(log.events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(lastSeq(log)).toBe(4);
    expect(log.status).toBe("streaming");
  });

  it("starts after the cursor and drops chunks that would leave a gap", () => {
    const log = apply(emptyLog("f", 5), [ev(3), ev(6), ev(8), ev(7)]);
    expect(log.events.map((e) => e.seq)).toEqual([6, 7]);
  });

  it("returns the same state object when nothing is new, so React skips the render", () => {
    const log = apply(emptyLog("f"), [ev(1)]);
    expect(eventLogReducer(log, { type: "events", id: "f", events: [ev(1)] })).toBe(log);
  });

  it("ignores chunks and errors meant for another fiber, and ends at fiber.end", () => {
    let log = apply(emptyLog("f"), [ev(1)]);
    log = eventLogReducer(log, { type: "events", id: "other", events: [ev(2)] });
    expect(log.events).toHaveLength(1);
    log = apply(log, [ev(2, "fiber.end")]);
    expect(log.status).toBe("ended");
    expect(eventLogReducer(log, { type: "failed", id: "f", error: new Error("late") }).status).toBe("ended");
    expect(eventLogReducer(log, { type: "reset", id: "g", after: 0 })).toEqual(emptyLog("g"));
  });
});
