/**
 * The errors of continuity, with stable codes: `lease_lapsed` (a browser past its Rule C
 * deadline), `fenced` (reused from the engine, with the home that took over), `out_of_order`
 * (a shipment left a gap, or went back past what the sender had already let go).
 * Registered with `registerErrorClass`, so they keep class and code across every boundary.
 */

import { FencedError, FiberlineError, registerErrorClass } from "../core/errors";

/**
 * The browser's lease on a replicated fiber ran out before a newer acknowledgement came
 * (`lease_lapsed`): it writes nothing more to the fiber until the arbiter answers again. Handled
 * like `fenced`: the run stops, and the fiber resumes wherever the arbiter lets it.
 */
export class LeaseLapsedError extends FencedError {
  override name = "LeaseLapsedError";
  constructor(fiberId: string) {
    super(
      "lease_lapsed",
      `The browser's lease on fiber ${fiberId} ran out before the edge acknowledged it again (offline or the edge unreachable); it stopped writing the fiber and resumes once the edge answers, or the edge continues it.`,
    );
  }
}

/** The fiber changed home: `home` runs it under `epoch`, and this home stopped (`fenced`). */
export function changedHomeError(fiberId: string, epoch: number, home: string): FencedError {
  const error = new FencedError(
    "fenced",
    `Fiber ${fiberId} now runs at ${home} (home epoch ${epoch}); this home stopped writing it and reads it from there.`,
  );
  (error as { data?: unknown }).data = { epoch, home };
  return error;
}

/** A shipment left a gap; the replica holds positions up to `appliedPos` (`out_of_order`). */
export class OutOfOrderError extends FiberlineError {
  override name = "OutOfOrderError";
  /** Travels with the error (`serializeError` keeps `data`). */
  readonly data: { appliedPos: number };
  constructor(fiberId: string, appliedPos: number, message?: string) {
    super(
      "out_of_order",
      message ??
        `A shipment of fiber ${fiberId} did not continue the replica, which holds positions up to ${appliedPos}; resend from ${appliedPos + 1}.`,
    );
    this.data = { appliedPos };
  }
}

registerErrorClass("LeaseLapsedError", (data) => {
  const error = new LeaseLapsedError("");
  error.message = data.message;
  return error;
});
registerErrorClass("OutOfOrderError", (data) => {
  const appliedPos = (data.data as { appliedPos?: number } | undefined)?.appliedPos ?? 0;
  return new OutOfOrderError("", appliedPos, data.message);
});
