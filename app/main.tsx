/**
 * The demo page's entry: connects to the worker (registering it on the first visit), exposes the
 * client as `window.fiberline`, and renders the app, with designed states while connecting and
 * when Service Workers cannot run here.
 */

import { type ReactNode, StrictMode, useCallback, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { FiberlineError } from "../src/core/errors";
import { FiberlineProvider } from "../src/react/index";
import { connectDemo, type DemoClient } from "./client";
import { App } from "./ui/app";
import "./styles.css";

type Connection =
  | { state: "connecting" }
  | { state: "ready"; client: DemoClient }
  | { state: "failed"; code: string; message: string };

function Root(): ReactNode {
  const [connection, setConnection] = useState<Connection>({ state: "connecting" });
  const open = useCallback(() => {
    setConnection({ state: "connecting" });
    connectDemo().then(
      (client) => setConnection({ state: "ready", client }),
      (error: unknown) =>
        setConnection({
          state: "failed",
          code: error instanceof FiberlineError ? error.code : "connect_failed",
          message: error instanceof Error ? error.message : String(error),
        }),
    );
  }, []);
  useEffect(open, [open]);

  if (connection.state === "ready")
    return (
      <FiberlineProvider client={connection.client}>
        <App />
      </FiberlineProvider>
    );
  return (
    <div className="splash">
      <img src="/icons/icon-192.png" alt="" width="72" height="72" />
      <h1>Fiberline demo</h1>
      {connection.state === "connecting" ? (
        <p role="status" className="muted">
          <span className="spinner" aria-hidden="true" /> Starting the Service Worker that runs the fibers…
        </p>
      ) : (
        <div className="empty error" role="alert">
          <h2>The fibers cannot run here</h2>
          <p>{connection.message}</p>
          <p className="muted small">
            Error code <code>{connection.code}</code>. The demo needs Service Workers: use a current Chromium,
            Firefox or Safari on <code>localhost</code> or HTTPS, outside private browsing.
          </p>
          <button type="button" className="button primary" onClick={open}>
            Try again
          </button>
        </div>
      )}
    </div>
  );
}

const container = document.getElementById("root");
if (!container) throw new Error("index.html has no #root element.");
createRoot(container).render(
  <StrictMode>
    <Root />
  </StrictMode>,
);
