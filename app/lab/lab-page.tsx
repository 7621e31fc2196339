/**
 * The crash lab: ways to interrupt the app (reload, close the tab, stop the worker, kill the
 * browser), each with what it shows, and the lab fibers to watch through them: `lab.ticker`
 * (a stream of ticks) and `lab.effects` (side effects counted by idempotency key).
 */

import { type ReactNode, useState } from "react";
import type { FiberRecord } from "../../src/core/records";
import { useFiberEvents } from "../../src/react/index";
import { useClient } from "../client";
import { href } from "../router";
import { demoApi } from "../shared/demo-api";
import { formatAge, plural, shortId } from "../ui/format";
import { StatusBadge } from "../ui/status-badge";
import { usePoll } from "../ui/use-poll";

function WorkerCard(): ReactNode {
  const client = useClient();
  const beat = usePoll(() => client.heartbeat(), 2000, [client]);
  return (
    <section className="panel" aria-labelledby="worker-heading">
      <h2 id="worker-heading">The Service Worker</h2>
      {beat.data ? (
        <dl className="facts">
          <div>
            <dt>Instance</dt>
            <dd>
              <code data-testid="worker-instance">{beat.data.instanceId.slice(0, 8)}</code>
            </dd>
          </div>
          <div>
            <dt>Started</dt>
            <dd>{formatAge(beat.data.startedAt)}</dd>
          </div>
          <div>
            <dt>Running fibers</dt>
            <dd>{beat.data.active}</dd>
          </div>
        </dl>
      ) : beat.error ? (
        <p className="form-error">The worker did not answer: {beat.error}</p>
      ) : (
        <p className="muted">Asking the worker…</p>
      )}
      <p className="muted small">
        A new instance id means the worker was stopped and started again: every fiber it was running was
        recovered from IndexedDB.
      </p>
    </section>
  );
}

function InterruptCard(): ReactNode {
  return (
    <section className="panel" aria-labelledby="interrupt-heading">
      <h2 id="interrupt-heading">Interrupt the app</h2>
      <div className="lab-actions">
        <div className="lab-action">
          <button type="button" className="button" onClick={() => window.location.reload()}>
            Reload this page
          </button>
          <p>
            The page goes away, the worker keeps running the fibers. The new page reads each stream again from
            its last chunk, and the chat shows a <em>resumed</em> marker on a reply that kept going.
          </p>
        </div>
        <div className="lab-action">
          <a className="button" href={window.location.href} target="_blank" rel="noopener">
            Open in a new tab
          </a>
          <p>
            Then close this tab (<kbd>Ctrl</kbd>+<kbd>W</kbd> / <kbd>⌘</kbd>+<kbd>W</kbd>; pages cannot close
            tabs they did not open). Fibers keep running with no page at all; the new tab shows where they got
            to.
          </p>
        </div>
      </div>
      <details className="lab-howto">
        <summary>
          <h3>Stop the Service Worker</h3>
          <span className="muted small">from the browser: a page cannot</span>
        </summary>
        <p>
          A page cannot stop its own Service Worker: there is no web API for it (
          <code>registration.unregister()</code> removes the worker for future loads, it does not stop the
          running one, and would lose the app its host). Stop it from the browser instead:
        </p>
        <ol className="steps">
          <li>
            Open <code>chrome://serviceworker-internals</code> (or DevTools → Application → Service Workers),
            find <code>{window.location.origin}</code> and press <strong>Stop</strong> while a fiber runs.
          </li>
          <li>
            Or close every tab of this app: with no page reading a stream, Chromium stops the idle worker
            after about 30 seconds, mid-fiber.
          </li>
          <li>Or kill the browser process outright (a crash); start it again on the same profile.</li>
        </ol>
        <p>
          Then come back (any page load starts the worker again). The worker gets a new instance id above, the
          fibers it was running get a <code>fiber.recovered</code> chunk and continue from their journal:
          completed steps are not run again and every chunk reaches the page exactly once. Automated, this is{" "}
          <code>ServiceWorker.stopAllWorkers</code> over the DevTools protocol (see{" "}
          <code>fiberline/testing</code>).
        </p>
      </details>
    </section>
  );
}

function useLabRuns(name: string): FiberRecord[] {
  const client = useClient();
  const runs = usePoll(() => client.list(), 1000, [client]);
  return (runs.data ?? []).filter((f) => f.name === name).sort((a, b) => b.createdAt - a.createdAt);
}

function TickerProgress({ fiber }: { fiber: FiberRecord }): ReactNode {
  const { events } = useFiberEvents(fiber.id);
  const ticks = events.filter((e) => e.type === "tick").length;
  const recoveries = events.filter((e) => e.type === "fiber.recovered").length;
  const total = (fiber.input as { count?: number }).count ?? 0;
  return (
    <li className="run" data-testid="lab-run" data-fiber-id={fiber.id}>
      <div className="run-head">
        <a href={href({ page: "inspector", fiberId: fiber.id })}>
          <code>{shortId(fiber.id)}</code>
        </a>
        <StatusBadge status={fiber.status} />
        {recoveries > 0 && <span className="resumed-marker">↻ recovered ×{recoveries}</span>}
      </div>
      <progress max={Math.max(total, 1)} value={ticks} aria-label={`Ticks of ${fiber.id}`} />
      <span className="muted small" data-testid="tick-count">
        {ticks} / {total} ticks
      </span>
    </li>
  );
}

/** The start form both lab cards share: how many, how slow, and the error of the last start. */
function LabStartForm(props: {
  fiber: "lab.ticker" | "lab.effects";
  countLabel: string;
  intervalLabel: string;
  initial: { count: number; intervalMs: number };
  submitLabel: string;
  submitTestId: string;
}): ReactNode {
  const client = useClient();
  const [count, setCount] = useState(props.initial.count);
  const [intervalMs, setIntervalMs] = useState(props.initial.intervalMs);
  const [problem, setProblem] = useState<string | null>(null);
  return (
    <>
      <form
        className="lab-form"
        onSubmit={async (e) => {
          e.preventDefault();
          setProblem(null);
          try {
            await client.start(props.fiber, { count, intervalMs });
          } catch (error) {
            setProblem(error instanceof Error ? error.message : String(error));
          }
        }}
      >
        <label className="field">
          <span>{props.countLabel}</span>
          <input
            type="number"
            min={1}
            max={5000}
            value={count}
            onChange={(e) => setCount(Number(e.target.value))}
          />
        </label>
        <label className="field">
          <span>{props.intervalLabel}</span>
          <input
            type="number"
            min={0}
            max={10000}
            step="any"
            value={intervalMs}
            onChange={(e) => setIntervalMs(Number(e.target.value))}
          />
        </label>
        <button type="submit" className="button primary" data-testid={props.submitTestId}>
          {props.submitLabel}
        </button>
      </form>
      {problem && (
        <p className="form-error" role="alert">
          {problem}
        </p>
      )}
    </>
  );
}

function TickerCard(): ReactNode {
  const runs = useLabRuns("lab.ticker").slice(0, 5);
  return (
    <section className="panel" aria-labelledby="ticker-heading">
      <h2 id="ticker-heading">
        <code>lab.ticker</code>: a durable stream
      </h2>
      <p>
        Each tick is a journaled step followed by a <code>tick</code> chunk. Interrupt it any way above: the
        progress bar never skips or repeats a tick, and no finished step runs again.
      </p>
      <LabStartForm
        fiber="lab.ticker"
        countLabel="Ticks"
        intervalLabel="Step duration (ms)"
        initial={{ count: 50, intervalMs: 200 }}
        submitLabel="Start ticker"
        submitTestId="start-ticker"
      />
      {runs.length === 0 ? (
        <p className="muted">No ticker yet.</p>
      ) : (
        <ul className="runs">
          {runs.map((f) => (
            <TickerProgress key={f.id} fiber={f} />
          ))}
        </ul>
      )}
    </section>
  );
}

function EffectsRun({ fiber }: { fiber: FiberRecord }): ReactNode {
  const counts = usePoll(() => demoApi.effects(fiber.id), 1000, [fiber.id]);
  const total = (fiber.input as { count?: number }).count ?? 0;
  const c = counts.data;
  return (
    <li className="run" data-testid="lab-run" data-fiber-id={fiber.id}>
      <div className="run-head">
        <a href={href({ page: "inspector", fiberId: fiber.id })}>
          <code>{shortId(fiber.id)}</code>
        </a>
        <StatusBadge status={fiber.status} />
      </div>
      <progress max={Math.max(total, 1)} value={c?.keys ?? 0} aria-label={`Effects of ${fiber.id}`} />
      {c ? (
        <span className="small" data-testid="effect-counts">
          {c.keys} / {total} effects · {plural(c.executions, "execution")} ·{" "}
          <span className={c.reExecutions > 0 ? "warn" : ""}>{plural(c.reExecutions, "re-execution")}</span>
        </span>
      ) : (
        <span className="muted small">{counts.error ?? "Counting…"}</span>
      )}
    </li>
  );
}

function EffectsCard(): ReactNode {
  const runs = useLabRuns("lab.effects").slice(0, 5);
  return (
    <section className="panel" aria-labelledby="effects-heading">
      <h2 id="effects-heading">
        <code>lab.effects</code>: side effects, once
      </h2>
      <p>
        Each step writes a side effect to a separate ledger under its <code>idempotencyKey</code>, then waits.
        Stop the worker or kill the browser mid-step: the interrupted step runs again with the same key (a{" "}
        <em>re-execution</em>), the ledger applies its effect once, and completed steps never run again.
      </p>
      <LabStartForm
        fiber="lab.effects"
        countLabel="Effects"
        intervalLabel="Wait after each (ms)"
        initial={{ count: 20, intervalMs: 300 }}
        submitLabel="Start effects"
        submitTestId="start-effects"
      />
      {runs.length === 0 ? (
        <p className="muted">No effects run yet.</p>
      ) : (
        <ul className="runs">
          {runs.map((f) => (
            <EffectsRun key={f.id} fiber={f} />
          ))}
        </ul>
      )}
    </section>
  );
}

export function LabPage(): ReactNode {
  return (
    <div className="page lab-page">
      <header className="page-head">
        <h1>Crash lab</h1>
        <p>Break things on purpose and watch the fibers carry on.</p>
      </header>
      {/* The fibers to start come first, so their controls are in view on a laptop screen. */}
      <div className="lab-grid">
        <TickerCard />
        <EffectsCard />
        <InterruptCard />
        <WorkerCard />
      </div>
    </div>
  );
}
