/**
 * The React context that holds the page's `FiberlineClient`: `FiberlineProvider` either takes a
 * client you connected yourself or connects on mount; the hooks read it with `useFiberlineClient`.
 */

import { createContext, createElement, type ReactNode, useContext, useEffect, useRef, useState } from "react";
import { type ConnectOptions, connect, type FiberlineClient, type FiberMap } from "../client/client";
import { FiberlineError } from "../core/errors";

/** What the provider shares: the client once connected, or why connecting failed. */
export interface FiberlineConnection<F extends FiberMap = FiberMap> {
  client: FiberlineClient<F> | null;
  error: unknown;
}

const Context = createContext<FiberlineConnection | null>(null);

/** Props of {@link FiberlineProvider}. */
export interface FiberlineProviderProps {
  /** A client you connected yourself (the provider does not close it). */
  client?: FiberlineClient<FiberMap>;
  /** Without `client`: connect with these options on mount, close on unmount. */
  options?: ConnectOptions;
  children?: ReactNode;
}

/**
 * Makes a Fiberline client available to the hooks below it.
 *
 * @example
 * createRoot(el).render(
 *   <FiberlineProvider options={{ scriptUrl: "/sw.js", registerOptions: { type: "module" } }}>
 *     <App />
 *   </FiberlineProvider>,
 * );
 */
export function FiberlineProvider(props: FiberlineProviderProps): ReactNode {
  const { client, options } = props;
  const [connection, setConnection] = useState<FiberlineConnection>({
    client: client ?? null,
    error: undefined,
  });
  // Options are read once per mount: a new object every render must not reconnect.
  const optionsRef = useRef(options);
  optionsRef.current = options;
  useEffect(() => {
    if (client) {
      setConnection({ client, error: undefined });
      return;
    }
    let cancelled = false;
    const pending = connect(optionsRef.current);
    pending.then(
      (connected) => (cancelled ? connected.close() : setConnection({ client: connected, error: undefined })),
      (error: unknown) => {
        if (!cancelled) setConnection({ client: null, error });
      },
    );
    return () => {
      cancelled = true;
      pending.then(
        (connected) => connected.close(),
        () => {},
      );
    };
  }, [client]);
  return createElement(Context.Provider, { value: connection }, props.children);
}

/** The connection state of the nearest provider: `{ client, error }` (client is null while connecting). */
export function useFiberlineConnection<F extends FiberMap = FiberMap>(): FiberlineConnection<F> {
  const connection = useContext(Context);
  if (!connection) {
    throw new FiberlineError(
      "invalid_argument",
      "Fiberline hooks need a <FiberlineProvider> above them in the tree.",
    );
  }
  return connection as FiberlineConnection<F>;
}

/** The nearest provider's client, or null while it connects. */
export function useFiberlineClient<F extends FiberMap = FiberMap>(): FiberlineClient<F> | null {
  return useFiberlineConnection<F>().client;
}
