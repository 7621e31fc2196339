/**
 * The storage layer: the `Store` contract and its browser and in-memory backends. The root
 * `fiberline` entry re-exports these; the contract suite (`store-contract.ts`) is for tests only.
 */

export { IdbStore, type IdbStoreOptions } from "./idb-store";
export { MemoryStore } from "./memory-store";
export type {
  ClaimRequest,
  ClaimResult,
  CommitResult,
  CreateResult,
  DeleteOptions,
  FiberQuery,
  Store,
  WriteGroup,
} from "./store";
