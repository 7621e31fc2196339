/**
 * The fiber inspector: every fiber the worker keeps (status, name, version, age, recoveries,
 * stream position), live; and one fiber's record, journal, stash, inbox and stream tail.
 */

import { type ReactNode, useMemo, useState } from "react";
import type { FiberStatus } from "../../src/core/records";
import { listConversations } from "../chat/conversations";
import { useClient } from "../client";
import { href } from "../router";
import { formatAge, shortId } from "../ui/format";
import { Skeleton } from "../ui/skeleton";
import { StatusBadge } from "../ui/status-badge";
import { usePoll } from "../ui/use-poll";
import { FiberDetail } from "./fiber-detail";
import { summarizeFiber } from "./fiber-summary";

const FILTERS: Array<{ label: string; statuses?: FiberStatus[] }> = [
  { label: "All" },
  { label: "Live", statuses: ["running", "sleeping", "waiting"] },
  { label: "Completed", statuses: ["completed"] },
  { label: "Failed or cancelled", statuses: ["failed", "cancelled"] },
];

function FiberWhat({ summary }: { summary: ReturnType<typeof summarizeFiber> }): ReactNode {
  const full = summary.context ? `${summary.what} ${summary.context}` : summary.what;
  return (
    <td className="col-what" title={full} data-testid="fiber-what">
      <span className="what">{summary.what}</span>
      {summary.context && <span className="what-context">{summary.context}</span>}
    </td>
  );
}

export function InspectorPage({ fiberId }: { fiberId: string | undefined }): ReactNode {
  const client = useClient();
  const [filter, setFilter] = useState(0);
  const [name, setName] = useState("");
  const fibers = usePoll(() => client.list(), 1000, [client]);
  const rows = useMemo(() => {
    const statuses = FILTERS[filter]?.statuses;
    return (fibers.data ?? [])
      .filter((f) => !statuses || statuses.includes(f.status))
      .filter((f) => name === "" || f.name === name)
      .sort((a, b) => b.createdAt - a.createdAt);
  }, [fibers.data, filter, name]);
  // Conversation titles, so an assistant row can say which conversation it answered.
  const conversations = usePoll(() => listConversations(), 5000, []);
  const titles = useMemo(
    () => new Map((conversations.data ?? []).map((c) => [c.id, c.title] as const)),
    [conversations.data],
  );
  const names = useMemo(() => [...new Set((fibers.data ?? []).map((f) => f.name))].sort(), [fibers.data]);

  return (
    <div className={`inspector-layout${fiberId ? " has-detail" : ""}`}>
      <section className="panel fiber-list-panel" aria-labelledby="fibers-heading">
        <div className="panel-head">
          <h2 id="fibers-heading">
            Fibers{" "}
            <span className="muted small">
              {fibers.data ? `${rows.length} of ${fibers.data.length}` : ""}
            </span>
          </h2>
          <span className="live-note">
            <span className="dot live" aria-hidden="true" /> live
          </span>
        </div>
        <div className="filters">
          <fieldset className="segmented">
            <legend className="sr-only">Status</legend>
            {FILTERS.map((f, i) => (
              <label key={f.label} className={i === filter ? "active" : ""}>
                <input
                  type="radio"
                  name="status-filter"
                  checked={i === filter}
                  onChange={() => setFilter(i)}
                />
                {f.label}
              </label>
            ))}
          </fieldset>
          <label className="inline-field">
            <span>Name</span>
            <select value={name} onChange={(e) => setName(e.target.value)}>
              <option value="">any</option>
              {names.map((n) => (
                <option key={n} value={n}>
                  {n}
                </option>
              ))}
            </select>
          </label>
        </div>
        {fibers.error && !fibers.data ? (
          <div className="empty error" role="alert">
            <h3>Could not list fibers</h3>
            <p>{fibers.error}</p>
          </div>
        ) : fibers.loading ? (
          <Skeleton label="Loading fibers" />
        ) : rows.length === 0 ? (
          <div className="empty">
            <h3>No fibers {fibers.data?.length ? "match" : "yet"}</h3>
            <p>
              Send a chat message or start a lab fiber in the <a href="#/lab">crash lab</a>; each one appears
              here as it runs.
            </p>
          </div>
        ) : (
          <div className="table-wrap">
            <table className="fiber-table">
              <thead>
                <tr>
                  <th scope="col">Status</th>
                  <th scope="col">Name</th>
                  <th scope="col" className="col-what">
                    What
                  </th>
                  <th scope="col" className="col-optional">
                    Id
                  </th>
                  <th scope="col" className="col-optional">
                    <abbr title="Version">Ver.</abbr>
                  </th>
                  <th scope="col">Age</th>
                  <th scope="col" className="num">
                    <abbr title="Recoveries: times the fiber was recovered after its runner was lost">
                      Recov.
                    </abbr>
                  </th>
                  <th scope="col" className="num">
                    <abbr title="Stream position: highest sequence number in the fiber's durable stream">
                      Stream
                    </abbr>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rows.map((f) => (
                  <tr
                    key={f.id}
                    data-testid="fiber-row"
                    data-fiber-id={f.id}
                    data-status={f.status}
                    className={f.id === fiberId ? "selected" : ""}
                  >
                    <td>
                      <StatusBadge status={f.status} />
                    </td>
                    <td>
                      <a
                        href={href({ page: "inspector", fiberId: f.id })}
                        aria-current={f.id === fiberId ? "true" : undefined}
                      >
                        {f.name}
                      </a>
                    </td>
                    <FiberWhat summary={summarizeFiber(f, titles)} />
                    <td className="col-optional">
                      <code title={f.id}>{shortId(f.id)}</code>
                    </td>
                    <td className="col-optional">{f.version}</td>
                    <td>{formatAge(f.createdAt)}</td>
                    <td className={f.recovery ? "num warn" : "num"}>{f.recovery?.count ?? 0}</td>
                    <td className="num">{f.streamHead}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      {fiberId ? (
        <FiberDetail key={fiberId} fiberId={fiberId} />
      ) : (
        <section className="panel detail-placeholder">
          <div className="empty">
            <h3>Pick a fiber</h3>
            <p>
              Its record, step journal (attempts, durations), stash and stream appear here and update live.
            </p>
          </div>
        </section>
      )}
    </div>
  );
}
