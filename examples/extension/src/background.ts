/**
 * The example extension's background worker: the Fiberline runtime on IndexedDB, hosted by
 * `createExtensionHost`. Everything is registered at the top level, so each start of the worker
 * (an alarm, the browser starting, the side panel connecting) recovers the fibers first.
 */

import { createExtensionHost } from "../../../src/extension/index";
import { createRuntime, IdbStore } from "../../../src/index";
import { assistant, reminder } from "./fibers";

declare const chrome: {
  sidePanel?: { setPanelBehavior(behavior: { openPanelOnActionClick: boolean }): Promise<void> };
};

const runtime = createRuntime({
  store: new IdbStore({ name: "fiberline-extension" }),
  fibers: [assistant, reminder],
});
const host = createExtensionHost({ runtime });

// The toolbar button opens the side panel.
chrome.sidePanel?.setPanelBehavior({ openPanelOnActionClick: true }).catch(() => {});

// For a look from the worker's DevTools console (and the e2e tests): `fiberline.runtime.list()`.
(globalThis as { fiberline?: unknown }).fiberline = { runtime, host };
