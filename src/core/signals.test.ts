/** `eitherSignal`: the first abort wins, with its reason; `dispose` leaves no listener behind. */

import { describe, expect, it } from "vitest";
import { eitherSignal } from "./signals";

describe("eitherSignal", () => {
  it("aborts with the reason of the first signal to abort, at once for one aborted already", () => {
    const a = new AbortController();
    const b = new AbortController();
    const { signal } = eitherSignal(a.signal, undefined, b.signal);
    expect(signal.aborted).toBe(false);
    b.abort("b first");
    a.abort("a second");
    expect(signal.reason).toBe("b first");
    const done = new AbortController();
    done.abort("already");
    expect(eitherSignal(a.signal, done.signal).signal.reason).toBe("a second");
    expect(eitherSignal(undefined, b.signal).signal).toBe(b.signal);
  });

  it("stops listening once disposed, so a long-lived signal keeps nothing", () => {
    const longLived = new AbortController();
    const added: unknown[] = [];
    const original = longLived.signal.addEventListener.bind(longLived.signal);
    const removeOriginal = longLived.signal.removeEventListener.bind(longLived.signal);
    longLived.signal.addEventListener = ((type: string, listener: EventListener, options?: unknown) => {
      added.push(listener);
      original(type, listener, options as AddEventListenerOptions);
    }) as typeof longLived.signal.addEventListener;
    longLived.signal.removeEventListener = ((type: string, listener: EventListener) => {
      added.splice(added.indexOf(listener), 1);
      removeOriginal(type, listener);
    }) as typeof longLived.signal.removeEventListener;
    for (let i = 0; i < 5; i++) eitherSignal(longLived.signal, new AbortController().signal).dispose();
    expect(added).toEqual([]);
  });
});
