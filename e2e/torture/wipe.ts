/**
 * Tells Chromium's wipe of an origin's whole IndexedDB after a SIGKILL (docs/security.md, "Why
 * Chromium wipes an origin's IndexedDB after a SIGKILL") apart from fibers Fiberline lost. Pure:
 * `engine.ts` reads the profile's LevelDB logs, Chromium's own log and the worker's fiber list,
 * and this module decides. The torture run excuses nothing it does not call a wipe.
 */

import type { FaultKind } from "./schedule";

/**
 * Chromium wiped the origin's whole IndexedDB at a launch (docs/security.md): every fiber tracked
 * since the last wipe was gone, and a log showed the database created afresh.
 */
export interface WipeRecord {
  /** The fault after which it was found. */
  fault: number;
  kind: FaultKind;
  /** Fibers dropped unjudged (their streams had passed the prefix check up to the wipe). */
  dropped: string[];
  /** Finished fibers judged before the wipe (their verdicts stand). */
  judged: number;
  /** The log line that shows it. */
  evidence: string;
}

/** One wipe as the report says it. */
export function wipeLine(wipe: WipeRecord): string {
  return `Chromium wiped the origin's IndexedDB (${wipe.evidence}); ${wipe.dropped.length} fiber(s) dropped unjudged, their streams whole up to the wipe (${wipe.judged} judged before it stand); the run goes on with new fibers`;
}

/** A LevelDB info log of the origin's database directory (`LOG` or `LOG.old`). */
export interface LevelDbLog {
  name: string;
  text: string;
}

/** What {@link diagnoseWipe} decides from. */
export interface WipeClues {
  /** Ids of the fibers tracked since the last wipe (finished ones included). */
  tracked: readonly string[];
  /** Ids of the fibers the worker knows now. */
  known: ReadonlySet<string>;
  /** When the fault (and so the launch it may have caused) began, ms since the epoch. */
  since: number;
  /** The origin's LevelDB directory name, from {@link leveldbDirName}. */
  database: string;
  /** The LevelDB info logs of that directory. */
  logs: readonly LevelDbLog[];
  /** What Chromium logged since `since`, when `FIBERLINE_CHROMIUM_LOG` keeps its log. */
  chromiumLog?: string;
}

/** Whether the fibers went missing because Chromium wiped the database, and the evidence. */
export type WipeDiagnosis =
  | { status: "wiped"; dropped: string[]; evidence: string }
  | { status: "not-wiped"; reason: string };

/** LevelDB's first line in a database directory it had to create. */
const CREATED =
  /^(?<date>\d{4}\/\d{2}\/\d{2})-(?<time>\d{2}:\d{2}:\d{2})\.(?<fraction>\d+) \S+ Creating DB (?<dir>.+) since it was missing\.?$/;
/** Chromium's line when it deleted a backing store it found corrupt (`backing_store.cc`). */
const RECOVERED = "IndexedDB recovering from a corrupted (and deleted) database";

/** The directory Chromium keeps `origin`'s IndexedDB in: `http_localhost_5199.indexeddb.leveldb`. */
export function leveldbDirName(origin: string): string {
  const url = new URL(origin);
  return `${url.protocol.replace(":", "")}_${url.hostname}_${url.port || "0"}.indexeddb.leveldb`;
}

/**
 * The log line that shows the origin's database was created afresh at or after `since`: LevelDB's
 * `Creating DB <dir> since it was missing` (its timestamp is the local time of the machine), or
 * Chromium's corruption-recovery line when its log since `since` also names the database.
 */
export function freshWipeLine(clues: Omit<WipeClues, "tracked" | "known">): string | undefined {
  for (const log of clues.logs) {
    for (const line of log.text.split("\n")) {
      const { date, time, fraction, dir } = CREATED.exec(line.trim())?.groups ?? {};
      if (!date || !time || !fraction || !dir?.endsWith(clues.database)) continue;
      // Local time, as LevelDB writes it; microseconds (LevelDB) or milliseconds (Chromium's env).
      const at = new Date(`${date.replaceAll("/", "-")}T${time}.${fraction.padEnd(3, "0").slice(0, 3)}`);
      if (at.getTime() >= clues.since) return `${log.name}: ${line.trim()}`;
    }
  }
  const chromium = clues.chromiumLog ?? "";
  const recovered = chromium.split("\n").find((line) => line.includes(RECOVERED));
  if (recovered && chromium.includes(clues.database)) return `Chromium's log: ${recovered.trim()}`;
  return undefined;
}

/**
 * A wipe only when every tracked fiber is missing AND a log shows the database was created
 * afresh since the fault began; anything less is not one (a real loss must fail the run).
 */
export function diagnoseWipe(clues: WipeClues): WipeDiagnosis {
  if (clues.tracked.length === 0) return { status: "not-wiped", reason: "no fiber was tracked" };
  const kept = clues.tracked.filter((id) => clues.known.has(id));
  if (kept.length > 0)
    return {
      status: "not-wiped",
      reason: `the worker still knows ${kept.length} of the ${clues.tracked.length} tracked fibers`,
    };
  const evidence = freshWipeLine(clues);
  if (!evidence)
    return {
      status: "not-wiped",
      reason: `no log shows ${clues.database} created afresh since the fault began`,
    };
  return { status: "wiped", dropped: [...clues.tracked], evidence };
}
