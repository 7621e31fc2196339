/** Polls an async source while mounted (and the tab is visible), for the live inspector and lab. */

import { useEffect, useRef, useState } from "react";

export interface Polled<T> {
  data: T | undefined;
  error: string | null;
  /** True until the first answer (or failure). */
  loading: boolean;
}

/** Calls `load` now and every `intervalMs` while `enabled`; `deps` restart it. */
export function usePoll<T>(
  load: () => Promise<T>,
  intervalMs: number,
  deps: readonly unknown[],
  enabled = true,
): Polled<T> {
  const [state, setState] = useState<Polled<T>>({ data: undefined, error: null, loading: true });
  const loader = useRef(load);
  loader.current = load;
  // A new source starts empty; a new interval (or pausing) keeps what is shown, so nothing flashes.
  useEffect(() => {
    setState({ data: undefined, error: null, loading: true });
  }, [...deps]);
  useEffect(() => {
    if (!enabled) return;
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        const data = await loader.current();
        if (live) setState({ data, error: null, loading: false });
      } catch (error) {
        if (live)
          setState((s) => ({
            ...s,
            error: error instanceof Error ? error.message : String(error),
            loading: false,
          }));
      }
      if (live) timer = setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [...deps, enabled, intervalMs]);
  return state;
}
