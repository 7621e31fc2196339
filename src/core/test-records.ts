/**
 * A fiber record for tests: a running fiber of kind `job` with every field a record needs, and
 * `patch` over it. Test and bench code only; no entry exports it.
 */

import type { FiberRecord } from "./records";

export function testRecord(patch: Partial<FiberRecord> & { id: string }): FiberRecord {
  return {
    name: "job",
    version: "1",
    input: null,
    status: "running",
    createdAt: 1,
    updatedAt: 1,
    generation: 1,
    streamHead: 1,
    emitOrdinal: 0,
    epoch: 0,
    stalledRecoveries: 0,
    progressMark: "",
    ...patch,
  };
}
