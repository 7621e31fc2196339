#!/usr/bin/env node
/**
 * `node e2e/crash/wipe-hunt.mjs --minutes 60 [--port 5630] [--out /tmp/wipe-hunt] [--mode mixed]`:
 * hunts the rare loss of an origin's whole IndexedDB after a browser SIGKILL (bench/README.md,
 * docs/security.md "A wiped database"). One real profile, one browser at a time: the e2e fixture
 * (built into dist/e2e-fixture-<port> and served by `vite preview`) runs ticker fibers that write
 * to IndexedDB continuously while its page logs every chunk to a second database; after a random
 * 0.2-2.5 s the whole process group is SIGKILLed and Chromium relaunched on the same profile,
 * which must still hold every fiber it had acknowledged. Chromium's own log goes to one file per
 * launch (`--enable-logging=stderr --v=1` with `--vmodule` for IndexedDB, LevelDB and quota), and
 * the profile's storage directories are copied before each relaunch, so a wipe comes with what
 * Chromium found on disk and what it said about it.
 *
 * Modes, by launch (`--mode wait,sqlite` rotates through those; `mixed` through all four): `wait`
 * relaunches once every process of the old group is gone (as `crashBrowser` of
 * `fiberline/testing` does), `nowait` relaunches at once (as the bench did before it waited),
 * `sqlite` waits and runs IndexedDB on Chromium's SQLite backing store
 * (`--enable-features=IdbSqliteBackingStore`), `lowend` waits and runs with
 * `--enable-low-end-device-mode`, under which Chromium's LevelDB does not reuse its log at open. Prints one line
 * per kill and a summary: kills, wipes by mode, other anomalies.
 */
import {
  cpSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { crash, killGroup, launchChromium, serveFixture } from "./kill-loop.mjs";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "60" },
    port: { type: "string", default: "5630" },
    out: { type: "string", default: "/tmp/wipe-hunt" },
    mode: { type: "string", default: "mixed" },
    kills: { type: "string", default: "100000" },
  },
});
const origin = `http://localhost:${values.port}`;
const out = values.out;
const modes = values.mode === "mixed" ? ["wait", "nowait", "sqlite", "lowend"] : values.mode.split(",");
const deadline = Date.now() + Number(values.minutes) * 60_000;
const say = (line) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

mkdirSync(join(out, "logs"), { recursive: true });
const children = [];
/** The browser of the current launch, killed with the server when the hunt is interrupted. */
let current;
process.on("SIGINT", () => {
  for (const child of children) killGroup(child.pid);
  if (current) killGroup(current.pid);
  process.exit(130);
});

const VMODULE = [
  "*indexed_db*=3",
  "*indexeddb*=3",
  "*leveldb*=3",
  "env_chromium=3",
  "*sqlite*=2",
  "*quota*=2",
  "*bucket*=2",
  "*storage_partition*=1",
].join(",");

async function main() {
  say(`building the fixture for ${origin}`);
  children.push(await serveFixture(values.port));

  const stats = Object.fromEntries(modes.map((m) => [m, { kills: 0, wipes: 0, partial: 0, failed: 0 }]));
  let kills = 0;
  // One profile per mode: a mode's launches only ever see that mode's own data.
  const profiles = Object.fromEntries(modes.map((m) => [m, join(out, `profile-${m}`)]));
  for (const dir of Object.values(profiles)) rmSync(dir, { recursive: true, force: true });
  const acknowledged = Object.fromEntries(modes.map((m) => [m, new Set()]));
  const sinceReset = Object.fromEntries(modes.map((m) => [m, 0]));
  const lastLog = {};
  while (Date.now() < deadline && kills < Number(values.kills)) {
    const mode = modes[kills % modes.length];
    const profile = profiles[mode];
    const n = ++kills;
    const log = join(out, "logs", `launch-${String(n).padStart(5, "0")}-${mode}.log`);
    let browser;
    // A fresh profile every 30 launches of a mode, so the database stays at a few MB (as in the
    // bench and torture runs that saw the wipe) and a launch's list() stays quick.
    if (++sinceReset[mode] > 30) {
      rmSync(profile, { recursive: true, force: true });
      acknowledged[mode].clear();
      sinceReset[mode] = 1;
    }
    try {
      browser = await launch(profile, mode, log);
      current = browser;
      const page = await browser.context.newPage();
      await page.goto(`${origin}/`);
      const found = await page.evaluate(async () => {
        const client = await window.fx.client();
        const records = await client.list();
        const dbs = (await indexedDB.databases()).map((d) => d.name);
        return { ids: records.map((r) => r.id), dbs };
      });
      const known = acknowledged[mode];
      const missing = [...known].filter((id) => !found.ids.includes(id));
      const dirState = storageListing(profile);
      if (known.size > 0 && found.ids.length === 0) {
        stats[mode].wipes++;
        say(`#${n} ${mode}: WIPE: 0 of ${known.size} fibers, databases ${JSON.stringify(found.dbs)}`);
        keepEvidence(n, mode, log, profile, dirState, lastLog[mode]);
        known.clear();
      } else if (missing.length > 0) {
        stats[mode].partial++;
        say(
          `#${n} ${mode}: PARTIAL: ${missing.length} of ${known.size} missing: ${missing.slice(0, 5).join(", ")}`,
        );
        keepEvidence(n, mode, log, profile, dirState, lastLog[mode]);
        for (const id of missing) known.delete(id);
      }
      // Write load: three tickers writing a step and a chunk every few ms, each read by the page
      // into its own IndexedDB log; the kill lands at a random moment of it.
      const started = await page.evaluate(async () => {
        const client = await window.fx.client();
        const ids = [];
        for (let i = 0; i < 3; i++) {
          const { id } = await client.start("ticker", { ticks: 400, intervalMs: 2 });
          ids.push(id);
          window.fx.read(id);
        }
        // Larger writes too: 20 kB chunks, so a kill more often lands inside one write of the log.
        const { id } = await client.start("filler", { chunks: 200, bytes: 20_000, intervalMs: 5 });
        ids.push(id);
        window.fx.read(id);
        return ids;
      });
      for (const id of started) known.add(id);
      await new Promise((r) => setTimeout(r, 200 + Math.floor(Math.random() * 2_300)));
      if (mode === "nowait") {
        killGroup(browser.pid);
        await browser.exited;
      } else {
        await crash(browser);
        snapshot(profile, mode);
      }
      stats[mode].kills++;
      if (n % 25 === 0) say(`#${n}: ${JSON.stringify(stats)}`);
      // The killed launch's log is kept until the next launch of its mode came up clean.
      if (lastLog[mode] && !existsSync(join(out, "evidence", String(n))))
        rmSync(lastLog[mode], { force: true });
      lastLog[mode] = log;
    } catch (error) {
      stats[mode].failed++;
      say(`#${n} ${mode}: launch/drive failed: ${String(error).split("\n")[0]}`);
      if (browser) await crash(browser).catch(() => {});
    }
  }
  say(`done: ${kills} launches in ${values.minutes} min: ${JSON.stringify(stats)}`);
  for (const child of children) killGroup(child.pid);
}

function launch(profile, mode, logFile) {
  const log = createWriteStream(logFile, { flags: "a" });
  const flags = [
    "--v=1",
    `--vmodule=${VMODULE}`,
    ...(mode === "sqlite" ? ["--enable-features=IdbSqliteBackingStore"] : []),
    // A low-end device: Chromium's LevelDB options then do not reuse the log file at open.
    ...(mode === "lowend" ? ["--enable-low-end-device-mode"] : []),
  ];
  return launchChromium(profile, flags, (data) => log.write(data));
}

/** The files under the profile's storage directories, with sizes (what the next launch will open). */
function storageListing(profile) {
  const lines = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      // A file LevelDB deletes during the walk (a compaction's input) is skipped.
      else if (existsSync(path))
        lines.push(`${statSync(path, { throwIfNoEntry: false })?.size}\t${path.slice(profile.length + 1)}`);
    }
  };
  for (const sub of STORAGE_DIRS) if (existsSync(join(profile, sub))) walk(join(profile, sub));
  return lines.join("\n");
}

const STORAGE_DIRS = [
  "Default/IndexedDB",
  "Default/WebStorage",
  "Default/QuotaManager",
  "Default/QuotaManager-journal",
];

/** Copies the storage the killed browser left, as the next launch will find it. */
function snapshot(profile, mode) {
  const dest = join(out, `pre-relaunch-${mode}`);
  rmSync(dest, { recursive: true, force: true });
  for (const sub of STORAGE_DIRS) {
    const from = join(profile, sub);
    if (existsSync(from)) cpSync(from, join(dest, sub), { recursive: true, force: true });
  }
}

function keepEvidence(n, mode, log, profile, listing, previous) {
  const dir = join(out, "evidence", String(n));
  mkdirSync(dir, { recursive: true });
  cpSync(log, join(dir, "chromium-relaunch.log"));
  if (previous && existsSync(previous)) cpSync(previous, join(dir, "chromium-killed.log"));
  const pre = join(out, `pre-relaunch-${mode}`);
  if (existsSync(pre)) cpSync(pre, join(dir, "pre-relaunch"), { recursive: true });
  for (const sub of STORAGE_DIRS)
    if (existsSync(join(profile, sub)))
      cpSync(join(profile, sub), join(dir, "after", sub), { recursive: true });
  const leveldbLog = join(profile, "Default/IndexedDB");
  if (existsSync(leveldbLog)) {
    for (const entry of readdirSync(leveldbLog)) {
      const file = join(leveldbLog, entry, "LOG");
      if (existsSync(file))
        say(`  ${entry}/LOG: ${readFileSync(file, "utf8").split("\n").slice(0, 3).join(" | ")}`);
    }
  }
  writeFileSync(join(dir, "listing-after.txt"), listing);
}

await main();
