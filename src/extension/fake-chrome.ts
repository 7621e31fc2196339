/**
 * A fake of the `chrome.*` APIs the extension host and client use, for Node tests: ports that
 * JSON-serialize and deliver each message on a later task (as Chrome does), a "worker stop" that
 * disconnects every port, and alarms that record what was set and fire on request. Not exported
 * from the package.
 */

import type {
  ChromeAlarm,
  ChromeEvent,
  ChromeLike,
  ChromePort,
  ChromeRuntimeConnector,
} from "./chrome-types";

class FakeEvent<L extends (...args: never[]) => unknown> implements ChromeEvent<L> {
  readonly listeners = new Set<L>();
  addListener(listener: L): void {
    this.listeners.add(listener);
  }
  removeListener(listener: L): void {
    this.listeners.delete(listener);
  }
  emit(...args: Parameters<L>): void {
    for (const listener of [...this.listeners]) listener(...args);
  }
}

class FakePort implements ChromePort {
  readonly onMessage = new FakeEvent<(message: unknown, port: ChromePort) => void>();
  readonly onDisconnect = new FakeEvent<(port: ChromePort) => void>();
  peer: FakePort | undefined;
  connected = true;
  constructor(
    readonly name: string,
    readonly sender?: { id?: string; url?: string },
  ) {}

  postMessage(message: unknown): void {
    if (!this.connected) throw new Error("Attempting to use a disconnected port object");
    const text = JSON.stringify(message);
    const peer = this.peer;
    setTimeout(() => {
      if (peer?.connected) peer.onMessage.emit(JSON.parse(text), peer);
    }, 0);
  }

  disconnect(): void {
    if (!this.connected) return;
    this.connected = false;
    const peer = this.peer;
    // Chrome tells the other end, not the end that called disconnect().
    setTimeout(() => {
      if (peer?.connected) {
        peer.connected = false;
        peer.onDisconnect.emit(peer);
      }
    }, 0);
  }
}

/** The fake extension: a worker side (`chrome`) and a page side (`pageRuntime`). */
export class FakeChrome {
  readonly onConnect = new FakeEvent<(port: ChromePort) => void>();
  readonly onAlarm = new FakeEvent<(alarm: ChromeAlarm) => void>();
  readonly alarmMap = new Map<string, ChromeAlarm>();
  readonly workerPorts = new Set<FakePort>();
  installType = "development";
  /** Extension API calls the host made to stay alive. */
  pings = 0;

  readonly chrome: ChromeLike = {
    runtime: {
      id: "fakeextensionid",
      getURL: (path) => `chrome-extension://fakeextensionid/${path}`,
      getPlatformInfo: async () => {
        this.pings++;
        return { os: "linux" };
      },
      onConnect: this.onConnect,
      onStartup: new FakeEvent<() => void>(),
      onInstalled: new FakeEvent<(details: { reason: string }) => void>(),
    },
    alarms: {
      create: async (name, info) => {
        this.alarmMap.set(name, { name, scheduledTime: info.when });
      },
      clear: async (name) => this.alarmMap.delete(name),
      get: async (name) => this.alarmMap.get(name),
      onAlarm: this.onAlarm,
    },
    management: { getSelf: async () => ({ installType: this.installType }) },
  };

  /** `chrome.runtime` of an extension page. */
  readonly pageRuntime: ChromeRuntimeConnector = {
    connect: ({ name }) => {
      const page = new FakePort(name);
      const worker = new FakePort(name, {
        id: "fakeextensionid",
        url: "chrome-extension://fakeextensionid/panel.html",
      });
      page.peer = worker;
      worker.peer = page;
      this.workerPorts.add(worker);
      worker.onDisconnect.addListener(() => this.workerPorts.delete(worker));
      setTimeout(() => this.onConnect.emit(worker), 0);
      return page;
    },
  };

  /** What Chrome does when it stops the worker: every port's page end sees onDisconnect. */
  stopWorker(): void {
    for (const port of [...this.workerPorts]) port.disconnect();
    this.workerPorts.clear();
    this.onConnect.listeners.clear();
    this.onAlarm.listeners.clear();
  }

  /** Fires the alarm `name` now, as Chrome would when it is due. */
  fireAlarm(name: string): void {
    const alarm = this.alarmMap.get(name);
    if (!alarm) throw new Error(`No alarm named ${name} is set.`);
    this.alarmMap.delete(name);
    this.onAlarm.emit(alarm);
  }
}
