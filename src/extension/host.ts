/**
 * `createExtensionHost`: runs a Fiberline runtime in a Manifest V3 extension's background
 * Service Worker. It recovers fibers on every start of the worker, keeps the worker alive while
 * fibers run, wakes it with `chrome.alarms` when a timer is due or an interrupted run must resume
 * (with no extension page open), and answers the extension's pages over `chrome.runtime` ports:
 * the control calls of `fiberline/sw` and the same resumable event stream.
 *
 * What starts a stopped extension worker (and so resumes its fibers): the host's alarm, the
 * browser starting (`runtime.onStartup`), the extension being installed or updated
 * (`runtime.onInstalled`), a page or content script connecting (`connect({ extension: true })`),
 * and any other extension event the app listens to. Each start evaluates the worker script, and
 * the host runs `runtime.recover()` right then.
 */

import { ConnectionError, describeError, InvalidInputError, serializeError } from "../core/errors";
import type { RecoverySummary, Runtime } from "../core/runtime";
import { CONTROL_METHODS, createControlApi } from "../sw/control-api";
import type { ControlApi, WorkerInfo } from "../sw/protocol";
import type { ChromeAlarm, ChromeLike, ChromePort } from "./chrome-types";
import {
  CONTROL_PORT,
  type ControlReply,
  type ControlRequest,
  EXTENSION_PROTOCOL_VERSION,
  isControlRequest,
  STREAM_PORT,
} from "./protocol";
import { serveStreamPort } from "./stream-port";
import { WakeAlarm, type WakePlan } from "./wake-alarm";

/** Chrome's shortest alarm delay for a packed Manifest V3 extension (Chrome 120+). */
export const PACKED_ALARM_MINIMUM_MS = 30_000;
/** Chrome's shortest alarm delay for an unpacked extension (loaded from a folder). */
export const UNPACKED_ALARM_MINIMUM_MS = 1_000;

/** Options of `createExtensionHost`. */
export interface ExtensionHostOptions {
  /** The runtime to host; create it at the top level of the background worker script. */
  runtime: Runtime;
  /** The extension API (default the global `chrome`). Needs the `"alarms"` permission. */
  chrome?: ChromeLike;
  /** The name of the host's alarm (default "fiberline/wake"); the app's own alarms are left alone. */
  alarmName?: string;
  /**
   * While a fiber runs, the alarm is kept this far ahead (default 30 s), so a run the browser
   * stopped resumes from its journal within about this long, with no page open.
   */
  heartbeatMs?: number;
  /**
   * The shortest alarm delay Chrome honours here, in ms. Default: 1 s for an unpacked extension,
   * 30 s otherwise (asked of `chrome.management.getSelf()`, which needs no permission).
   */
  alarmMinimumMs?: number;
  /**
   * While fibers run, an extension API call is made this often (default 20 s) to reset Chrome's
   * 30 s idle timer of the worker.
   */
  keepAliveMs?: number;
  /** Where unexpected failures are reported (default `console.error`). */
  onError?(error: unknown, doing: string): void;
}

/** A running extension host. */
export interface ExtensionHost {
  readonly runtime: Runtime;
  /** This worker instance, as pages see it in the handshake and `heartbeat()`. */
  readonly info: WorkerInfo;
  /** Settles after this start's `recover()` (retried at the next wake when it failed). */
  readonly recovery: Promise<RecoverySummary | undefined>;
  /** Fiber runs and keep-alives of this worker not yet settled. */
  readonly pendingWork: number;
  /** Brings the wake-up alarm in step with the fibers now (the host does it on every change). */
  planWake(): Promise<WakePlan>;
  /** Removes the host's listeners and timers (for tests and hot reload). */
  dispose(): void;
}

/**
 * Hosts `runtime` in this extension's background worker. Call it synchronously at the top level
 * of the worker script: Chrome only delivers the event that started the worker (an alarm, a
 * connection) to listeners registered during the script's first evaluation.
 *
 * Failure semantics: `runtime.recover()` runs on every worker start; a failure is reported to
 * `onError` and retried at the next wake (alarm, connection, startup). A run the browser stops
 * (idle worker, crash, update) resumes from its journal when the worker next starts: at the
 * latest at the host's alarm, within `heartbeatMs`. A sleeping fiber's timer fires in the worker
 * while it lives and otherwise at the alarm, which Chrome fires no sooner than its minimum
 * delay after it was set (see `alarmMinimumMs`). Values cross the port as JSON.
 *
 * @example
 * // background.ts (manifest.json: "background": { "service_worker": "background.js", "type": "module" },
 * //                "permissions": ["alarms"])
 * import { createRuntime, IdbStore } from "fiberline";
 * import { createExtensionHost } from "fiberline/extension";
 * import { research } from "./fibers";
 *
 * const runtime = createRuntime({ store: new IdbStore(), fibers: [research] });
 * createExtensionHost({ runtime });
 */
export function createExtensionHost(options: ExtensionHostOptions): ExtensionHost {
  return new Host(options);
}

class Host implements ExtensionHost {
  readonly runtime: Runtime;
  readonly info: WorkerInfo;
  readonly #chrome: ChromeLike;
  readonly #api: ControlApi;
  readonly #alarm: WakeAlarm;
  readonly #alarmName: string;
  readonly #keepAliveMs: number;
  readonly #report: (error: unknown, doing: string) => void;
  readonly #work = new Set<Promise<unknown>>();
  readonly #ports = new Set<ChromePort>();
  readonly #unsubscribe: Array<() => void> = [];
  #keepAliveTimer: ReturnType<typeof setInterval> | undefined;
  #recovery: Promise<RecoverySummary | undefined>;
  #recovered = false;
  #disposed = false;

  constructor(options: ExtensionHostOptions) {
    this.runtime = options.runtime;
    this.#chrome = options.chrome ?? globalChrome();
    this.#alarmName = options.alarmName ?? "fiberline/wake";
    this.#keepAliveMs = options.keepAliveMs ?? 20_000;
    this.#report =
      options.onError ?? ((error, doing) => console.error(`[fiberline/extension] ${doing} failed:`, error));
    this.info = {
      instanceId: crypto.randomUUID(),
      scriptUrl: this.#chrome.runtime.getURL(""),
      startedAt: Date.now(),
      protocol: EXTENSION_PROTOCOL_VERSION,
      prefix: CONTROL_PORT,
    };
    const minimum = options.alarmMinimumMs;
    let resolvedMinimum: Promise<number> | undefined;
    this.#alarm = new WakeAlarm({
      runtime: this.runtime,
      alarms: this.#chrome.alarms,
      name: this.#alarmName,
      heartbeatMs: options.heartbeatMs ?? PACKED_ALARM_MINIMUM_MS,
      minimumDelayMs: () => {
        resolvedMinimum ??= minimum === undefined ? alarmMinimum(this.#chrome) : Promise.resolve(minimum);
        return resolvedMinimum;
      },
      busy: () => this.#work.size > 0,
    });
    this.#api = createControlApi(this.runtime, () => ({
      ...this.info,
      active: this.runtime.activeCount,
      recovered: this.#recovered,
    }));

    const { runtime, alarms } = this.#chrome;
    this.#listen(runtime.onConnect, (port: ChromePort) => this.#onConnect(port));
    this.#listen(alarms.onAlarm, (alarm: ChromeAlarm) => this.#onAlarm(alarm));
    // Listening is what matters: Chrome starts the worker for these events, and every start
    // recovers. The handlers only make sure a failed start-up recovery is tried again.
    this.#listen(runtime.onStartup, () => this.#wake());
    this.#listen(runtime.onInstalled, () => this.#wake());
    this.#unsubscribe.push(this.runtime.onKeepAlive((work) => this.#track(work)));
    this.#recovery = this.#recover();
  }

  get recovery(): Promise<RecoverySummary | undefined> {
    return this.#recovery;
  }

  get pendingWork(): number {
    return this.#work.size;
  }

  planWake(): Promise<WakePlan> {
    return this.#alarm.plan();
  }

  dispose(): void {
    this.#disposed = true;
    for (const off of this.#unsubscribe.splice(0)) off();
    clearInterval(this.#keepAliveTimer);
    this.#keepAliveTimer = undefined;
    for (const port of this.#ports) port.disconnect();
    this.#ports.clear();
  }

  #listen<L extends (...args: never[]) => unknown>(
    event: { addListener(l: L): void; removeListener(l: L): void },
    listener: L,
  ): void {
    event.addListener(listener);
    this.#unsubscribe.push(() => event.removeListener(listener));
  }

  #recover(): Promise<RecoverySummary | undefined> {
    return this.runtime.recover().then(
      (summary) => {
        this.#recovered = true;
        this.#replan();
        return summary;
      },
      (error: unknown) => {
        this.#report(error, "recovering fibers at worker start");
        this.#retryLater();
        return undefined;
      },
    );
  }

  /** Any wake: retries a failed start-up recovery, then brings the alarm in step. */
  #wake(): void {
    if (!this.#recovered) {
      this.#recovery = this.#recovery.then((summary) => summary ?? this.#recover());
      return;
    }
    this.#replan();
  }

  #onAlarm(alarm: ChromeAlarm): void {
    if (alarm.name !== this.#alarmName || this.#disposed) return;
    // A timer due while the worker was stopped was fired by this start's recover(); one due
    // while it lived was fired by the runtime. Fibers whose runner vanished meanwhile (another
    // context's) are picked up by the runtime's sweeper. What is left is planning the next wake.
    this.#wake();
  }

  #replan(): void {
    if (this.#disposed) return;
    this.#alarm.plan().catch((error: unknown) => {
      this.#report(error, "planning the wake-up alarm");
      this.#retryLater();
    });
  }

  /** After a failed recovery or plan: a wake-up one heartbeat away, which tries again. */
  #retryLater(): void {
    if (this.#disposed) return;
    this.#alarm.retryLater().catch((error: unknown) => this.#report(error, "setting the retry alarm"));
  }

  /** Work that should keep the worker alive: pings the extension API while any is pending. */
  #track(work: Promise<unknown>): void {
    this.#work.add(work);
    if (this.#work.size === 1) {
      this.#replan(); // the heartbeat: a run the browser stops resumes at the alarm
      this.#keepAliveTimer ??= setInterval(() => {
        // Any extension API call resets Chrome's 30 s idle timer of the worker (Chrome 110+).
        this.#chrome.runtime.getPlatformInfo().catch(() => {});
      }, this.#keepAliveMs);
    }
    const done = () => {
      this.#work.delete(work);
      if (this.#work.size > 0) return;
      clearInterval(this.#keepAliveTimer);
      this.#keepAliveTimer = undefined;
      this.#replan(); // the fiber ended, sleeps or waits: its timer (or nothing) is next
    };
    work.then(done, done);
  }

  #onConnect(port: ChromePort): void {
    if (this.#disposed) return;
    if (port.name === STREAM_PORT) {
      this.#wake();
      serveStreamPort(this.runtime, port, (error) => this.#report(error, "answering a stream port"));
      return;
    }
    if (port.name !== CONTROL_PORT) return; // the app's own port
    this.#wake();
    this.#ports.add(port);
    port.onDisconnect.addListener(() => this.#ports.delete(port));
    port.onMessage.addListener((message) => {
      if (isControlRequest(message)) this.#onRequest(port, message);
    });
  }

  #onRequest(port: ChromePort, request: ControlRequest): void {
    const reply = (message: ControlReply) => {
      if (!this.#ports.has(port)) return; // the page went away; nobody to answer
      try {
        port.postMessage(message);
      } catch (error) {
        this.#report(error, "answering a control call");
        // A result extension messaging cannot carry (it sends JSON: a bigint, a cycle): the page
        // gets a typed failure now instead of its deadline, and every other call still works.
        if (message.type === "result") {
          const refused = new InvalidInputError(
            "not_cloneable",
            `The answer to ${request.type === "call" ? `${request.method}()` : "this call"} holds a value extension messaging cannot send (it sends JSON: no bigint, no cycles): ${describeError(error)}. Keep fiber inputs, results and snapshots to JSON data in an extension.`,
          );
          reply({ type: "failed", call: message.call, error: serializeError(refused) });
        }
      }
    };
    if (request.type === "hello") {
      if (request.protocol === EXTENSION_PROTOCOL_VERSION) {
        reply({ type: "ready", worker: this.info });
        return;
      }
      const error = new ConnectionError(
        "protocol_error",
        `The extension page speaks Fiberline extension protocol ${request.protocol} but the background worker speaks ${EXTENSION_PROTOCOL_VERSION}. Build the pages and the worker from the same version of fiberline, and reload the extension.`,
      );
      reply({ type: "rejected", error: serializeError(error) });
      return;
    }
    const { call, method, args } = request;
    if (!CONTROL_METHODS.includes(method)) {
      const error = new ConnectionError("protocol_error", `Unknown control call "${String(method)}".`);
      reply({ type: "failed", call, error: serializeError(error) });
      return;
    }
    const fn = this.#api[method] as (...a: unknown[]) => Promise<unknown>;
    Promise.resolve()
      .then(() => fn(...args))
      .then(
        (value) => reply({ type: "result", call, value }),
        (error: unknown) => reply({ type: "failed", call, error: serializeError(error) }),
      )
      .finally(() => {
        // A start, an event or a cancel changes what is due next.
        if (method === "start" || method === "sendEvent" || method === "cancel") this.#replan();
      });
  }
}

/** Chrome's minimum alarm delay for this extension. */
async function alarmMinimum(chrome: ChromeLike): Promise<number> {
  try {
    const self = await chrome.management?.getSelf();
    return self?.installType === "development" ? UNPACKED_ALARM_MINIMUM_MS : PACKED_ALARM_MINIMUM_MS;
  } catch {
    return PACKED_ALARM_MINIMUM_MS;
  }
}

function globalChrome(): ChromeLike {
  const chrome = (globalThis as { chrome?: Partial<ChromeLike> }).chrome;
  if (!chrome?.runtime?.onConnect) {
    throw new ConnectionError(
      "extension_unavailable",
      "createExtensionHost() found no chrome.runtime: call it in a Manifest V3 extension's background worker, or pass { chrome }.",
    );
  }
  if (!chrome.alarms) {
    throw new ConnectionError(
      "extension_unavailable",
      'createExtensionHost() found no chrome.alarms: add "alarms" to "permissions" in manifest.json.',
    );
  }
  return chrome as ChromeLike;
}
