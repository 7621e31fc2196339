/**
 * What the opt-in storage crash scripts (`wipe-hunt.mjs`, `torn-log.mjs`) share: the e2e fixture
 * built and served on a port of their own, Chromium spawned on a profile in its own process group
 * with its log on stderr and Playwright attached over CDP, and a SIGKILL of that whole group that
 * waits until no process of it is left. Plain ES modules, so the scripts run with `node` alone.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "@playwright/test";
import { chromiumArgs, findChromium } from "../../scripts/find-chromium.mjs";

/** The repository root. */
export const root = fileURLToPath(new URL("../..", import.meta.url));

/** Builds the e2e fixture for `port` and serves it there; resolves with the server's process. */
export async function serveFixture(port) {
  await run("npx", ["vite", "build", "-c", "e2e/fixture/vite.config.ts"], { FIBERLINE_E2E_PORT: port });
  const server = spawn(
    "npx",
    ["vite", "preview", "-c", "e2e/fixture/vite.config.ts", "--port", port, "--strictPort"],
    { cwd: root, detached: true, stdio: "ignore", env: { ...process.env, FIBERLINE_E2E_PORT: port } },
  );
  const end = Date.now() + 60_000;
  while ((await fetch(`http://localhost:${port}/hello.txt`).catch(() => null))?.ok !== true) {
    if (Date.now() > end) throw new Error(`the fixture server on ${port} did not answer within 60 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return server;
}

/**
 * Starts headless Chromium on `profile` with its log on stderr (each piece handed to `onLog`),
 * `flags` added, and attaches Playwright: `{ pid, exited, context }`.
 */
export async function launchChromium(profile, flags, onLog) {
  const args = [
    "--headless",
    "--remote-debugging-port=0",
    `--user-data-dir=${profile}`,
    ...chromiumArgs,
    "--enable-logging=stderr",
    ...flags,
    "about:blank",
  ];
  const child = spawn(findChromium(), args, { detached: true, stdio: ["ignore", "ignore", "pipe"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  let head = "";
  const ws = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no DevTools endpoint in 30 s")), 30_000);
    child.stderr.on("data", (data) => {
      onLog(data);
      head = (head + data.toString()).slice(-20_000);
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(head);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    exited.then(() => reject(new Error(`Chromium exited before it was ready: ${head.slice(-500)}`)));
  });
  const browser = await chromium.connectOverCDP(ws, { timeout: 30_000 });
  return { pid: child.pid, exited, context: browser.contexts()[0] };
}

/** SIGKILL to the whole process group `pid` leads (nothing when it is gone). */
export function killGroup(pid) {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // gone
  }
}

/** Kills the browser like a crash and resolves once no process of its group is left. */
export async function crash(browser) {
  killGroup(browser.pid);
  await browser.exited;
  await waitGroupGone(browser.pid);
}

/** Resolves once no process of group `pgid` is alive (zombies do not count); rejects after 15 s. */
export async function waitGroupGone(pgid) {
  const end = Date.now() + 15_000;
  while (groupAlive(pgid)) {
    if (Date.now() > end) throw new Error(`group ${pgid} still alive 15 s after SIGKILL`);
    killGroup(pgid);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function groupAlive(pgid) {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") return true;
    } catch {
      // exited meanwhile
    }
  }
  return false;
}

function run(command, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, stdio: "inherit", env: { ...process.env, ...env } });
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited ${code}`))));
  });
}
