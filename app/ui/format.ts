/** Small formatters for ages, durations and JSON shown by the chat, inspector and lab. */

/** "4 s ago", "3 min ago", "2 h ago", "5 d ago". */
export function formatAge(at: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/** "85 ms", "1.2 s", "3 min 4 s". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** Pretty JSON that never throws (undefined, cycles, bigint). */
export function formatJson(value: unknown): string {
  if (value === undefined) return "undefined";
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `${v}n` : v), 2) ?? String(value);
  } catch {
    return String(value);
  }
}

/** The start of an id, for tables (the full id is in the row's title and the detail view). */
export function shortId(id: string, length = 10): string {
  return id.length > length + 1 ? `${id.slice(0, length)}…` : id;
}

/** "1 re-execution", "3 re-executions", "0 re-executions". */
export function plural(count: number, word: string): string {
  return `${count} ${count === 1 ? word : `${word}s`}`;
}
