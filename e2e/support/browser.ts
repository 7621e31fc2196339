/**
 * Browser control for the e2e specs: a re-export of `fiberline/testing`'s process helpers (launch
 * Chromium on a persistent profile with a known PID, SIGKILL it, relaunch it on the same profile,
 * close it, stop its Service Workers over CDP). One implementation: `src/testing/browser-process.ts`.
 */

export {
  CHROMIUM_ARGS,
  closeBrowser,
  crashBrowser,
  findChromium,
  type LaunchBrowserOptions,
  type LaunchedBrowser,
  launchBrowser,
  relaunchBrowser,
  stopServiceWorkers,
} from "../../src/testing/index";
