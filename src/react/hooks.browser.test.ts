/**
 * The React hooks in real Chromium under StrictMode, against a scripted client: no duplicate
 * chunks when effects run twice, resume after the last seq held, readers stopped on unmount,
 * status and outcome from `useFiber`, and `useStartFiber`'s pending state.
 */

import { createElement, type ReactNode, StrictMode } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, describe, expect, it } from "vitest";
import type { FiberlineClient } from "../client/client";
import { FiberNotFoundError } from "../core/errors";
import type { FiberEvent, FiberRecord } from "../core/records";
import { FiberlineProvider } from "./context";
import { useFiber } from "./use-fiber";
import { useFiberEvents } from "./use-fiber-events";
import { useStartFiber } from "./use-start-fiber";

/** A client whose streams are fed by the test; every reader sees every chunk pushed (overlap on purpose). */
class ScriptedClient {
  readonly chunks: FiberEvent[] = [];
  readonly readers: Array<{ id: string; after: number; signal: AbortSignal | undefined }> = [];
  record: Partial<FiberRecord> = { status: "running", streamHead: 0 };
  #wake = new Set<() => void>();

  push(type = "tick", data: unknown = {}): void {
    this.chunks.push({ seq: this.chunks.length + 1, type, data, at: Date.now() });
    for (const wake of this.#wake) wake();
  }

  async *events(
    id: string,
    options: { after?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<FiberEvent> {
    if (id === "ghost") throw new FiberNotFoundError(id);
    this.readers.push({ id, after: options.after ?? 0, signal: options.signal });
    // Deliberately sloppy: replays from one before the cursor, as an overlapping reconnect might.
    let next = Math.max(0, (options.after ?? 0) - 1);
    for (;;) {
      while (next < this.chunks.length) {
        const chunk = this.chunks[next++] as FiberEvent;
        yield chunk;
        if (chunk.type === "fiber.end") return;
      }
      if (options.signal?.aborted) throw options.signal.reason;
      await new Promise<void>((resolve) => {
        this.#wake.add(resolve);
        options.signal?.addEventListener("abort", () => resolve(), { once: true });
      });
    }
  }

  async get(id: string) {
    return { id, ...this.record } as FiberRecord;
  }

  async inspect(id: string) {
    if (id === "ghost") throw new FiberNotFoundError(id);
    return {
      record: { id, ...this.record } as FiberRecord,
      snapshot: { phase: this.record.status },
      journal: [],
      inbox: [],
      streamHead: 0,
      active: true,
    };
  }

  async start(name: string) {
    await new Promise((r) => setTimeout(r, 30));
    return { id: `${name}-1`, name, status: "running" as const, created: true };
  }
}

let root: Root | undefined;
let container: HTMLElement | undefined;
afterEach(() => {
  root?.unmount();
  container?.remove();
  root = undefined;
});

function render(client: ScriptedClient, child: ReactNode): HTMLElement {
  container = document.createElement("div");
  document.body.append(container);
  root = createRoot(container);
  root.render(
    createElement(
      StrictMode,
      null,
      createElement(FiberlineProvider, { client: client as unknown as FiberlineClient }, child),
    ),
  );
  return container;
}

function EventsView(props: { id: string | null; after?: number }): ReactNode {
  const { events, status, error } = useFiberEvents(
    props.id,
    props.after === undefined ? {} : { after: props.after },
  );
  return createElement(
    "pre",
    { "data-status": status, "data-error": (error as { code?: string })?.code ?? "" },
    events.map((e) => e.seq).join(","),
  );
}

describe("useFiberEvents", () => {
  it("holds every chunk once under StrictMode's double effects and stops its readers on unmount", async () => {
    const client = new ScriptedClient();
    client.push("fiber.start");
    client.push();
    const el = render(client, createElement(EventsView, { id: "f" }));
    await expect.poll(() => el.textContent).toBe("1,2");
    client.push();
    client.push();
    client.push("fiber.end");
    await expect.poll(() => el.textContent).toBe("1,2,3,4,5");
    expect(el.querySelector("pre")?.dataset.status).toBe("ended");
    // StrictMode ran the effect twice: two readers, the first one aborted at once.
    expect(client.readers.length).toBe(2);
    expect(client.readers[0]?.signal?.aborted).toBe(true);
    root?.unmount();
    root = undefined;
    expect(client.readers.every((r) => r.signal?.aborted)).toBe(true);
  });

  it("starts after `after`, resets when the id changes, and reports an unknown fiber", async () => {
    const client = new ScriptedClient();
    for (let i = 0; i < 4; i++) client.push();
    const el = render(client, createElement(EventsView, { id: "f", after: 2 }));
    await expect.poll(() => el.textContent).toBe("3,4");
    root?.render(
      createElement(
        StrictMode,
        null,
        createElement(
          FiberlineProvider,
          { client: client as unknown as FiberlineClient },
          createElement(EventsView, { id: "ghost" }),
        ),
      ),
    );
    await expect.poll(() => el.querySelector("pre")?.dataset.error).toBe("fiber_not_found");
    expect(el.textContent).toBe("");
  });
});

function FiberView(props: { id: string }): ReactNode {
  const { status, result, snapshot, live, error } = useFiber<{ ok: boolean }>(props.id, {
    pollMs: 50,
    throttleMs: 10,
  });
  return createElement(
    "pre",
    null,
    JSON.stringify({
      status,
      result,
      snapshot,
      live,
      error: (error as { code?: string } | undefined)?.code ?? null,
    }),
  );
}

describe("useFiber", () => {
  it("follows a fiber to its outcome", async () => {
    const client = new ScriptedClient();
    client.push("fiber.start");
    const el = render(client, createElement(FiberView, { id: "f" }));
    await expect.poll(() => JSON.parse(el.textContent ?? "{}").status).toBe("running");
    expect(JSON.parse(el.textContent ?? "{}").live).toBe(true);
    client.record = { status: "completed", result: { ok: true }, streamHead: 2 };
    client.push("fiber.end", { status: "completed", result: { ok: true } });
    await expect
      .poll(() => JSON.parse(el.textContent ?? "{}"))
      .toEqual({
        status: "completed",
        result: { ok: true },
        snapshot: { phase: "completed" },
        live: false,
        error: null,
      });
  });

  it("reports a fiber that cannot be inspected", async () => {
    const el = render(new ScriptedClient(), createElement(FiberView, { id: "ghost" }));
    await expect.poll(() => JSON.parse(el.textContent ?? "{}").error).toBe("fiber_not_found");
  });
});

function StartView(): ReactNode {
  const { start, pending, fiber } = useStartFiber();
  return createElement(
    "button",
    { type: "button", "data-pending": String(pending), onClick: () => void start("ticker", {}) },
    fiber?.id ?? "none",
  );
}

describe("useStartFiber", () => {
  it("exposes pending, then the started fiber", async () => {
    const el = render(new ScriptedClient(), createElement(StartView));
    await expect.poll(() => el.querySelector("button")).not.toBeNull();
    el.querySelector("button")?.click();
    await expect.poll(() => el.querySelector("button")?.dataset.pending).toBe("true");
    await expect.poll(() => el.querySelector("button")?.textContent).toBe("ticker-1");
    expect(el.querySelector("button")?.dataset.pending).toBe("false");
  });
});
