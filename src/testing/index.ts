/**
 * `fiberline/testing`: tools for proving that fibers survive crashes. Node-only (never import it
 * from a page or a worker). `crashableStore` simulates a process death at any store write for fast
 * Node tests of fiber code; `AppSession` and the Playwright fixture `test` drive a real Chromium
 * on a persistent profile through browser crashes, worker stops, reloads, closed tabs and offline
 * spells; `checkStream` is the reader-side exactly-once check.
 */

export { AppSession, type AppSessionOptions, type ReadEventsOptions } from "./app-session";
export {
  closeBrowser,
  crashBrowser,
  type LaunchBrowserOptions,
  type LaunchedBrowser,
  launchBrowser,
  processGroupAlive,
  relaunchBrowser,
  stopServiceWorkers,
} from "./browser-process";
export { CHROMIUM_ARGS, findChromium, SYSTEM_CHROMIUM_PATHS } from "./chromium";
export { type CrashableStore, type CrashOptions, crashableStore } from "./crash-store";
export { expect, type FiberlineFixtures, type FiberlineTestOptions, test } from "./fixtures";
export { checkStream, isExactlyOnce, type StreamReport } from "./stream-check";
export { type ReaderMessage, StreamFollower } from "./stream-follower";
