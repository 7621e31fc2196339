/**
 * A Service Worker's global scope and its events, faked for tests of the host in Node, and a page
 * connecting to the host's control channel over a `MessageChannel` (the handshake the client's
 * `connect` makes).
 */

import { wrap } from "comlink";
import { vi } from "vitest";
import { installErrorTransfer } from "../error-transfer";
import type { ServiceWorkerScopeLike } from "../host";
import { type ControlApi, type HandshakeReply, type PortStreamApi, PROTOCOL_VERSION } from "../protocol";

export class FakeEvent {
  readonly lifetime: Promise<unknown>[] = [];
  waitUntil(promise: Promise<unknown>): void {
    this.lifetime.push(promise);
  }
  /** Resolves when every waitUntil promise settled. */
  settled(): Promise<unknown> {
    return Promise.allSettled(this.lifetime);
  }
}

export class FakeFetchEvent extends FakeEvent {
  response: Promise<Response> | undefined;
  constructor(readonly request: Request) {
    super();
  }
  respondWith(response: Response | Promise<Response>): void {
    this.response = Promise.resolve(response);
  }
}

export class FakeMessageEvent extends FakeEvent {
  constructor(
    readonly data: unknown,
    readonly ports: MessagePort[] = [],
  ) {
    super();
  }
}

export class FakeScope implements ServiceWorkerScopeLike {
  readonly listeners = new Map<string, Array<(event: never) => void>>();
  readonly skipWaiting = vi.fn(async () => {});
  readonly clients = { claim: vi.fn(async () => {}) };
  readonly location = { href: "https://app.test/sw.js?v=1", origin: "https://app.test" };
  addEventListener(type: string, listener: (event: never) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  removeEventListener(type: string, listener: (event: never) => void): void {
    this.listeners.set(
      type,
      (this.listeners.get(type) ?? []).filter((l) => l !== listener),
    );
  }
  dispatch<E>(type: string, event: E): E {
    for (const listener of this.listeners.get(type) ?? []) (listener as (e: E) => void)(event);
    return event;
  }
}

/**
 * Connects a page to the host on `scope`: resolves with the host's handshake reply and the control
 * API over the page's end of the channel (close `port` when done).
 */
export async function connectPage(scope: FakeScope, message: Record<string, unknown> = {}) {
  installErrorTransfer();
  const { port1, port2 } = new MessageChannel();
  const reply = new Promise<HandshakeReply>((resolve) => {
    port1.addEventListener("message", (e) => resolve((e as MessageEvent<HandshakeReply>).data), {
      once: true,
    });
  });
  port1.start();
  const event = scope.dispatch(
    "message",
    new FakeMessageEvent(
      { type: "fiberline/connect", protocol: PROTOCOL_VERSION, prefix: "/__fiberline", ...message },
      [port2],
    ),
  );
  return { reply: await reply, remote: wrap<ControlApi & PortStreamApi>(port1), event, port: port1 };
}
