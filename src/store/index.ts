/**
 * The storage layer: the browser and in-memory backends of the engine's `Store` contract (which
 * lives beside the engine, in `src/core/store.ts`, and is re-exported here). The root
 * `fiberline` entry re-exports these; the contract suite (`store-contract.ts`) is for tests only.
 */

export type {
  ClaimRequest,
  ClaimResult,
  CommitResult,
  CreateResult,
  DeleteOptions,
  FiberQuery,
  Store,
  WriteGroup,
} from "../core/store";
export { IdbStore, type IdbStoreOptions } from "./idb-store";
export { MemoryStore } from "./memory-store";
