#!/usr/bin/env node
/**
 * `npm run test:extension-lifetime`: the example extension under Chromium's natural worker
 * lifetime. Playwright attaches DevTools to workers, which switches Chrome's idle timeout off, so
 * this test spawns Chromium itself and never attaches to the extension's worker: it drives the
 * side panel page over that page's own DevTools socket, closes it, and only watches `/json/list`
 * (a passive listing) while Chrome idles the worker out and the host's alarm starts it again for
 * a reminder's timer. Then it reopens the panel and checks the reminder fired while no extension
 * page was open, not early, and that the panel's stream is whole. About two minutes.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromiumArgs, findChromium } from "../../scripts/find-chromium.mjs";

// Node 20 has WebSocket behind a flag (Node 22 has it by default): run again with the flag.
if (typeof globalThis.WebSocket !== "function") {
  const again = spawn(process.execPath, ["--experimental-websocket", ...process.argv.slice(1)], {
    stdio: "inherit",
  });
  again.on("close", (code) => process.exit(code ?? 1));
} else {
  await main();
}

async function main() {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const extension = join(root, "examples/extension/dist");
  const profile = mkdtempSync(join(tmpdir(), "fiberline-extension-lifetime-"));
  const say = (line) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
  const seconds = 75; // past Chrome's ~30 s idle timeout, so the worker is stopped when it is due
  let chromium;
  try {
    say("building the example extension");
    const build = spawnSync(
      "npx",
      ["vite", "build", "-c", "examples/extension/vite.config.ts", "--logLevel", "warn"],
      {
        cwd: root,
        stdio: "inherit",
      },
    );
    if (build.status !== 0) throw new Error("building the example extension failed");
    chromium = spawn(
      findChromium(),
      [
        "--headless",
        "--remote-debugging-port=0",
        `--user-data-dir=${profile}`,
        ...chromiumArgs,
        `--disable-extensions-except=${extension}`,
        `--load-extension=${extension}`,
        "about:blank",
      ],
      { detached: true, stdio: ["ignore", "ignore", "pipe"] },
    );
    const devtools = await new Promise((resolve, reject) => {
      let stderr = "";
      const timer = setTimeout(() => reject(new Error(`Chromium did not start:\n${stderr}`)), 30_000);
      chromium.stderr.on("data", (data) => {
        stderr += data;
        const match = /DevTools listening on ws:\/\/([^/]+)\//.exec(stderr);
        if (match) {
          clearTimeout(timer);
          resolve(`http://${match[1]}`);
        }
      });
    });
    chromium.stderr.resume();
    const targets = async () => await (await fetch(`${devtools}/json/list`)).json();
    const workers = async () =>
      (await targets()).filter((t) => t.type === "service_worker" && t.url.startsWith("chrome-extension://"));
    await until(async () => (await workers()).length > 0, 30_000, "the extension's worker");
    const id = new URL((await workers())[0].url).host;

    // ---- 1. the side panel sets a reminder, then closes ---------------------------------------
    let panel = await openPage(devtools, `chrome-extension://${id}/sidepanel.html`);
    await until(
      async () =>
        (await panel.evaluate(`document.getElementById("status").textContent`)) !==
        "Connecting to the background worker…",
      30_000,
      "the panel to connect",
    );
    const fiber = await panel.evaluate(`(async () => {
      document.getElementById("remind-text").value = "natural";
      document.getElementById("remind-seconds").value = "${seconds}";
      document.querySelector("#remind button").click();
      for (;;) {
        const id = localStorage.getItem("fiberline-example/current");
        if (id) return id;
        await new Promise((r) => setTimeout(r, 100));
      }
    })()`);
    await until(
      async () => (await panel.evaluate(`document.querySelectorAll("#log li").length`)) >= 2,
      30_000,
      "reminder.set",
    );
    const setAt = Date.now();
    say(`reminder ${fiber} set for ${seconds} s; closing the panel`);
    await panel.close();

    // ---- 2. Chrome idles the worker out; the host's alarm starts it again for the timer --------
    const seen = [];
    let running = true;
    while (Date.now() - setAt < (seconds + 35) * 1000) {
      const now = (await workers()).length > 0;
      if (now !== running) {
        running = now;
        const at = Math.round((Date.now() - setAt) / 1000);
        seen.push({ at, running });
        say(`worker ${running ? "started" : "stopped"} at +${at} s`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const pages = (await targets()).filter(
      (t) => t.type === "page" && t.url.startsWith("chrome-extension://"),
    );

    // ---- 3. the panel reopens: the reminder fired meanwhile, its stream whole ------------------
    const reopenedAt = Date.now();
    panel = await openPage(
      devtools,
      `chrome-extension://${id}/sidepanel.html#fiber=${encodeURIComponent(fiber)}`,
    );
    await until(
      async () =>
        (await panel.evaluate(`document.querySelector("#log li:last-child")?.dataset.type`)) === "fiber.end",
      30_000,
      "the stream",
    );
    const log = await panel.evaluate(
      `[...document.querySelectorAll("#log li")].map((li) => li.dataset.type)`,
    );
    const reply = await panel.evaluate(`document.getElementById("reply").textContent`);
    await panel.close();

    const problems = [];
    const stop = seen.find((s) => !s.running);
    const start = seen.find((s) => s.running && stop && s.at > stop.at);
    if (pages.length > 0) problems.push("an extension page was open while waiting");
    if (!stop || stop.at >= seconds)
      problems.push("Chrome did not stop the idle worker before the reminder was due");
    if (!start) problems.push("nothing started the worker again with every page closed");
    else if (start.at < seconds - 2)
      problems.push(`the worker was started at +${start.at} s, before the timer was due`);
    if (log.join(",") !== "fiber.start,reminder.set,reminder.fired,fiber.end")
      problems.push(`stream ${log.join(",")}`);
    if (reply !== "⏰ natural") problems.push(`the panel shows ${JSON.stringify(reply)}`);
    if (reopenedAt - setAt < seconds * 1000) problems.push("the panel was reopened before the timer was due");
    const summary = `worker ${seen.map((s) => `${s.running ? "started" : "stopped"} +${s.at} s`).join(", ")}; reminder due +${seconds} s`;
    if (problems.length > 0) {
      console.log(`extension lifetime FAILED (${summary}):\n  ${problems.join("\n  ")}`);
      process.exitCode = 1;
    } else {
      console.log(
        `extension lifetime: the reminder fired with every page closed (${summary})\n1 passed, 0 failed`,
      );
    }
  } catch (error) {
    console.error(
      `extension lifetime FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
    process.exitCode = 1;
  } finally {
    if (chromium?.pid) {
      try {
        process.kill(-chromium.pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    rmSync(profile, { recursive: true, force: true });
  }
}

/** Opens `url` in a new tab and attaches to that page's target only (never to the worker). */
async function openPage(devtools, url) {
  const target = await (await fetch(`${devtools}/json/new?${url}`, { method: "PUT" })).json();
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`Could not attach to the page ${url}`));
  });
  let next = 0;
  const pending = new Map();
  socket.onmessage = (message) => {
    const reply = JSON.parse(String(message.data));
    pending.get(reply.id)?.(reply);
    pending.delete(reply.id);
  };
  return {
    /** Evaluates `expression` in the page, awaiting a promise; returns its value. */
    evaluate(expression, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const id = ++next;
        const timer = setTimeout(() => reject(new Error(`${expression.slice(0, 60)} timed out`)), timeoutMs);
        pending.set(id, (reply) => {
          clearTimeout(timer);
          const failure = reply.error?.message ?? reply.result?.exceptionDetails?.exception?.description;
          if (failure) reject(new Error(`${expression.slice(0, 60)}: ${failure}`));
          else resolve(reply.result.result.value);
        });
        socket.send(
          JSON.stringify({
            id,
            method: "Runtime.evaluate",
            params: { expression, awaitPromise: true, returnByValue: true },
          }),
        );
      });
    },
    async close() {
      socket.close();
      await fetch(`${devtools}/json/close/${target.id}`);
    },
  };
}

async function until(test, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await test().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}.`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
