/**
 * The `Store` contract suite on `SqliteStore`, run inside real Durable Objects in workerd.
 *
 * The suite itself (`store-contract.ts`) is bundled into a test Worker with `vitest` aliased to a
 * small shim (Vitest cannot run in workerd; its `expect` can). Node asks the Worker for the case
 * names and runs each case as one Vitest test, in a fresh Durable Object. Running the suite
 * in-process, rather than calling a remote store over RPC from Node, keeps what the contract
 * checks honest: values that are not structured-cloneable, atomic rollback and returned-value
 * isolation all happen where the store runs.
 */

import { afterAll, describe, expect, it } from "vitest";
import type { CaseResult } from "./testing/vitest-shim";
import { bundleWorker, TestWorker } from "./testing/workerd";

const worker = new TestWorker({
  script: await bundleWorker("src/edge/testing/contract-worker.ts"),
  durableObjects: { CONTRACT: "ContractObject" },
});
const names = (await (await worker.fetch("/cases")).json()) as string[];

afterAll(() => worker.dispose());

describe("SqliteStore in workerd", () => {
  it("registers the whole contract suite", () => {
    expect(names.length).toBeGreaterThan(30);
  });

  for (const [index, name] of names.entries()) {
    it(name, async () => {
      const result = (await (await worker.fetch(`/run?case=${index}`)).json()) as CaseResult;
      if (!result.ok) throw new Error(result.error);
    });
  }
});
