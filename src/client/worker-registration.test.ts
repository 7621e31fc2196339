/**
 * Where Service Workers cannot run, `connect()` says why and what to do, with a stable code.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { ServiceWorkerUnavailableError } from "../core/errors";
import { connect } from "./client";
import { findRegistration, waitForController } from "./worker-registration";

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("connect() without Service Workers", () => {
  it("names an insecure origin as the reason and HTTPS as the fix", async () => {
    vi.stubGlobal("navigator", {});
    vi.stubGlobal("isSecureContext", false);
    vi.stubGlobal("location", { origin: "http://192.168.1.20:8080" });
    const error = await connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceWorkerUnavailableError);
    expect((error as ServiceWorkerUnavailableError).code).toBe("service_worker_unavailable");
    expect((error as Error).message).toContain("http://192.168.1.20:8080 is not a secure context");
    expect((error as Error).message).toContain("HTTPS");
  });

  it("names private windows and policies when the API is missing in a secure context", async () => {
    vi.stubGlobal("navigator", {});
    vi.stubGlobal("isSecureContext", true);
    const error = await connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceWorkerUnavailableError);
    expect((error as Error).message).toContain("private windows");
  });

  it("wraps a refused registration with the browser's error as cause", async () => {
    const refusal = new DOMException("The operation is insecure.", "SecurityError");
    const container = {
      register: vi.fn(async () => Promise.reject(refusal)),
    } as unknown as ServiceWorkerContainer;
    const error = await findRegistration(container, "/sw.js", { type: "module" }, 1_000).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ServiceWorkerUnavailableError);
    expect((error as Error).cause).toBe(refusal);
    expect((error as Error).message).toContain("/sw.js");
  });
});

describe("waitForController", () => {
  it("removes its controllerchange listener when it gives up, as when it succeeds", async () => {
    const listeners = new Set<unknown>();
    const container = {
      controller: null as ServiceWorker | null,
      ready: new Promise<never>(() => {}),
      addEventListener: (_type: string, listener: unknown) => listeners.add(listener),
      removeEventListener: (_type: string, listener: unknown) => listeners.delete(listener),
    };
    const sw = container as unknown as ServiceWorkerContainer;
    for (let i = 0; i < 3; i++) {
      await expect(waitForController(sw, 5)).rejects.toBeInstanceOf(ServiceWorkerUnavailableError);
    }
    expect(listeners.size).toBe(0);
    const waiting = waitForController(sw, 1_000);
    expect(listeners.size).toBe(1);
    const worker = {} as ServiceWorker;
    container.controller = worker;
    for (const listener of listeners) (listener as () => void)();
    await expect(waiting).resolves.toBe(worker);
    expect(listeners.size).toBe(0);
  });
});
