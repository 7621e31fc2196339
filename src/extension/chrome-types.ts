/**
 * The few `chrome.*` APIs the extension host and the extension client use, typed locally (no
 * dependency on `@types/chrome`), so the host runs against a fake `chrome` in Node tests and an
 * app that has `@types/chrome` installed can pass its own `chrome` object unchanged.
 */

/** An event of the extension API (`chrome.runtime.onConnect`, `chrome.alarms.onAlarm`...). */
export interface ChromeEvent<Listener extends (...args: never[]) => unknown> {
  addListener(listener: Listener): void;
  removeListener(listener: Listener): void;
}

/** A `chrome.runtime.Port`: a long-lived connection between an extension page and the worker. */
export interface ChromePort {
  readonly name: string;
  /** Messages are JSON-serialized by Chrome: values arrive as `JSON.parse(JSON.stringify(v))`. */
  postMessage(message: unknown): void;
  disconnect(): void;
  readonly onMessage: ChromeEvent<(message: unknown, port: ChromePort) => void>;
  readonly onDisconnect: ChromeEvent<(port: ChromePort) => void>;
  /** Who opened the port (set on the worker's end). */
  readonly sender?: { readonly id?: string; readonly url?: string };
}

/** One alarm, as `chrome.alarms.get` and `onAlarm` report it. */
export interface ChromeAlarm {
  readonly name: string;
  /** When it is due (ms since the epoch). */
  readonly scheduledTime: number;
}

/** The part of `chrome.alarms` the host uses. */
export interface ChromeAlarmsLike {
  create(name: string, info: { when: number }): Promise<void> | void;
  clear(name: string): Promise<boolean>;
  get(name: string): Promise<ChromeAlarm | undefined>;
  readonly onAlarm: ChromeEvent<(alarm: ChromeAlarm) => void>;
}

/** The part of `chrome.runtime` the host uses (the worker's side). */
export interface ChromeRuntimeLike {
  /** The extension's id; ports from another extension are refused. */
  readonly id: string;
  getURL(path: string): string;
  getPlatformInfo(): Promise<unknown>;
  readonly onConnect: ChromeEvent<(port: ChromePort) => void>;
  readonly onStartup: ChromeEvent<() => void>;
  readonly onInstalled: ChromeEvent<(details: { reason: string }) => void>;
}

/** The part of `chrome.management` the host uses (`getSelf` needs no permission). */
export interface ChromeManagementLike {
  getSelf(): Promise<{ installType: string }>;
}

/** The `chrome` global of an extension's background worker, as far as the host uses it. */
export interface ChromeLike {
  readonly runtime: ChromeRuntimeLike;
  /** Needs the `"alarms"` permission in manifest.json. */
  readonly alarms: ChromeAlarmsLike;
  readonly management?: ChromeManagementLike;
}

/** The part of `chrome.runtime` an extension page or content script uses to reach the worker. */
export interface ChromeRuntimeConnector {
  connect(connectInfo: { name: string }): ChromePort;
}
