/**
 * `createDurableObjectHost` refuses options it cannot run with before it touches the object's
 * storage (`invalid_argument`, with what to pass instead).
 */

import { describe, expect, it } from "vitest";
import { createRuntime } from "../core/runtime";
import { createDurableObjectHost } from "./durable-object-host";
import type { DurableObjectStateLike } from "./platform";

/** An object state whose storage nothing may reach: the checks come first. */
const untouched = {
  get storage(): never {
    throw new Error("the host read the object's storage before checking its options");
  },
} as unknown as DurableObjectStateLike;

describe("createDurableObjectHost options", () => {
  it.each([Number.NaN, -1, Number.POSITIVE_INFINITY])(
    "refuses continuity.cancelWaitMs = %s",
    (cancelWaitMs) => {
      expect(() =>
        createDurableObjectHost(untouched, {
          runtime: (parts) => createRuntime({ ...parts, fibers: [] }),
          continuity: { cancelWaitMs },
        }),
      ).toThrow(
        expect.objectContaining({ code: "invalid_argument", message: expect.stringMatching(/cancelWaitMs/) }),
      );
    },
  );
});
