/** Combining abort signals where `AbortSignal.any` is missing (Safari < 17.4, Firefox < 124, Chrome < 116). */

/** A signal that aborts with the first of `signals` to abort, and how to stop listening to them. */
export interface CombinedSignal {
  signal: AbortSignal;
  /** Removes the listeners on `signals` (call once the combined signal is no longer needed). */
  dispose(): void;
}

/**
 * Aborts with the reason of the first of `signals` to abort (at once when one has already).
 * Listens to them until it aborts or `dispose()` is called: a long-lived signal passed here
 * keeps nothing after that.
 */
export function eitherSignal(...signals: ReadonlyArray<AbortSignal | undefined>): CombinedSignal {
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined);
  const [only] = present;
  if (present.length === 1 && only) return { signal: only, dispose: () => {} };
  const combined = new AbortController();
  const aborted = present.find((signal) => signal.aborted);
  if (aborted) {
    combined.abort(aborted.reason);
    return { signal: combined.signal, dispose: () => {} };
  }
  const listeners = present.map((signal) => {
    const listener = () => {
      dispose();
      combined.abort(signal.reason);
    };
    signal.addEventListener("abort", listener, { once: true });
    return { signal, listener };
  });
  const dispose = () => {
    for (const { signal, listener } of listeners) signal.removeEventListener("abort", listener);
  };
  return { signal: combined.signal, dispose };
}
