/**
 * `useStartFiber`: a callback that starts a fiber through the provider's client, with its pending
 * state, result and error as React state.
 */

import { useCallback, useRef, useState } from "react";
import type { FiberMap } from "../client/client";
import type { InputOf, OutputOf } from "../core/define";
import { FiberlineError } from "../core/errors";
import type { StartOptions, StartResult } from "../core/runtime";
import { useFiberlineConnection } from "./context";

/** What {@link useStartFiber} returns. */
export interface StartFiberState<F extends FiberMap> {
  /** Starts (or joins, with the same `id` / `idempotencyKey`) a fiber; rejects like `client.start`. */
  start<N extends keyof F & string>(
    name: N,
    input: InputOf<F[N]>,
    options?: StartOptions,
  ): Promise<StartResult<OutputOf<F[N]>>>;
  /** True while a start is in flight. */
  pending: boolean;
  /** The last started fiber. */
  fiber: StartResult | undefined;
  /** Why the last start failed. */
  error: unknown;
  /** Clears `fiber` and `error`. */
  reset(): void;
}

/**
 * Starting fibers from components.
 *
 * @example
 * const { start, pending } = useStartFiber<{ research: typeof research }>();
 * <button disabled={pending} onClick={() => start("research", { topic }, { idempotencyKey })}>Go</button>
 */
export function useStartFiber<F extends FiberMap = FiberMap>(): StartFiberState<F> {
  const { client, error: connectError } = useFiberlineConnection<F>();
  const [state, setState] = useState<{ pending: number; fiber: StartResult | undefined; error: unknown }>({
    pending: 0,
    fiber: undefined,
    error: undefined,
  });
  const clientRef = useRef(client);
  clientRef.current = client;
  const connectErrorRef = useRef(connectError);
  connectErrorRef.current = connectError;

  const start = useCallback(
    async <N extends keyof F & string>(name: N, input: InputOf<F[N]>, options?: StartOptions) => {
      const current = clientRef.current;
      if (!current) {
        const failed = connectErrorRef.current;
        const error =
          failed === undefined
            ? new FiberlineError(
                "invalid_argument",
                "The Fiberline client is still connecting; start() once it is ready.",
              )
            : failed;
        setState((s) => ({ ...s, error }));
        throw error;
      }
      setState((s) => ({ ...s, pending: s.pending + 1, error: undefined }));
      try {
        const fiber = await current.start(name, input, options);
        setState((s) => ({ pending: s.pending - 1, fiber, error: undefined }));
        return fiber;
      } catch (error) {
        setState((s) => ({ ...s, pending: s.pending - 1, error }));
        throw error;
      }
    },
    [],
  );
  const reset = useCallback(() => setState((s) => ({ ...s, fiber: undefined, error: undefined })), []);
  return { start, pending: state.pending > 0, fiber: state.fiber, error: state.error, reset };
}
