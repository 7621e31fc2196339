/**
 * The continuity routes' answers to a wrong method: `405` with an `Allow` header naming the one
 * method each route takes (RFC 9110 requires it), before anything is read or written.
 */

import { describe, expect, it } from "vitest";
import type { Arbiter } from "../continuity/arbiter";
import type { Store } from "../core/store";
import { handleReplicaRequest } from "./replica-routes";

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
