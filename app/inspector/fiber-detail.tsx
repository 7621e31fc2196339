/**
 * One fiber, live: its record (status, version, age, recoveries, owner, generation), the step
 * journal with attempts and durations, the stash, buffered events and the tail of its stream.
 */

import { type ReactNode, useRef, useState } from "react";
import type { FiberEvent, JournalEntry } from "../../src/core/records";
import { isTerminal } from "../../src/core/records";
import { useFiberEvents } from "../../src/react/index";
import { useClient } from "../client";
import { formatAge, formatDuration, formatJson } from "../ui/format";
import { Skeleton } from "../ui/skeleton";
import { StatusBadge } from "../ui/status-badge";
import { usePoll } from "../ui/use-poll";

const TAIL = 40;

/** The last chunks of the fiber's stream, live, starting a little before the head it had when opened. */
function useStreamTail(fiberId: string, head: number | undefined): readonly FiberEvent[] {
  const from = useRef<number | null>(null);
  if (from.current === null && head !== undefined) from.current = Math.max(0, head - TAIL);
  const { events } = useFiberEvents(from.current === null ? null : fiberId, { after: from.current ?? 0 });
  return events.slice(-TAIL);
}

function JournalTable({ journal }: { journal: JournalEntry[] }): ReactNode {
  if (journal.length === 0) return <p className="muted">No journaled operation yet.</p>;
  return (
    <div className="table-wrap">
      <table className="journal-table">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Key</th>
            <th scope="col">Kind</th>
            <th scope="col">Status</th>
            <th scope="col">Attempt</th>
            <th scope="col">Duration</th>
            <th scope="col">Result</th>
          </tr>
        </thead>
        <tbody>
          {journal.map((entry) => (
            <tr key={entry.pos} data-testid="journal-row" data-status={entry.status}>
              <td className="num">{entry.pos}</td>
              <td>
                <code>{entry.key}</code>
              </td>
              <td>{entry.kind}</td>
              <td>
                <span className={`badge journal-${entry.status}`}>{entry.status}</span>
              </td>
              <td className={entry.attempt > 1 ? "num warn" : "num"}>{entry.attempt}</td>
              <td className="num">
                {entry.endedAt !== undefined ? formatDuration(entry.endedAt - entry.startedAt) : "…"}
              </td>
              <td className="result-cell">
                <code>
                  {entry.error
                    ? `${entry.error.code}: ${entry.error.message}`
                    : entry.status === "completed"
                      ? truncate(formatJson(entry.result).replace(/\s+/g, " "), 80)
                      : ""}
                </code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function FiberDetail({ fiberId }: { fiberId: string }): ReactNode {
  const client = useClient();
  const [ended, setEnded] = useState(false);
  const [cancelling, setCancelling] = useState(false);
  const inspection = usePoll(
    async () => {
      const result = await client.inspect(fiberId);
      if (isTerminal(result.record.status)) setEnded(true);
      return result;
    },
    ended ? 5000 : 700,
    [client, fiberId],
  );
  const tail = useStreamTail(fiberId, inspection.data?.streamHead);
  const data = inspection.data;

  if (!data) {
    return (
      <section className="panel fiber-detail" aria-label="Fiber detail">
        <a className="button small ghost back-link" href="#/inspector">
          ← All fibers
        </a>
        {inspection.error ? (
          <div className="empty error" role="alert">
            <h3>Could not inspect this fiber</h3>
            <p>{inspection.error}</p>
          </div>
        ) : (
          <Skeleton label="Loading fiber" rows={2} />
        )}
      </section>
    );
  }
  const { record } = data;
  const steps = data.journal.filter((e) => e.kind === "step");
  return (
    <section className="panel fiber-detail" aria-labelledby="detail-heading" data-testid="fiber-detail">
      <a className="button small ghost back-link" href="#/inspector">
        ← All fibers
      </a>
      <div className="panel-head">
        <h2 id="detail-heading">
          {record.name} <StatusBadge status={record.status} />
        </h2>
        {!isTerminal(record.status) && (
          <button
            type="button"
            className="button small danger"
            disabled={cancelling}
            onClick={async () => {
              setCancelling(true);
              try {
                await client.cancel(fiberId, "Cancelled in the inspector.");
              } finally {
                setCancelling(false);
              }
            }}
          >
            {cancelling ? "Cancelling…" : "Cancel fiber"}
          </button>
        )}
      </div>
      <dl className="facts">
        <div>
          <dt>Id</dt>
          <dd>
            <code>{record.id}</code>
          </dd>
        </div>
        <div>
          <dt>Version</dt>
          <dd>{record.version}</dd>
        </div>
        <div>
          <dt>Age</dt>
          <dd>
            {formatAge(record.createdAt)}
            {record.endedAt !== undefined && ` · ran ${formatDuration(record.endedAt - record.createdAt)}`}
          </dd>
        </div>
        <div>
          <dt>Recoveries</dt>
          <dd data-testid="recoveries">
            {record.recovery ? `${record.recovery.count} (last ${formatAge(record.recovery.at)})` : "0"}
          </dd>
        </div>
        <div>
          <dt>Stream position</dt>
          <dd data-testid="stream-head">seq {data.streamHead}</dd>
        </div>
        <div>
          <dt>Steps</dt>
          <dd>
            {steps.filter((s) => s.status === "completed").length} of {steps.length} completed
          </dd>
        </div>
        <div>
          <dt>Runner</dt>
          <dd>
            {data.active ? "running in this worker" : record.owner ? "claimed elsewhere or idle" : "none"} ·
            generation {record.generation}
          </dd>
        </div>
        {record.waitingFor && record.waitingFor.length > 0 && (
          <div>
            <dt>Waiting for</dt>
            <dd>
              <code>{record.waitingFor.join(", ")}</code>
            </dd>
          </div>
        )}
        {record.error && (
          <div className="full">
            <dt>Error</dt>
            <dd className="form-error">
              <code>{record.error.code}</code> {record.error.message}
            </dd>
          </div>
        )}
      </dl>
      <details open>
        <summary>
          <h3>Journal</h3> <span className="muted small">{data.journal.length} entries</span>
        </summary>
        <JournalTable journal={data.journal} />
      </details>
      <details>
        <summary>
          <h3>Stash</h3>{" "}
          <span className="muted small">
            {data.snapshotAt ? `saved ${formatAge(data.snapshotAt)}` : "none"}
          </span>
        </summary>
        <pre className="json-block">
          {data.snapshotAt ? formatJson(data.snapshot) : "This fiber never called ctx.stash()."}
        </pre>
      </details>
      <details>
        <summary>
          <h3>Input</h3>
        </summary>
        <pre className="json-block">{formatJson(record.input)}</pre>
      </details>
      {record.status === "completed" && (
        <details>
          <summary>
            <h3>Result</h3>
          </summary>
          <pre className="json-block">{formatJson(record.result)}</pre>
        </details>
      )}
      {data.inbox.length > 0 && (
        <details>
          <summary>
            <h3>Events</h3> <span className="muted small">{data.inbox.length}</span>
          </summary>
          <ul className="plain-list">
            {data.inbox.map((e) => (
              <li key={e.seq}>
                <code>{e.name}</code> {formatJson(e.payload).replace(/\s+/g, " ")}{" "}
                <span className="muted">{e.consumedBy === undefined ? "buffered" : "consumed"}</span>
              </li>
            ))}
          </ul>
        </details>
      )}
      <details open>
        <summary>
          <h3>Stream</h3>{" "}
          <span className="muted small">last {Math.min(TAIL, data.streamHead)} chunks, live</span>
        </summary>
        {/* Scrolls on its own, so it takes focus: keyboard users can scroll it too. */}
        {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be focusable (WCAG 2.1.1). */}
        <ol className="stream-tail" tabIndex={0} aria-label="The stream's last chunks">
          {tail.map((e) => (
            <li key={e.seq}>
              <span className="num muted">{e.seq}</span> <code className="chunk-type">{e.type}</code>{" "}
              <span className="chunk-data">{truncate(formatJson(e.data).replace(/\s+/g, " "), 120)}</span>
            </li>
          ))}
        </ol>
      </details>
    </section>
  );
}
