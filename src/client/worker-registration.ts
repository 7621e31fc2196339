/**
 * Finding the Service Worker from a page: is it available at all (and if not, why), registering
 * it, and waiting until it controls the page. Used by `connect()`.
 */

import { ServiceWorkerUnavailableError } from "../core/errors";
import type { ClaimMessage } from "../sw/protocol";

/** The page's `navigator.serviceWorker`, or a clear error saying why there is none and what to do. */
export function serviceWorkerContainer(): ServiceWorkerContainer {
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  const container = nav && "serviceWorker" in nav ? nav.serviceWorker : undefined;
  if (container) return container;
  const scope = globalThis as { isSecureContext?: boolean; location?: { origin?: string } };
  if (scope.isSecureContext === false) {
    throw new ServiceWorkerUnavailableError(
      "service_worker_unavailable",
      `Service Workers are unavailable: ${scope.location?.origin ?? "this page"} is not a secure context. Browsers only allow them on https:// origins and on http://localhost; serve the app over HTTPS (or from localhost in development).`,
    );
  }
  throw new ServiceWorkerUnavailableError(
    "service_worker_unavailable",
    "Service Workers are unavailable here (navigator.serviceWorker is missing): Firefox private windows, some enterprise policies and very old browsers disable them, and they do not exist outside a page's main thread. Fiberline needs one to keep fibers running across reloads and crashes: open the app in a normal window of a current browser, or pass connect({ fallback: { runtime } }) to run the fibers in one of the origin's tabs instead (docs/fallback.md).",
  );
}

/**
 * Registers `scriptUrl`, or returns the registration the app made itself.
 *
 * Failure semantics: a refused registration (private mode, storage blocked for the site, a
 * script that is missing or not JavaScript, module workers unsupported) rejects with
 * `ServiceWorkerUnavailableError` whose `cause` is the browser's error.
 */
export async function findRegistration(
  container: ServiceWorkerContainer,
  scriptUrl: string | URL | undefined,
  options: RegistrationOptions | undefined,
  timeoutMs: number,
): Promise<ServiceWorkerRegistration> {
  if (scriptUrl !== undefined) {
    try {
      return await container.register(scriptUrl, options);
    } catch (cause) {
      throw new ServiceWorkerUnavailableError(
        "service_worker_unavailable",
        `Registering the Service Worker ${String(scriptUrl)} failed (${describe(cause)}). Browsers refuse registration in private windows and when storage is blocked for the site; also check that the URL serves JavaScript with a JavaScript content type, and that the browser supports { type: "module" } workers if you asked for one.`,
        { cause },
      );
    }
  }
  const existing = await container.getRegistration();
  if (existing) return existing;
  return await within(
    container.ready,
    timeoutMs,
    "No Service Worker is registered for this page. Pass connect({ scriptUrl }) or register the worker that calls createServiceWorkerHost() yourself.",
  );
}

/**
 * The worker controlling the page, waiting for one if needed. An active worker that does not
 * control the page (after a hard reload, which bypasses Service Workers) is asked to claim it.
 */
export async function waitForController(
  container: ServiceWorkerContainer,
  timeoutMs: number,
): Promise<ServiceWorker> {
  const now = container.controller;
  if (now) return now;
  let onChange = () => {};
  const controlled = new Promise<ServiceWorker>((resolve) => {
    onChange = () => {
      if (container.controller) resolve(container.controller);
    };
    container.addEventListener("controllerchange", onChange);
  });
  void container.ready.then((registration) => {
    if (!container.controller)
      registration.active?.postMessage({ type: "fiberline/claim" } satisfies ClaimMessage);
  });
  try {
    return await within(
      controlled,
      timeoutMs,
      "The page is still not controlled by the Fiberline Service Worker. Check that the worker's scope covers this page and that createServiceWorkerHost() runs in it.",
    );
  } finally {
    // Also after a timeout: a reader waiting for a host calls this once per failed attempt.
    container.removeEventListener("controllerchange", onChange);
  }
}

function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new ServiceWorkerUnavailableError("service_worker_unavailable", `${message} (waited ${ms} ms)`),
        ),
      ms,
    );
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
