/**
 * The continuity routes' answers to a wrong method: `405` with an `Allow` header naming the one
 * method each route takes (RFC 9110 requires it), before anything is read or written; and the
 * browser's sender of shipments, which gives up on an edge that never answers.
 */

import { describe, expect, it } from "vitest";
import type { Arbiter } from "../continuity/arbiter";
import type { Store } from "../core/store";
import { handleReplicaRequest, shipOverHttp } from "./replica-routes";

/** Nothing behind the routes: a 405 must answer before either is touched. */
const untouched = new Proxy(
  {},
  {
    get(_target, key) {
      throw new Error(`touched ${String(key)}`);
    },
  },
);

describe("the continuity routes", () => {
  it.each([
    ["replicate", "GET", "POST"],
    ["come-home", "PUT", "POST"],
    ["replica", "POST", "GET"],
  ])("answer %s with %s: 405, Allow: %s", async (route, method, allowed) => {
    const response = await handleReplicaRequest(
      new Request(`https://edge.test/__fiberline/fibers/f1/${route}`, { method }),
      { arbiter: untouched as Arbiter, store: untouched as Store, prefix: "/__fiberline" },
    );
    expect(response?.status).toBe(405);
    expect(response?.headers.get("allow")).toBe(allowed);
    expect(await response?.json()).toMatchObject({ error: { code: "invalid_argument" } });
  });
});

describe("shipOverHttp", () => {
  it.each([
    ["never answers (a network that swallows the request)", false],
    ["answers headers, then never sends the body", true],
  ])(
    "rejects a shipment whose edge %s once its timeout passes, so the shipper sends it again",
    async (_, headers) => {
      const swallowed = async (): Promise<Response> => {
        if (!headers) return new Promise<Response>(() => {}); // heeds no signal either
        return new Response(new ReadableStream({ start() {} }), { status: 200 });
      };
      const send = shipOverHttp("https://edge.test/__fiberline", swallowed, {}, 30);
      const error = await send("f1", { home: "browser:d1", epoch: 1, from: 1, entries: [] }).catch(
        (e: unknown) => e,
      );
      expect((error as Error).name).toBe("TimeoutError");
    },
  );
});
