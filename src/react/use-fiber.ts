/**
 * `useFiber`: one fiber's status, snapshot and outcome as React state, kept fresh by following its
 * stream (every chunk and `fiber.end` trigger a re-inspect) and by a slow poll for changes that
 * write no chunk (sleeping, waiting, a new stash).
 */

import { useCallback, useEffect, useRef, useState } from "react";
import {
  CancelledError,
  ConnectionError,
  deserializeError,
  FiberNotFoundError,
  type SerializedError,
} from "../core/errors";
import type { FiberRecord, FiberStatus } from "../core/records";
import { isTerminal } from "../core/records";
import { useFiberlineConnection } from "./context";

/** Options of {@link useFiber}. */
export interface UseFiberOptions {
  /** How often a fiber that is not over is re-inspected without a new chunk (default 2 s). */
  pollMs?: number;
  /** Re-inspects at most this often while chunks stream in (default 250 ms). */
  throttleMs?: number;
}

/** What {@link useFiber} returns. */
export interface FiberState<Out = unknown> {
  /**
   * `loading` until the first answer, then the fiber's status; `not_found` while the host has no
   * fiber with this id (the poll goes on: a fiber started later under it shows up); `error` when
   * the provider could not connect, or the first inspection failed otherwise (`error` says why).
   */
  status: FiberStatus | "loading" | "not_found" | "error";
  /** The fiber's record (name, input, timestamps, recovery...). */
  record: FiberRecord | undefined;
  /** The last `ctx.stash()` value. */
  snapshot: unknown;
  /** The result, once `completed`. */
  result: Out | undefined;
  /**
   * The fiber's error (class and `code` kept) once `failed` or `cancelled`; or why it could not be
   * inspected (a `FiberNotFoundError` with `not_found`; after a known status, the last failed
   * re-inspection, the status kept).
   */
  error: Error | undefined;
  /** True while the hook follows a fiber that is not over. */
  live: boolean;
  /** Re-inspects now. */
  refresh(): void;
}

/**
 * Follows fiber `id`. Suspend-free; stops following on unmount or when `id` changes.
 *
 * @example
 * const { status, snapshot, result, error } = useFiber<{ notes: string[] }>(fiberId);
 */
export function useFiber<Out = unknown>(
  id: string | null | undefined,
  options: UseFiberOptions = {},
): FiberState<Out> {
  const { client, error: connectError } = useFiberlineConnection();
  const pollMs = options.pollMs ?? 2_000;
  const throttleMs = options.throttleMs ?? 250;
  const [state, setState] = useState<HookState<Out>>(() => initial(id));
  const refreshRef = useRef<() => void>(() => {});

  useEffect(() => {
    const fiberId = id ?? null;
    setState((s) => (s.id === fiberId ? s : initial(fiberId)));
    if (!client || fiberId === null) return;
    const abort = new AbortController();
    let inFlight = false;
    let again = false;
    let lastInspect = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;

    const inspect = async (): Promise<void> => {
      if (abort.signal.aborted) return;
      if (inFlight) {
        again = true;
        return;
      }
      inFlight = true;
      lastInspect = Date.now();
      try {
        const info = await client.inspect(fiberId);
        if (abort.signal.aborted) return;
        setState(fromRecord<Out>(fiberId, info.record, info.snapshot));
        if (isTerminal(info.record.status)) abort.abort();
      } catch (error) {
        if (!abort.signal.aborted) setState((s) => failedInspection(s, error));
      } finally {
        inFlight = false;
        if (again) {
          again = false;
          void inspect();
        }
      }
    };
    const soon = () => {
      if (timer !== undefined) return;
      const wait = Math.max(0, throttleMs - (Date.now() - lastInspect));
      timer = setTimeout(() => {
        timer = undefined;
        void inspect();
      }, wait);
    };
    refreshRef.current = () => void inspect();

    void (async () => {
      await inspect();
      // Follow the stream from its current head: each chunk may mean a new status or stash.
      while (!abort.signal.aborted) {
        try {
          const head = (await client.get(fiberId))?.streamHead ?? 0;
          for await (const event of client.events(fiberId, { after: head, signal: abort.signal })) {
            if (event.type === "fiber.end") {
              void inspect();
              return;
            }
            soon();
          }
          return;
        } catch (error) {
          // A lost connection is retried, and so is an unknown fiber (reported by inspect() and
          // the poll meanwhile): one started later under the id is followed live too.
          const again = error instanceof ConnectionError || error instanceof FiberNotFoundError;
          if (abort.signal.aborted || !again) return;
          await sleep(pollMs, abort.signal);
        }
      }
    })();
    const poll = setInterval(() => void inspect(), pollMs);
    return () => {
      abort.abort();
      clearInterval(poll);
      clearTimeout(timer);
    };
  }, [client, id, pollMs, throttleMs]);

  const refresh = useCallback(() => refreshRef.current(), []);
  if (!client && connectError !== undefined && id !== null && id !== undefined) {
    // The provider gave up connecting: nothing will ever load.
    return { ...initial<Out>(id), status: "error", error: asError(connectError), live: false, refresh };
  }
  const current = state.id === (id ?? null) ? state : initial<Out>(id);
  return {
    status: current.status,
    record: current.record,
    snapshot: current.snapshot,
    result: current.result,
    error: current.error,
    live: current.live,
    refresh,
  };
}

type HookState<Out> = Omit<FiberState<Out>, "refresh"> & { id: string | null };

/**
 * The state after an inspection failed: an unknown fiber is `not_found` (also one that was known
 * and has been collected); another failure before any answer is `error`; after a known status the
 * status stays and `error` says what the last re-inspection met.
 */
function failedInspection<Out>(state: HookState<Out>, error: unknown): HookState<Out> {
  if (error instanceof FiberNotFoundError) {
    return { ...initial<Out>(state.id), status: "not_found", error, live: false };
  }
  if (state.status === "loading") return { ...state, status: "error", error: asError(error), live: false };
  return { ...state, error: asError(error) };
}

function initial<Out>(id: string | null | undefined): HookState<Out> {
  return {
    id: id ?? null,
    status: "loading",
    record: undefined,
    snapshot: undefined,
    result: undefined as Out | undefined,
    error: undefined as Error | undefined,
    live: id !== null && id !== undefined,
  };
}

function fromRecord<Out>(id: string, record: FiberRecord, snapshot: unknown) {
  const over = isTerminal(record.status);
  let error: Error | undefined;
  if (record.status === "failed" || record.status === "cancelled") {
    error = record.error ? deserializeError(record.error as SerializedError) : new CancelledError();
  }
  return {
    id,
    status: record.status,
    record,
    snapshot,
    result: record.status === "completed" ? (record.result as Out) : undefined,
    error,
    live: !over,
  };
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
