#!/usr/bin/env node
/**
 * `node e2e/crash/torn-log.mjs [--port 5631] [--rounds 3]`: replays, on purpose, the sequence that
 * `wipe-hunt.mjs` caught Chromium's LevelDB in when it deleted an origin's whole IndexedDB after
 * SIGKILLs. A kill between the two `write()`s of one log record (Chromium's LevelDB env writes a
 * record's 7-byte header and its payload separately) leaves a header with no payload at the end of
 * the write-ahead log. This script makes that state by hand (the profile is killed under write
 * load, then its newest `.log` is truncated to 7 bytes past the start of its last record), launches
 * the browser on it under write load and kills it again, then launches a third time and counts the
 * fibers. Controls: the same log cut at a record boundary instead (a clean cut), and the same torn
 * log under `--enable-low-end-device-mode`, in which Chromium's LevelDB does not reuse the old
 * log at open. Prints one line per round and the LevelDB / Chromium lines that explain it.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { crash, killGroup, launchChromium, serveFixture } from "./kill-loop.mjs";
import { scanLog } from "./leveldb-log-check.mjs";

const { values } = parseArgs({
  options: { port: { type: "string", default: "5631" }, rounds: { type: "string", default: "3" } },
});
const origin = `http://localhost:${values.port}`;
const say = (line) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
const children = [];
let current;
process.on("SIGINT", () => {
  for (const pid of [...children.map((c) => c.pid), current?.pid]) if (pid) killGroup(pid);
  process.exit(130);
});

async function main() {
  const server = await serveFixture(values.port);
  children.push(server);
  const tally = {};
  for (let round = 1; round <= Number(values.rounds); round++) {
    for (const [name, cut, lowEnd] of [
      ["torn header", "header", false],
      ["clean cut", "boundary", false],
      ["torn header, low-end mode", "header", true],
    ]) {
      const outcome = await trial(cut, lowEnd);
      tally[name] ??= { wiped: 0, kept: 0 };
      tally[name][outcome.wiped ? "wiped" : "kept"]++;
      say(`round ${round}, ${name}: ${outcome.line}`);
      for (const detail of outcome.details) say(`    ${detail}`);
    }
  }
  say(`summary: ${JSON.stringify(tally)}`);
  killGroup(server.pid);
}

/** One profile: write and kill, cut the log, write and kill again, then count what is left. */
async function trial(cut, lowEnd) {
  const profile = mkdtempSync(join(tmpdir(), "fiberline-torn-"));
  const extra = lowEnd ? ["--enable-low-end-device-mode"] : [];
  try {
    const first = await launch(profile, extra);
    const written = await load(first, true);
    await crash(first);
    const dir = join(profile, "Default/IndexedDB", `http_localhost_${values.port}.indexeddb.leveldb`);
    const logName = readdirSync(dir)
      .filter((f) => f.endsWith(".log"))
      .sort()
      .at(-1);
    const logPath = join(dir, logName);
    const records = scanLog(readFileSync(logPath)).filter((r) => r.state === "ok");
    const last = records.at(-1);
    // A header with no payload, as a kill between the two writes of that record leaves it; or
    // the same log cut cleanly before that record.
    truncateSync(logPath, cut === "header" ? last.offset + 7 : last.offset);

    const second = await launch(profile, extra);
    const afterFirst = await load(second, true);
    await crash(second);
    const secondLog = readFileSync(join(dir, "LOG"), "utf8");
    const reused = secondLog.includes(`Reusing old log ${logPath}`);
    const logsAfterSecond = readdirSync(dir).filter((f) => f.endsWith(".log"));

    const third = await launch(profile, extra);
    const afterSecond = await load(third, false);
    await crash(third);
    const corruption = third.stderr
      .split("\n")
      .filter((l) => /indexed_db.*(Failed to open|corrupt)/i.test(l));
    const wiped = afterSecond.count === 0 && afterFirst.count > 0;
    return {
      wiped,
      line: `fibers ${written.count} -> ${afterFirst.count} -> ${afterSecond.count}${wiped ? " (WIPED)" : ""}; storage health ${afterSecond.health}; second launch ${reused ? "reused" : "did not reuse"} ${logName}`,
      details: [
        ...corruption.map((l) => l.replace(/^\[[^\]]*\]\s*/, "").slice(0, 220)),
        `logs after the second launch: ${logsAfterSecond.join(", ")}; ${secondLog.split("\n").filter((l) => /Level-0|Delete type=0|Recovering/.test(l)).length} flush/recovery lines in its LevelDB LOG`,
      ],
    };
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

/** Opens the fixture, counts its fibers, and with `write` starts three tickers and lets them write. */
async function load(browser, write) {
  const page = await browser.context.newPage();
  await page.goto(`${origin}/`);
  const count = await page.evaluate(async (start) => {
    const client = await window.fx.client();
    const before = (await client.list()).length;
    if (start)
      for (let i = 0; i < 3; i++)
        window.fx.read((await client.start("ticker", { ticks: 400, intervalMs: 2 })).id);
    return before + (start ? 3 : 0);
  }, write);
  if (write) {
    await new Promise((r) => setTimeout(r, 1_500));
    return { count };
  }
  // What the worker's watchStorage says about the database (store_lost after a wipe).
  let health;
  for (let i = 0; i < 50 && health === undefined; i++) {
    health = await page.evaluate(() => window.fx.healths().at(-1));
    if (health === undefined) await new Promise((r) => setTimeout(r, 100));
  }
  return {
    count,
    health: health ? `${health.state}${health.lost.length ? ` (${health.lost.length} lost)` : ""}` : "none",
  };
}

async function launch(profile, extra) {
  const state = { stderr: "" };
  const browser = await launchChromium(profile, ["--v=0", ...extra], (data) => {
    state.stderr += data.toString();
  });
  current = browser;
  return {
    ...browser,
    get stderr() {
      return state.stderr;
    },
  };
}

await main();
