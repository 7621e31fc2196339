import { describe, expect, it } from "vitest";
import type { FiberEvent } from "../core/records";
import { checkStream, isExactlyOnce } from "./stream-check";

const chunk = (seq: number, type = "tick"): FiberEvent => ({ seq, type, data: { seq }, at: seq });
const end = (seq: number, status = "completed"): FiberEvent => ({
  seq,
  type: "fiber.end",
  data: { status },
  at: seq,
});

describe("checkStream", () => {
  it("passes seq 1..N once each, in order, ending with fiber.end", () => {
    const report = checkStream([chunk(1), chunk(2), end(3)]);
    expect(report).toEqual({
      lost: [],
      duplicated: [],
      reordered: [],
      ended: true,
      afterEnd: 0,
      status: "completed",
      lastSeq: 3,
    });
    expect(isExactlyOnce(report)).toBe(true);
  });

  it("finds a lost seq, a duplicate and a reordered one", () => {
    const report = checkStream([chunk(1), chunk(3), chunk(2), chunk(3), chunk(5)]);
    expect(report.lost).toEqual([4]);
    expect(report.duplicated).toEqual([3]);
    expect(report.reordered).toEqual([2]);
    expect(report.ended).toBe(false);
    expect(isExactlyOnce(report)).toBe(false);
  });

  it("counts from `after`: a resumed reader starts past it, and a seq at or below it is a duplicate", () => {
    expect(checkStream([chunk(5), end(6)], { after: 4 })).toMatchObject({
      lost: [],
      duplicated: [],
      ended: true,
    });
    expect(checkStream([chunk(4), chunk(5)], { after: 4 }).duplicated).toEqual([4]);
    expect(checkStream([chunk(7)], { after: 4 }).lost).toEqual([5, 6]);
  });

  it("flags chunks after fiber.end and reports the end's status", () => {
    const report = checkStream([chunk(1), end(2, "failed"), chunk(3)]);
    expect(report).toMatchObject({ ended: false, afterEnd: 1, status: "failed" });
    expect(isExactlyOnce(report)).toBe(false);
  });
});
