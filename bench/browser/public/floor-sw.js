// B5's floor: a bare Service Worker, as an installable app has one. It precaches its page at
// install, serves navigations from Cache Storage, and answers `/floor/ping` from memory.
const CACHE = "b5-floor";

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.add("/floor.html"))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.pathname === "/floor/ping") {
    event.respondWith(Response.json({ workerStartedAt: performance.timeOrigin }));
    return;
  }
  if (event.request.mode === "navigate") {
    event.respondWith(
      caches
        .open(CACHE)
        .then((cache) => cache.match("/floor.html"))
        .then((hit) => hit ?? fetch(event.request)),
    );
  }
});
