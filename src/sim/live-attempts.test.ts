/**
 * The simulator's check that one runtime never executes two attempts of a step beside each
 * other. The simulator runs it on every step attempt; here, the cases it must tell apart.
 */

import { describe, expect, it } from "vitest";
import type { FiberContext, StepContext } from "../core/define";
import { type AttemptNode, LiveAttempts } from "./live-attempts";

const LEASE_MS = 1_000;

function setup() {
  let now = 0;
  const attempts = new LiveAttempts(() => now);
  const found: string[] = [];
  const fail = (invariant: string, detail: string) => found.push(`${invariant}: ${detail}`);
  const begin = (node: AttemptNode, run: FiberContext, attempt: number, key = "f1:call#1") => {
    const controller = new AbortController();
    const step = { attempt, idempotencyKey: key, signal: controller.signal } as StepContext;
    const end = attempts.begin(node, run, step, LEASE_MS, fail);
    return { end, abort: () => controller.abort() };
  };
  return { begin, found, advance: (ms: number) => (now += ms) };
}

const node = (name: string): AttemptNode & { crashed: boolean } => ({ name, crashed: false });
const run = () => ({}) as FiberContext;

describe("LiveAttempts", () => {
  it("passes attempts that follow each other, and attempts of other steps beside each other", () => {
    const { begin, found } = setup();
    const r1 = node("r1");
    const ctx = run();
    begin(r1, ctx, 1).end();
    begin(r1, ctx, 2);
    begin(r1, ctx, 1, "f1:call#2");
    begin(r1, ctx, 1, "f2:call#1");
    expect(found).toEqual([]);
  });

  it("reports a second attempt in the same run while the first runs with its signal not aborted", () => {
    const { begin, found } = setup();
    const r1 = node("r1");
    const ctx = run();
    begin(r1, ctx, 1);
    begin(r1, ctx, 2);
    expect(found).toEqual([
      "attempts-overlap: attempt 2 of f1:call#1 began on r1 while attempt 1 was still executing in the same run, its signal not aborted",
    ]);
  });

  it("passes a retry beside a timed-out attempt of the same run that ignores its aborted signal", () => {
    const { begin, found, advance } = setup();
    const r1 = node("r1");
    const ctx = run();
    begin(r1, ctx, 1).abort();
    advance(10);
    begin(r1, ctx, 2);
    expect(found).toEqual([]);
  });

  it("holds a later run on the same runtime back for a lease period after the stopped run's abort", () => {
    const { begin, found, advance } = setup();
    const r1 = node("r1");
    begin(r1, run(), 1).abort();
    advance(LEASE_MS - 1);
    begin(r1, run(), 2).end();
    expect(found).toHaveLength(1);
    expect(found[0]).toContain("of a stopped run was still executing, 999 ms after its signal aborted");
    advance(1);
    begin(r1, run(), 3);
    expect(found).toHaveLength(1);
  });

  it("does not hold other runtimes, or a crashed one, to it", () => {
    const { begin, found } = setup();
    const r1 = node("r1");
    const r2 = node("r2");
    begin(r1, run(), 1);
    begin(r2, run(), 2);
    const r3 = node("r3");
    begin(r3, run(), 1);
    r3.crashed = true;
    begin(r3, run(), 2);
    expect(found).toEqual([]);
  });
});
