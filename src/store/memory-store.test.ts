/**
 * Runs the `Store` contract suite on `MemoryStore`.
 */

import { MemoryStore } from "./memory-store";
import { runStoreContract } from "./store-contract";

runStoreContract("MemoryStore", () => new MemoryStore());
