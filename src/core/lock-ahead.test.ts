/**
 * `start` requests a fiber's lock while its record is being written when the id is one it has
 * just generated (nobody else can hold or want that lock), and only after the record exists when
 * the caller chose the id. A lock taken for a fiber that was not created is let go.
 */

import { afterEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { defineFiber } from "./define";
import type { FiberLocks } from "./locks";
import type { FiberRecord, StreamChunk } from "./records";
import { createRuntime, type Runtime } from "./runtime";
import type { CreateResult } from "./store";

/** In-process locks that log each request and each release, beside the store's `createFiber`. */
function loggedLocks(log: string[]): FiberLocks & { held: Set<string> } {
  const held = new Set<string>();
  return {
    exclusive: true,
    held,
    async acquire(fiberId) {
      log.push("lock requested");
      if (held.has(fiberId)) return null;
      held.add(fiberId);
      return () => {
        log.push("lock released");
        held.delete(fiberId);
      };
    },
  };
}

/** A `MemoryStore` whose `createFiber` logs its start and its end, and can fail once. */
class LoggedStore extends MemoryStore {
  readonly log: string[];
  failNext = false;
  constructor(log: string[]) {
    super();
    this.log = log;
  }
  override async createFiber(record: FiberRecord, chunks: StreamChunk[]): Promise<CreateResult> {
    this.log.push("createFiber begins");
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (this.failNext) {
      this.failNext = false;
      this.log.push("createFiber fails");
      throw new Error("disk full");
    }
    const result = await super.createFiber(record, chunks);
    this.log.push(`createFiber ${result.status}`);
    return result;
  }
}

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});

const waiter = defineFiber("waiter", {
  async run(ctx) {
    return ctx.waitForEvent("go");
  },
});

function setup() {
  const log: string[] = [];
  const store = new LoggedStore(log);
  const locks = loggedLocks(log);
  const runtime = createRuntime({ store, fibers: [waiter], locks });
  runtimes.push(runtime);
  return { log, store, locks, runtime };
}

describe("start takes a generated id's lock while it writes the record", () => {
  it("requests the lock before the record is durable when start generates the id, and runs the fiber under it", async () => {
    const { log, locks, runtime } = setup();
    const { id } = await runtime.start(waiter, undefined);
    expect(log.slice(0, 3)).toEqual(["lock requested", "createFiber begins", "createFiber created"]);
    expect(locks.held.has(id)).toBe(true);
    await runtime.sendEvent(id, "go", 7);
    expect(await runtime.result(id)).toBe(7);
    expect(locks.held.has(id)).toBe(false);
  });

  it("requests the lock of a caller's id only once the record exists", async () => {
    const { log, locks, runtime } = setup();
    await runtime.start(waiter, undefined, { id: "chosen-by-the-caller" });
    expect(log.slice(0, 3)).toEqual(["createFiber begins", "createFiber created", "lock requested"]);
    expect(locks.held.has("chosen-by-the-caller")).toBe(true);
  });

  it("lets go of the lock it took when the start joins an existing fiber by idempotency key", async () => {
    const { log, locks, runtime } = setup();
    const first = await runtime.start(waiter, undefined, { idempotencyKey: "submit-1" });
    // The first fiber suspends on its wait, letting its own lock go.
    await expect.poll(async () => (await runtime.get(first.id))?.status).toBe("waiting");
    await expect.poll(() => locks.held.size).toBe(0);
    log.length = 0;
    const again = await runtime.start(waiter, undefined, { idempotencyKey: "submit-1" });
    expect(again).toMatchObject({ id: first.id, created: false });
    await expect
      .poll(() => log)
      .toEqual(["lock requested", "createFiber begins", "createFiber exists", "lock released"]);
    expect(locks.held.size).toBe(0);
  });

  it("lets go of the lock it took when the record could not be written, and the error reaches the caller", async () => {
    const { log, locks, store, runtime } = setup();
    store.failNext = true;
    await expect(runtime.start(waiter, undefined)).rejects.toThrow(/disk full/);
    await expect
      .poll(() => log)
      .toEqual(["lock requested", "createFiber begins", "createFiber fails", "lock released"]);
    expect(locks.held.size).toBe(0);
  });
});
