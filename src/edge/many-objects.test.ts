/**
 * Scale-out at the edge: 100 fibers started through one Worker land in 100 Durable Objects
 * (one per fiber id), run at the same time and each completes.
 */

import { afterAll, expect, it } from "vitest";
import { Ledger } from "./testing/ledger";
import { readStream } from "./testing/sse-client";
import { bundleWorker, TestWorker } from "./testing/workerd";

const ledger = new Ledger();
const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/host-worker.ts"),
  durableObjects: { FIBERS: "FiberObject" },
  serviceBindings: { LEDGER: ledger.binding },
});

afterAll(() => worker.dispose());

it("runs 100 fibers in 100 Durable Objects concurrently, and each completes", async () => {
  const ids = Array.from({ length: 100 }, (_, i) => `many-${i}`);
  const steps = 3;
  const stepMs = 500;
  const began = Date.now();

  const starts = await Promise.all(
    ids.map((id) =>
      worker.fetch("/__fiberline/fibers", {
        method: "POST",
        body: JSON.stringify({ name: "steps", id, input: { count: steps, ms: stepMs } }),
      }),
    ),
  );
  expect(starts.map((r) => r.status)).toEqual(ids.map(() => 201));

  const reads = await Promise.all(ids.map((id) => readStream(worker, id, 0)));
  const elapsed = Date.now() - began;

  const ends = reads.map(
    (read) => read.events.at(-1)?.data as { status: string; result: { object: string } },
  );
  expect(ends.map((end) => end.status)).toEqual(ids.map(() => "completed"));
  expect(ends.map((end) => end.result)).toEqual(
    ids.map(() => ({ values: [10, 20, 30], object: expect.any(String) })),
  );
  expect(new Set(ends.map((end) => end.result.object)).size).toBe(100);
  for (const id of ids) expect(ledger.count(id)).toBe(steps);

  // One after another they would take 100 x 3 x 500 ms = 150 s; together, about one fiber's time.
  expect(elapsed).toBeLessThan(30_000);
  // Every fiber had started its first step before any fiber finished its last one.
  const lastFirstStep = Math.max(...ledger.entries.filter((e) => e.what === "step-1").map((e) => e.at));
  const firstLastStep = Math.min(...ledger.entries.filter((e) => e.what === "step-3").map((e) => e.at));
  expect(lastFirstStep).toBeLessThan(firstLastStep + stepMs);
}, 60_000);
