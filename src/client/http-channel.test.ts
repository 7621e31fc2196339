/**
 * The client's channel to a host reached by `baseUrl` (the edge host): an answer whose body stalls
 * or breaks after its headers ends in a `ConnectionError` with a stable code, as a call that gets
 * no answer at all does.
 */

import { describe, expect, it } from "vitest";
import { ConnectionError, InvalidInputError } from "../core/errors";
import { HttpChannel } from "./http-channel";

/** A fetch that answers headers and part of a body, then stalls (erroring on the signal, as a real fetch does) or breaks. */
function halfAnswer(then: "stall" | "break"): typeof fetch {
  return async (_url, init) => {
    const signal = init?.signal as AbortSignal;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"id":'));
        if (then === "break") setTimeout(() => controller.error(new TypeError("network error")), 5);
        signal.addEventListener("abort", () => controller.error(signal.reason));
      },
    });
    return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
  };
}

describe("HttpChannel", () => {
  it.each([
    ["stalls past the deadline", "stall", "deadline_exceeded"],
    ["breaks", "break", "protocol_error"],
  ] as const)("rejects with a coded ConnectionError when the answer's body %s", async (_, then, code) => {
    const channel = new HttpChannel({
      baseUrl: "https://edge.test",
      prefix: "/__fiberline",
      timeoutMs: 50,
      fetch: halfAnswer(then),
    });
    const error = await channel.call("get", ["abc"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).code).toBe(code);
  });

  it("refuses arguments JSON cannot carry with not_cloneable, sending nothing", async () => {
    let fetched = 0;
    const channel = new HttpChannel({
      baseUrl: "https://edge.test",
      prefix: "/__fiberline",
      timeoutMs: 1_000,
      fetch: async () => {
        fetched++;
        return new Response("{}", { status: 200 });
      },
    });
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    for (const input of [{ budget: 10n }, cycle]) {
      const error = await channel.call("start", ["agent", input]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(error).toMatchObject({ code: "not_cloneable" });
    }
    expect(fetched).toBe(0);
  });
});
