/**
 * The page of the continuity e2e: connects to `sw.ts` (or `sw-example.ts`) with `fiberline/client` and exposes
 * `window.cx` (its type, `Cx`, and the Node side, `pageCx`, are in `support.ts`) for the spec: start
 * a fiber, and read a fiber's stream from seq 1 the way any page does, keeping every chunk it got
 * (`chunks(id)`), so the spec sees what a page shows.
 */

import { connect, type FiberlineClient } from "../../src/client/index";
import type { Cx, Seen } from "./support";

const params = new URLSearchParams(location.search);
// `?sw=example`: the worker for examples/edge (`sw-example.ts`), with the user's `token`.
const example = params.get("sw") === "example";
const sw = new URLSearchParams({
  edge: params.get("edge") ?? "http://localhost:5621/__fiberline",
  lease: params.get("lease") ?? "5000",
  ...(example
    ? { token: params.get("token") ?? "" }
    : { ledger: params.get("ledger") ?? "http://localhost:5623" }),
});
const clientPromise: Promise<FiberlineClient> = connect({
  scriptUrl: `/${example ? "sw-example" : "sw"}.js?${sw}`,
  registerOptions: { type: "module", scope: "/" },
  timeoutMs: 20_000,
});

const seen: Record<string, Seen[]> = {};
const done: Record<string, string> = {};

const cx: Cx = {
  async ready(): Promise<boolean> {
    await clientPromise;
    return true;
  },
  async start(name: string, input: unknown, id: string): Promise<string> {
    const client = await clientPromise;
    return (await client.start(name as never, input as never, { id })).id;
  },
  read(id: string): void {
    seen[id] = [];
    void (async () => {
      try {
        const client = await clientPromise;
        for await (const ev of client.events(id, { after: 0 }))
          seen[id]?.push({ seq: ev.seq, type: ev.type, data: ev.data });
        done[id] = "done";
      } catch (error) {
        done[id] = `error: ${String(error)}`;
      }
    })();
  },
  chunks(id: string): Seen[] {
    return seen[id] ?? [];
  },
  state(id: string): string {
    return done[id] ?? "reading";
  },
  async get(id: string): Promise<unknown> {
    return (await clientPromise).get(id);
  },
  /** No fiber named, so none restored by it. */
  async list(): Promise<string[]> {
    return (await (await clientPromise).list()).map((r) => r.id);
  },
  async sendEvent(id: string, name: string, payload: unknown): Promise<void> {
    await (await clientPromise).sendEvent(id, name, payload);
  },
};

(window as unknown as { cx: Cx }).cx = cx;
