/**
 * The stash and step-result payload fuzz (`stash-payloads.fuzz.ts`) on `IdbStore` over Chromium's
 * real IndexedDB, a smaller sample than the Node run on `MemoryStore`: what IndexedDB's own
 * structured clone makes of a value is what comes back, and a refused value leaves the database
 * as it was.
 */

import { deleteDB } from "idb";
import { afterAll, expect, it } from "vitest";
import { IdbStore } from "./idb-store";
import { chainOf, checkPayloads, handOver, nested } from "./stash-payloads.fuzz";

const run = Date.now().toString(36);
const names: string[] = [];
const create = () => {
  const name = `fiberline-payloads-${run}-${names.length + 1}`;
  names.push(name);
  return new IdbStore({ name });
};

afterAll(async () => {
  for (const name of names) await deleteDB(name);
});

it("stores any stash or step result exactly, or refuses it with a typed error and keeps what was committed", {
  timeout: 120_000,
}, async () => {
  const seen = await checkPayloads(create, 40);
  expect([...seen.keys()].some((k) => k.endsWith("stored"))).toBe(true);
});

it("stores a stash nested 1,000 deep whole, and refuses one nested 10,000 deep", async () => {
  const stored = await handOver(create, nested(1_000, "leaf", false), "stash");
  expect(stored).toHaveProperty("stored");
  if ("stored" in stored) expect(chainOf(stored.stored)).toEqual({ depth: 1_000, leaf: "leaf" });
  expect(await handOver(create, nested(10_000, "leaf", true), "stash")).toEqual({ refused: "not_cloneable" });
});

// Found by this fuzz (see also stash-payloads.fuzz.test.ts): plain data nested 2,500 deep passed
// validation, and IndexedDB stored the step result, but Chromium could not read the row back
// (readJournal failed with store_error "Cannot read properties of null"), so the fiber's whole
// journal was unreadable. Validation now refuses nesting past MAX_NESTING before anything is written.
it("refuses a step result of plain objects nested 2,500 deep, before writing it", async () => {
  expect(await handOver(create, nested(2_500, "leaf", false), "step")).toEqual({ refused: "not_cloneable" });
});
