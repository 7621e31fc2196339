/**
 * Reads what the torture run's wipe diagnosis (`wipe.ts`) decides from: LevelDB's info logs of
 * the app origin's IndexedDB directory in the profile, and what Chromium logged since a fault
 * began when `FIBERLINE_CHROMIUM_LOG` keeps its log. Used by `engine.ts` after every fault.
 */

import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import type { AppSession } from "../../src/testing/index";
import type { LevelDbLog } from "./wipe";

/** Where a fault began: the time, and how far Chromium's own log (`FIBERLINE_CHROMIUM_LOG`) was. */
export interface FaultStart {
  at: number;
  chromiumLogBytes: number;
}

/** Notes where a fault begins: a log line written after this is from that fault or its relaunch. */
export function faultStart(): FaultStart {
  const file = process.env.FIBERLINE_CHROMIUM_LOG;
  return { at: Date.now(), chromiumLogBytes: file && existsSync(file) ? statSync(file).size : 0 };
}

/** What Chromium logged after `bytes` into `FIBERLINE_CHROMIUM_LOG`, when it keeps its log. */
export function chromiumLogSince(bytes: number): string | undefined {
  const file = process.env.FIBERLINE_CHROMIUM_LOG;
  if (!file || !existsSync(file)) return undefined;
  const length = Math.max(0, statSync(file).size - bytes);
  const buffer = Buffer.alloc(length);
  const fd = openSync(file, "r");
  try {
    readSync(fd, buffer, 0, length, bytes);
  } finally {
    closeSync(fd);
  }
  return buffer.toString("utf8");
}

/** LevelDB's info logs (`LOG`, `LOG.old`) of the origin's IndexedDB directory in the profile. */
export function levelDbLogs(app: AppSession, database: string): LevelDbLog[] {
  const dir = join(app.userDataDir, "Default", "IndexedDB", database);
  const logs: LevelDbLog[] = [];
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    if (!name.startsWith("LOG")) continue;
    try {
      logs.push({ name: `${database}/${name}`, text: readFileSync(join(dir, name), "utf8") });
    } catch {
      // Rotated away (LOG -> LOG.old) between the listing and the read: the next name has it.
    }
  }
  return logs;
}
