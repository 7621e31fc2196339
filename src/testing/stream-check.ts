/**
 * The reader-side exactly-once check: given the chunks a reader saw, which seqs were lost,
 * duplicated or seen out of order, and whether the stream ended. Pure; used by `AppSession`'s
 * followers, the crash suite and anyone asserting on `readEvents` output.
 */

import type { FiberEvent } from "../core/records";

/** What {@link checkStream} found. Every list is empty for a correct stream. */
export interface StreamReport {
  /** Seqs in `after+1 .. highest seen` that never arrived. */
  lost: number[];
  /** Seqs that arrived more than once (listed once per extra copy). */
  duplicated: number[];
  /** Seqs that arrived after a higher seq had. */
  reordered: number[];
  /** Whether the last chunk is `fiber.end` (always the last chunk of a finished fiber). */
  ended: boolean;
  /** Chunks that arrived after `fiber.end`. */
  afterEnd: number;
  /** `fiber.end`'s `status`, when it ended. */
  status?: string;
  /** The highest seq seen (`after` when none). */
  lastSeq: number;
}

/**
 * Checks a reader's log against the stream contract: seq `after+1, after+2, ...` each exactly
 * once, in order, `fiber.end` last.
 *
 * @example
 * const report = checkStream(await app.readEvents(id));
 * expect(report).toMatchObject({ lost: [], duplicated: [], reordered: [], ended: true });
 */
export function checkStream(events: readonly FiberEvent[], options: { after?: number } = {}): StreamReport {
  const after = options.after ?? 0;
  const seen = new Set<number>();
  const duplicated: number[] = [];
  const reordered: number[] = [];
  let highest = after;
  let endIndex = -1;
  events.forEach((event, index) => {
    if (seen.has(event.seq) || event.seq <= after) duplicated.push(event.seq);
    else if (event.seq < highest) reordered.push(event.seq);
    seen.add(event.seq);
    highest = Math.max(highest, event.seq);
    if (event.type === "fiber.end" && endIndex === -1) endIndex = index;
  });
  const lost: number[] = [];
  for (let seq = after + 1; seq <= highest; seq++) if (!seen.has(seq)) lost.push(seq);
  const last = events.at(-1);
  const end = endIndex === -1 ? undefined : events[endIndex];
  const status = (end?.data as { status?: unknown } | undefined)?.status;
  return {
    lost,
    duplicated,
    reordered,
    ended: last?.type === "fiber.end",
    afterEnd: endIndex === -1 ? 0 : events.length - endIndex - 1,
    ...(typeof status === "string" ? { status } : {}),
    lastSeq: highest,
  };
}

/** True when `report` shows no lost, duplicated or reordered chunk and nothing after `fiber.end`. */
export function isExactlyOnce(report: StreamReport): boolean {
  return (
    report.lost.length === 0 &&
    report.duplicated.length === 0 &&
    report.reordered.length === 0 &&
    report.afterEnd === 0
  );
}
