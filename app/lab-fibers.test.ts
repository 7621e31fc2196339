/**
 * The crash suite's check that no two executions of one lab effect step ran at once, on the
 * ledger's own times (independent of the journal's attempt numbers).
 */

import { describe, expect, it } from "vitest";
import { overlappingRuns } from "./lab-fibers";

describe("overlappingRuns", () => {
  it("passes executions one after another, and one killed before it ended", () => {
    expect(overlappingRuns([])).toBeUndefined();
    expect(
      overlappingRuns([
        { at: 100, endedAt: 200 },
        { at: 200, endedAt: 300 },
      ]),
    ).toBeUndefined();
    expect(overlappingRuns([{ at: 100 }, { at: 150, endedAt: 250 }])).toBeUndefined();
  });

  it("reports an execution that began while another had not ended, in either order", () => {
    expect(
      overlappingRuns([
        { at: 100, endedAt: 200 },
        { at: 150, endedAt: 160 },
      ]),
    ).toBe("one ran from 100 to 200, another began at 150");
    // Appended in commit order, which two runners at once need not keep.
    expect(overlappingRuns([{ at: 150 }, { at: 100, endedAt: 200 }])).toBe(
      "one ran from 100 to 200, another began at 150",
    );
    expect(overlappingRuns([{ at: 100, endedAt: 200 }, { at: 100 }])).toBe(
      "one ran from 100 to 200, another began at 100",
    );
  });
});
