/**
 * Unit tests of the torture run's wipe diagnosis (`wipe.ts`): only every tracked fiber missing
 * together with a log line from this launch is Chromium's wipe; everything else stays a loss.
 */

import { describe, expect, test } from "vitest";
import { diagnoseWipe, freshWipeLine, leveldbDirName, type WipeClues } from "./wipe";

const DB = "http_localhost_5199.indexeddb.leveldb";
const DIR = `/tmp/fiberline-testing-x/Default/IndexedDB/${DB}`;
const LAUNCH = new Date(2026, 11, 5, 9, 25, 22, 500).getTime();

/** A LevelDB `LOG` line at `ms` (local time, as LevelDB writes it). */
function logLine(ms: number, text: string, digits = 3): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, "0");
  const fraction = String(d.getMilliseconds()).padStart(3, "0").padEnd(digits, "0");
  return `${d.getFullYear()}/${two(d.getMonth() + 1)}/${two(d.getDate())}-${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${fraction} cc7 ${text}`;
}

const created = (ms: number, digits?: number) =>
  logLine(ms, `Creating DB ${DIR} since it was missing.`, digits);
const reused = (ms: number) => logLine(ms, `Reusing MANIFEST ${DIR}/MANIFEST-000001`);

function clues(overrides: Partial<WipeClues>): WipeClues {
  return {
    tracked: ["a", "b", "c"],
    known: new Set(),
    since: LAUNCH,
    database: DB,
    logs: [{ name: "LOG", text: `${created(LAUNCH + 40)}\n${reused(LAUNCH + 44)}\n` }],
    ...overrides,
  };
}

describe("diagnoseWipe", () => {
  test("every tracked fiber missing and a Creating DB line from this launch: a wipe, all dropped", () => {
    expect(diagnoseWipe(clues({}))).toEqual({
      status: "wiped",
      dropped: ["a", "b", "c"],
      evidence: `LOG: ${created(LAUNCH + 40)}`,
    });
  });

  test("every tracked fiber missing without a Creating DB line: not a wipe", () => {
    const logs = [
      { name: "LOG", text: `${logLine(LAUNCH + 40, "Recovering log #35")}\n${reused(LAUNCH + 44)}\n` },
    ];
    expect(diagnoseWipe(clues({ logs }))).toMatchObject({ status: "not-wiped" });
    expect(diagnoseWipe(clues({ logs: [] }))).toMatchObject({ status: "not-wiped" });
  });

  test("some tracked fibers missing with a fresh Creating DB line: not a wipe", () => {
    expect(diagnoseWipe(clues({ known: new Set(["b"]) }))).toEqual({
      status: "not-wiped",
      reason: "the worker still knows 1 of the 3 tracked fibers",
    });
  });

  test("a Creating DB line from an earlier launch (in LOG or LOG.old): not a wipe", () => {
    const earlier = LAUNCH - 30_000;
    for (const name of ["LOG", "LOG.old"])
      expect(diagnoseWipe(clues({ logs: [{ name, text: `${created(earlier)}\n` }] }))).toMatchObject({
        status: "not-wiped",
      });
    // One millisecond before the fault began is still before it.
    expect(diagnoseWipe(clues({ logs: [{ name: "LOG", text: created(LAUNCH - 1) }] }))).toMatchObject({
      status: "not-wiped",
    });
  });

  test("a Creating DB line of another origin's database: not a wipe", () => {
    const other = logLine(LAUNCH + 40, `Creating DB ${DIR.replace("5199", "5629")} since it was missing.`);
    expect(diagnoseWipe(clues({ logs: [{ name: "LOG", text: other }] }))).toMatchObject({
      status: "not-wiped",
    });
  });

  test("no fiber tracked: not a wipe (a fresh profile creates its database too)", () => {
    expect(diagnoseWipe(clues({ tracked: [] }))).toMatchObject({ status: "not-wiped" });
  });

  test("Chromium's corruption-recovery line since the launch, naming the database, is evidence too", () => {
    const chromiumLog = [
      `[1:2:1205/092522.600000:ERROR:content/browser/indexed_db/instance/leveldb/backing_store.cc:237] Failed to open LevelDB database from ${DIR},Corruption: checksum mismatch`,
      "[1:2:1205/092522.610000:ERROR:content/browser/indexed_db/instance/leveldb/backing_store.cc:1502] IndexedDB recovering from a corrupted (and deleted) database.",
    ].join("\n");
    expect(diagnoseWipe(clues({ logs: [], chromiumLog }))).toMatchObject({
      status: "wiped",
      evidence: expect.stringContaining("IndexedDB recovering from a corrupted (and deleted) database"),
    });
    expect(
      diagnoseWipe(clues({ logs: [], chromiumLog: chromiumLog.replaceAll(DB, "http_localhost_5629.x") })),
    ).toMatchObject({ status: "not-wiped" });
  });
});

describe("freshWipeLine", () => {
  test("reads LevelDB's microsecond timestamps as well as Chromium's milliseconds", () => {
    const line = created(LAUNCH + 7, 6);
    expect(freshWipeLine({ since: LAUNCH, database: DB, logs: [{ name: "LOG", text: line }] })).toBe(
      `LOG: ${line}`,
    );
  });
});

describe("leveldbDirName", () => {
  test("names an origin's IndexedDB directory as Chromium does", () => {
    expect(leveldbDirName("http://localhost:5199")).toBe(DB);
    expect(leveldbDirName("https://example.com")).toBe("https_example.com_0.indexeddb.leveldb");
  });
});
