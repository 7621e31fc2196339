/**
 * `fiberline/testing`: tools for proving that fibers survive crashes. `crashableStore` simulates a
 * process death at any store write for fast Node tests of fiber code.
 */

export { type CrashOptions, type CrashableStore, crashableStore } from "./crash-store";
