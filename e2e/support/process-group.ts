/**
 * The servers e2e specs start beside Chromium (`wrangler dev`, `vite preview`), each in a process
 * group of its own so that one SIGKILL ends it whole (wrangler and its workerd, npx and its vite).
 * Used by `startEdge` (`edge.ts`), the continuity e2e's servers (`e2e/continuity/servers.ts`) and,
 * through them, the continuity torture run.
 *
 *   const group = startGroup("npx", ["vite", "preview", "--port", "5620"]);
 *   await waitForAnswer("http://localhost:5620/index.html", group, { timeoutMs: 60_000 });
 *   await group.kill(); // SIGKILL of the whole group
 */

import { spawn } from "node:child_process";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");

/** A process group `startGroup` started. */
export interface ProcessGroup {
  /** The group's id (its leader's pid). */
  readonly pid: number;
  /** Resolves once the leader exited. */
  readonly exited: Promise<void>;
  /** The last 20,000 characters the group printed (stdout and stderr), for a failing spec's message. */
  output(): string;
  /** SIGKILL of the whole group, as a crash: nothing is flushed; resolves once the leader exited. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after 5 s (and once more for a child the leader left); resolves once it exited. */
  stop(): Promise<void>;
}

/**
 * Spawns `command` in the repository's root as the leader of a new process group, its output
 * kept, with `env` over this process's (colour and wrangler's metrics off).
 */
export function startGroup(command: string, args: string[], env: Record<string, string> = {}): ProcessGroup {
  const child = spawn(command, args, {
    cwd: ROOT,
    detached: true, // its own process group: a signal to -pid reaches every child too
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", WRANGLER_SEND_METRICS: "false", ...env },
  });
  let output = "";
  const append = (data: Buffer) => {
    output = (output + data.toString()).slice(-20_000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  const signal = (name: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, name);
    } catch {
      // already gone
    }
  };
  return {
    pid: child.pid ?? -1,
    exited,
    output: () => output,
    async kill() {
      signal("SIGKILL");
      await exited;
    },
    async stop() {
      signal("SIGTERM");
      const timer = setTimeout(() => signal("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
      signal("SIGKILL");
    },
  };
}

/**
 * Resolves once `url` answers HTTP (any status; with `ok`, a 2xx only), asking every 250 ms.
 *
 * Failure semantics: when `group` exits first, or `timeoutMs` passes, the group is killed (so
 * nothing is left on the port) and this rejects with the last of what it printed.
 */
export async function waitForAnswer(
  url: string,
  group: ProcessGroup,
  options: { timeoutMs: number; ok?: boolean },
): Promise<void> {
  let gone = false;
  void group.exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + options.timeoutMs;
  let failure = `${url} did not answer within ${options.timeoutMs} ms`;
  while (Date.now() < deadline) {
    if (gone) {
      failure = `the process exited before ${url} answered`;
      break;
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.ok || !options.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await group.kill();
  throw new Error(`${failure}:\n${group.output().slice(-3_000)}`);
}
