/**
 * The bench Service Worker: a Fiberline runtime hosted by `createServiceWorkerHost` exactly as an
 * app would host it (B3, B4, B5 read its event stream from the page), plus a few bench-only
 * messages: start and cancel a bench fiber, and the raw IndexedDB baselines measured in this same
 * Service Worker. The durability comes from the script URL (`sw.js?durability=strict`).
 */

import { createRuntime, IdbStore } from "../../src/index";
import { createServiceWorkerHost } from "../../src/sw/index";
import { benchFibers, emitter } from "./fibers";
import { isServiceWorkerMessage, type ServiceWorkerReply, type ToServiceWorker } from "./protocol";
import {
  type Durability,
  deleteDatabase,
  openRaw,
  paddedRow,
  rawBatchedPuts,
  rawSinglePuts,
} from "./raw-idb";
import { prepareRawStream, rawStreamResponse } from "./raw-stream";

interface BenchMessageEvent {
  data: unknown;
  ports: readonly MessagePort[];
  waitUntil(promise: Promise<unknown>): void;
}

interface BenchFetchEvent {
  request: Request;
  respondWith(response: Promise<Response>): void;
}

interface BenchScope {
  location: { href: string };
  addEventListener(type: "message", listener: (event: BenchMessageEvent) => void): void;
  addEventListener(type: "fetch", listener: (event: BenchFetchEvent) => void): void;
  addEventListener(type: "install", listener: (event: BenchMessageEvent) => void): void;
  addEventListener(
    type: "install" | "activate" | "fetch" | "message",
    listener: (event: Partial<BenchFetchEvent>) => void,
  ): void;
}

const scope = self as unknown as BenchScope;
const durability: Durability =
  new URL(scope.location.href).searchParams.get("durability") === "strict" ? "strict" : "relaxed";

// B5's timeline of this worker start (`bench/timeline`): when it began, finished evaluating, saw
// its first events and finished the start-up recover(), on the page's time line.
const at = () => performance.timeOrigin + performance.now();
const timeline: Record<string, number | string> = { origin: performance.timeOrigin, evaluated: at() };
for (const type of ["install", "activate", "fetch", "message"] as const) {
  scope.addEventListener(type, (event: Partial<BenchFetchEvent>) => {
    // Registered before the host's listeners: a fetch the host or the shell answers stops there.
    if (event.request?.url.includes("/__fiberline/")) timeline["stream-fetch"] ??= at();
    const key = `first-${type}`;
    if (timeline[key] !== undefined) return;
    timeline[key] = at();
    if (event.request)
      timeline[`${key}-url`] = `${event.request.mode} ${new URL(event.request.url).pathname}`;
    // The host's listener, after this one, begins recover() at the first event.
    if (timeline.recovering === undefined) {
      timeline.recovering = at();
      setTimeout(() => {
        void host.recovery?.then(() => {
          timeline.recovered ??= at();
        });
      }, 0);
    }
  });
}

const runtime = createRuntime({ store: new IdbStore({ name: "bench-sw", durability }), fibers: benchFibers });
const host = createServiceWorkerHost({ runtime, skipWaiting: true });

// The app shell, precached at install and served from Cache Storage, as an installable app does:
// a navigation after a browser relaunch then waits neither for Chromium's network service (started
// in parallel with the first navigation, 400-700 ms into B5's relaunch) nor for the fallback to it.
// Registered after the host, whose fetch listener begins recover() at the navigation first.
const SHELL = "bench-shell";
scope.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const html = await (await fetch("/")).text();
      const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1] as string);
      await (await caches.open(SHELL)).addAll(["/", ...assets]);
    })(),
  );
});
scope.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const raw = rawStreamResponse(url, durability);
  if (raw !== undefined) {
    event.respondWith(Promise.resolve(raw));
    return;
  }
  const navigation = event.request.mode === "navigate" && url.pathname === "/";
  if (!navigation && !url.pathname.startsWith("/assets/")) return;
  event.respondWith(
    caches
      .open(SHELL)
      .then((cache) => cache.match(navigation ? "/" : url.pathname))
      .then((hit) => hit ?? fetch(event.request)),
  );
});

async function handle(message: ToServiceWorker): Promise<unknown> {
  switch (message.type) {
    case "bench/start": {
      await host.recovery;
      const started = await runtime.start(message.name, message.input);
      return started.id;
    }
    case "bench/start-timed": {
      const t0 = performance.now();
      await host.recovery;
      const started = await runtime.start(message.name, message.input);
      return { id: started.id, inWorkerMs: performance.now() - t0 };
    }
    case "bench/cancel":
      return runtime.cancel(message.id);
    case "bench/raw-batched":
    case "bench/raw-single": {
      const name = `raw-sw-${crypto.randomUUID().slice(0, 8)}`;
      const db = await openRaw(name);
      try {
        const row = (n: number) => paddedRow("raw-fiber-0123456789abcdef0123456789ab", n, message.bytes);
        if (message.type === "bench/raw-batched") {
          return await rawBatchedPuts(db, durability, message.count, row);
        }
        // Transaction-per-token: ms per put -> puts per second.
        return 1000 / (await rawSinglePuts(db, durability, message.count, row));
      } finally {
        db.close();
        await deleteDatabase(name);
      }
    }
    case "bench/raw-stream-prepare":
      return prepareRawStream({ n: message.n, burst: message.burst, text: message.text });
    case "bench/emit-durable": {
      // The emitter with nobody reading: how fast chunks become durable, without the stream.
      await host.recovery;
      const t0 = performance.now();
      const before = { ...runtime.commitStats };
      const fiber = await runtime.start(emitter, { n: message.n, burst: message.burst, text: message.text });
      await runtime.result(fiber);
      const seconds = (performance.now() - t0) / 1000;
      return {
        chunksPerSec: message.n / seconds,
        transactions: runtime.commitStats.transactions - before.transactions,
      };
    }
    case "bench/release-waiters": {
      // Ends B11's waiting fibers (each returns the event), so later workloads start without them.
      await host.recovery;
      const waiting = await runtime.list({ status: "waiting" });
      await Promise.all(waiting.map((record) => runtime.sendEvent(record.id, "go", null)));
      await Promise.all(waiting.map((record) => runtime.result(record.id)));
      return waiting.length;
    }
    case "bench/timeline": {
      await host.recovery;
      return timeline;
    }
    case "bench/info": {
      const fibers = await runtime.list();
      return {
        durability,
        instanceId: host.info.instanceId,
        active: runtime.activeCount,
        fibers: fibers.map((record) => `${record.name}:${record.status}`),
      };
    }
  }
}

scope.addEventListener("message", (event) => {
  if (!isServiceWorkerMessage(event.data)) return;
  const port = event.ports[0];
  const work = handle(event.data).then(
    (value): ServiceWorkerReply => ({ ok: true, value }),
    (error: unknown): ServiceWorkerReply => ({
      ok: false,
      message: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    }),
  );
  event.waitUntil(work.then((reply) => port?.postMessage(reply)));
});

// B11: `GET /bench/recovered` answers once this worker start's recover() is done (the host's
// fetch listener, registered first, has begun it), with when that was on the shared time line
// (`performance.timeOrigin` is the worker's start).
scope.addEventListener("fetch", (event) => {
  if (new URL(event.request.url).pathname !== "/bench/recovered") return;
  event.respondWith(
    (async () => {
      const summary = await host.recovery;
      return Response.json({
        workerStartedAt: performance.timeOrigin,
        recoveredAt: performance.timeOrigin + performance.now(),
        scheduled: summary?.scheduled.length ?? 0,
      });
    })(),
  );
});
