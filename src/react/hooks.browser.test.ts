/**
 * The React hooks in real Chromium under StrictMode, against a scripted client: no duplicate
 * chunks when effects run twice, resume after the last seq held, readers stopped on unmount,
 * status and outcome from `useFiber`, and `useStartFiber`'s pending state.
 */

import { createElement, type ReactNode, StrictMode } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, describe, expect, it } from "vitest";
import type { FiberlineClient } from "../client/client";
import { ConnectionError, FiberNotFoundError } from "../core/errors";
import type { FiberEvent, FiberRecord } from "../core/records";
import { FiberlineProvider, type FiberlineProviderProps } from "./context";
import { useFiber } from "./use-fiber";
import { useFiberEvents } from "./use-fiber-events";
import { useStartFiber } from "./use-start-fiber";

/** A client whose streams are fed by the test; every reader sees every chunk pushed (overlap on purpose). */
class ScriptedClient {
  readonly chunks: FiberEvent[] = [];
  readonly readers: Array<{ id: string; after: number; signal: AbortSignal | undefined }> = [];
  record: Partial<FiberRecord> = { status: "running", streamHead: 0 };
  /** Ids inspect() does not know (yet). */
  readonly missing = new Set<string>();
  /** How many inspections fail with a connection error before one answers. */
  unreachable = 0;
  #wake = new Set<() => void>();

  push(type = "tick", data: unknown = {}): void {
    this.chunks.push({ seq: this.chunks.length + 1, type, data, at: Date.now() });
    for (const wake of this.#wake) wake();
  }

  async *events(
    id: string,
    options: { after?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<FiberEvent> {
    if (id === "ghost" || this.missing.has(id)) throw new FiberNotFoundError(id);
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
    if (id === "ghost" || this.missing.has(id)) throw new FiberNotFoundError(id);
    if (this.unreachable > 0) {
      this.unreachable--;
      throw new ConnectionError("deadline_exceeded", "The worker did not answer in time.");
    }
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
  return mount({ client: client as unknown as FiberlineClient }, child);
}

/** Renders `children` under StrictMode and a provider with `props`, in a fresh container. */
function mount(props: FiberlineProviderProps, ...children: ReactNode[]): HTMLElement {
  container = document.createElement("div");
  document.body.append(container);
  root = createRoot(container);
  root.render(createElement(StrictMode, null, createElement(FiberlineProvider, props, ...children)));
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

/** `useFiber` with a poll slow enough that what happens live is told from what the poll finds. */
function SlowPollView(props: { id: string }): ReactNode {
  const { status } = useFiber(props.id, { pollMs: 200, throttleMs: 10 });
  return createElement("pre", null, status);
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

  it("says not_found for an unknown id, and follows the fiber once one is started under it", async () => {
    const client = new ScriptedClient();
    client.missing.add("later");
    const el = render(client, createElement(FiberView, { id: "later" }));
    await expect
      .poll(() => JSON.parse(el.textContent ?? "{}"))
      .toMatchObject({ status: "not_found", error: "fiber_not_found", live: false });
    client.missing.delete("later");
    await expect
      .poll(() => JSON.parse(el.textContent ?? "{}"))
      .toMatchObject({ status: "running", error: null, live: true });
  });

  it("follows the stream of a fiber started under an id it first found unknown", async () => {
    const client = new ScriptedClient();
    client.missing.add("soon");
    const el = render(client, createElement(SlowPollView, { id: "soon" }));
    await expect.poll(() => el.textContent).toBe("not_found");
    client.missing.delete("soon");
    await expect
      .poll(() => client.readers.some((reader) => reader.id === "soon"), { timeout: 3_000 })
      .toBe(true);
  });

  it("says error when the first inspection fails, keeps a known status on a later failure", async () => {
    const client = new ScriptedClient();
    client.unreachable = Number.POSITIVE_INFINITY;
    const el = render(client, createElement(FiberView, { id: "f" }));
    await expect
      .poll(() => JSON.parse(el.textContent ?? "{}"))
      .toMatchObject({ status: "error", error: "deadline_exceeded" });
    client.unreachable = 0;
    await expect.poll(() => JSON.parse(el.textContent ?? "{}").status).toBe("running");
    // Unreachable again (every re-inspection fails until it is not): the status stays known.
    client.unreachable = Number.POSITIVE_INFINITY;
    await expect.poll(() => JSON.parse(el.textContent ?? "{}").error).toBe("deadline_exceeded");
    expect(JSON.parse(el.textContent ?? "{}")).toMatchObject({ status: "running", live: true });
    client.unreachable = 0;
    await expect.poll(() => JSON.parse(el.textContent ?? "{}").error).toBe(null);
  });
});

/** A container whose registration is refused: the provider's connect() fails. */
const refusingContainer = {
  register: () => Promise.reject(new DOMException("The operation is insecure.", "SecurityError")),
} as unknown as ServiceWorkerContainer;

describe("a provider that cannot connect", () => {
  it("turns every hook to error with the connect error instead of loading forever", async () => {
    const el = mount(
      { options: { scriptUrl: "/nowhere.js", container: refusingContainer } },
      createElement(FiberView, { id: "f" }),
      createElement(EventsView, { id: "f" }),
      createElement(StartView),
    );
    await expect
      .poll(() => JSON.parse(el.querySelector("pre")?.textContent ?? "{}"))
      .toMatchObject({ status: "error", error: "service_worker_unavailable", live: false });
    const events = el.querySelectorAll("pre")[1] as HTMLElement;
    expect(events.dataset).toMatchObject({ status: "error", error: "service_worker_unavailable" });
    el.querySelector("button")?.click();
    await expect.poll(() => el.querySelector("button")?.dataset.error).toBe("service_worker_unavailable");
  });
});

function StartView(): ReactNode {
  const { start, pending, fiber, error } = useStartFiber();
  return createElement(
    "button",
    {
      type: "button",
      "data-pending": String(pending),
      "data-error": (error as { code?: string } | undefined)?.code ?? "",
      onClick: () => void start("ticker", {}).catch(() => {}),
    },
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
