/**
 * The `IdbStore` outbox on Chromium's real IndexedDB (Vitest browser mode): a browser that dies
 * with commits not shipped finds exactly them after reopening (`outbox-idb-cases.ts`).
 */

import { describe } from "vitest";
import { runOutboxCrashTests } from "./outbox-idb-cases";

const run = Date.now().toString(36);
let dbCount = 0;

describe("IdbStore outbox (Chromium)", () => {
  runOutboxCrashTests(() => ({ factory: indexedDB, name: `fiberline-outbox-${run}-${++dbCount}` }));
});
