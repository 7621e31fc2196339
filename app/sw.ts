/**
 * The demo's Service Worker, built as an ES module and served at `/sw.js` (root scope). It hosts
 * the Fiberline runtime on IndexedDB with the assistant and the crash lab's fibers, answers the
 * demo's own `/demo-api/` routes, and precaches the app shell (Workbox, injectManifest) so the
 * demo opens offline after its first visit.
 */

import { cleanupOutdatedCaches, createHandlerBoundToURL, precacheAndRoute } from "workbox-precaching";
import { NavigationRoute, registerRoute } from "workbox-routing";
import { createRuntime, IdbStore } from "../src/index";
import { createServiceWorkerHost, type FetchEventLike, watchStorage } from "../src/sw/index";
import { labBatch, labEffects, labTicker } from "./lab-fibers";
import { assistant } from "./worker/assistant";
import { handleDemoRequest } from "./worker/demo-routes";

declare const self: {
  readonly location: Location;
  readonly __WB_MANIFEST: Array<string | { url: string; revision: string | null }>;
  addEventListener(type: "fetch", listener: (event: FetchEventLike) => void): void;
};

// watchStorage: a write refused for lack of space pauses its fiber and tells every page (the
// storage banner), and a database the browser wiped is reported with the fibers it took.
// (The torture run builds the demo with VITE_JOURNAL_FOLD=4, so its crashes land across journal
// folds all the time; the demo itself keeps IdbStore's default.)
const foldSetting = import.meta.env.VITE_JOURNAL_FOLD;
const journalFold = foldSetting ? Number(foldSetting) : undefined;
const runtime = createRuntime({
  store: watchStorage(new IdbStore({ name: "fiberline", journalFold })),
  fibers: [assistant, labTicker, labEffects, labBatch],
});

// First, so Fiberline's control channel and event streams are answered before anything else.
const host = createServiceWorkerHost({ runtime, skipWaiting: true });

self.addEventListener("fetch", (event) => {
  const response = handleDemoRequest(event.request, self.location.origin);
  if (response) event.respondWith(response);
});

// The app shell: every built asset, and index.html for navigations (the app routes by hash).
// The dev server injects an empty manifest: nothing is precached there, every request goes to it.
const shell = self.__WB_MANIFEST;
precacheAndRoute(shell);
cleanupOutdatedCaches();
if (shell.some((entry) => (typeof entry === "string" ? entry : entry.url) === "index.html")) {
  registerRoute(
    new NavigationRoute(createHandlerBoundToURL("index.html"), {
      denylist: [new RegExp(`^${host.prefix}/`), /^\/mock-model\//, /^\/demo-api\//],
    }),
  );
}
