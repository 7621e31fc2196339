/**
 * Bad input: each gets its stable `code` and a message that says what to do, and nothing is
 * written.
 */

import { describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { crashableStore } from "../testing/crash-store";
import { defineFiber } from "./define";
import { InvalidInputError, UnknownFiberError } from "./errors";
import { createRuntime } from "./runtime";

async function dump(store: MemoryStore) {
  const fibers = await store.listFibers();
  return Promise.all(
    fibers.map(async (f) => ({
      f,
      journal: await store.readJournal(f.id),
      stream: await store.readStream(f.id, 0),
      inbox: await store.readInbox(f.id),
      snapshot: await store.readSnapshot(f.id),
    })),
  );
}

describe("bad input is rejected before anything is written", () => {
  const echo = defineFiber("echo", { run: async (_ctx, input: unknown) => input });

  async function setup() {
    const store = new MemoryStore();
    const rt = createRuntime({ store, fibers: [echo], maxPayloadBytes: 1_000 });
    const waiting = defineFiber("waits", { run: async (ctx) => ctx.waitForEvent("go") });
    const rt2 = createRuntime({ store, fibers: [waiting] });
    const live = await rt2.start(waiting, {}, { id: "live" });
    await expect.poll(async () => (await store.getFiber(live.id))?.status).toBe("waiting");
    return { store, rt, rt2, before: await dump(store) };
  }

  const cases: Array<[string, string, (rt: ReturnType<typeof createRuntime>) => Promise<unknown>]> = [
    [
      "an input that is not structured-cloneable",
      "not_cloneable",
      (rt) => rt.start("echo", { callback: () => 1 }),
    ],
    [
      "an input over the size limit",
      "payload_too_large",
      (rt) => rt.start("echo", { text: "x".repeat(5_000) }),
    ],
    ["an unknown fiber name", "unknown_fiber", (rt) => rt.start("no-such-fiber", {})],
    ["a malformed id", "invalid_id", (rt) => rt.start("echo", {}, { id: "has spaces/and?" })],
    ["an empty id", "invalid_id", (rt) => rt.start("echo", {}, { id: "" })],
    ["an id a URL reads as a path step (..)", "invalid_id", (rt) => rt.start("echo", {}, { id: ".." })],
    ["an id a URL reads as a path step (.)", "invalid_id", (rt) => rt.start("echo", {}, { id: "." })],
    [
      "a malformed idempotency key",
      "invalid_id",
      (rt) => rt.start("echo", {}, { idempotencyKey: "x".repeat(500) }),
    ],
    [
      "an event payload that is not cloneable",
      "not_cloneable",
      (rt) => rt.sendEvent("live", "go", { s: Symbol("x") }),
    ],
    [
      "an event payload over the limit",
      "payload_too_large",
      (rt) => rt.sendEvent("live", "go", "y".repeat(5_000)),
    ],
    ["an event for a malformed id", "invalid_id", (rt) => rt.sendEvent("bad id", "go", {})],
    ["an empty event name", "invalid_argument", (rt) => rt.sendEvent("live", "", {})],
    ["a negative stream cursor", "invalid_argument", (rt) => rt.events("live", { after: -1 }).next()],
    [
      "an event name over 200 characters",
      "invalid_argument",
      (rt) => rt.sendEvent("live", "e".repeat(201), {}),
    ],
    ["a cancel reason that is not a string", "invalid_argument", (rt) => rt.cancel("live", {} as never)],
    // It is stored in the record and sent to every reader in `fiber.end`.
    [
      "a cancel reason over 1,000 characters",
      "invalid_argument",
      (rt) => rt.cancel("live", "r".repeat(1_001)),
    ],
    ["a list query of a status that is not one", "invalid_argument", (rt) => rt.list({ status: 5 as never })],
    [
      "a list query of statuses of another shape",
      "invalid_argument",
      (rt) => rt.list({ status: [{}] as never }),
    ],
    ["a list query with a bigint limit", "invalid_argument", (rt) => rt.list({ limit: 10n as never })],
    [
      "a list query with an endedBefore of another type",
      "invalid_argument",
      (rt) => rt.list({ endedBefore: {} as never }),
    ],
    ["a list query that is not an object", "invalid_argument", (rt) => rt.list("waiting" as never)],
  ];

  for (const [what, code, act] of cases) {
    it(`rejects ${what} with ${code}`, async () => {
      const { store, rt, rt2, before } = await setup();
      const error = await act(rt).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code });
      expect(error).toBeInstanceOf(code === "unknown_fiber" ? UnknownFiberError : InvalidInputError);
      expect((error as Error).message.length).toBeGreaterThan(30);
      expect(await dump(store)).toEqual(before);
      await rt.close();
      await rt2.close();
    });
  }

  it("fails a fiber whose step returns something unstorable, keeping what was committed", async () => {
    const store = new MemoryStore();
    const leaky = defineFiber("leaky", {
      async run(ctx) {
        await ctx.step("fine", () => "kept");
        await ctx.step("bad", () => ({ fn: () => 1 }));
      },
    });
    const rt = createRuntime({ store, fibers: [leaky] });
    const fiber = await rt.start(leaky, {});
    await expect(rt.result(fiber)).rejects.toMatchObject({ code: "not_cloneable" });
    const { journal } = await rt.inspect(fiber.id);
    expect(journal[0]).toMatchObject({ key: "fine#1", status: "completed", result: "kept" });
    expect(journal[1]).toMatchObject({ key: "bad#1", status: "failed" });
    await rt.close();
  });

  it("fails a fiber whose step asks for a timeout or retry the runtime cannot honour, before the step runs", async () => {
    const store = new MemoryStore();
    const ran: string[] = [];
    const options = {
      "NaN timeout": { timeoutMs: Number.NaN },
      // setTimeout would fire a delay past 2^31 - 1 ms at once: the step would time out at once.
      "30-day timeout": { timeoutMs: 30 * 86_400_000 },
      "zero attempts": { retry: { maxAttempts: 0 } },
      "endless attempts": { retry: { maxAttempts: Number.POSITIVE_INFINITY } },
    };
    const odd = defineFiber("odd", {
      async run(ctx, input: { case: keyof typeof options }) {
        await ctx.step("fine", () => ran.push("fine"));
        await ctx.step("odd", () => ran.push(input.case), options[input.case]);
      },
    });
    const rt = createRuntime({ store, fibers: [odd] });
    for (const [name, message] of [
      ["NaN timeout", /ctx.step\("odd"\): timeoutMs must be a number of milliseconds above 0 .*\(got NaN\)/],
      ["30-day timeout", /at most 2147483647 \(got 2592000000\)/],
      ["zero attempts", /retry.maxAttempts must be a whole number >= 1/],
      ["endless attempts", /retry.maxAttempts .*\(got Infinity\)/],
    ] as const) {
      const fiber = await rt.start(odd, { case: name });
      await expect(rt.result(fiber)).rejects.toMatchObject({
        code: "invalid_argument",
        message: expect.stringMatching(message),
      });
      const { journal } = await rt.inspect(fiber.id);
      expect(journal.map((e) => [e.key, e.status])).toEqual([["fine#1", "completed"]]);
    }
    expect(ran).toEqual(["fine", "fine", "fine", "fine"]);
    await rt.close();
  });

  it("rejects invalid definitions at definition time", () => {
    expect(() => defineFiber("has space", { run: async () => 1 })).toThrow(/Invalid fiber name/);
    expect(() => createRuntime({ store: new MemoryStore(), fibers: [echo, echo] })).toThrow(/unique/);
    const shape = "snapshot" as "stash";
    expect(() => defineFiber("shaped", { resumeFrom: shape, run: async () => 1 })).toThrow(
      /resumeFrom must be "start" \(replay from the top\) or "stash"/,
    );
  });
});

describe("an emit the run refused and its handler caught", () => {
  it("is refused again on a replay, so the replayed run goes the same way and no later chunk is lost", async () => {
    const disk = new MemoryStore();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const paths: string[] = [];
    const reporter = defineFiber("reporter", {
      async run(ctx) {
        let path = "sent";
        try {
          ctx.emit("report", "x".repeat(2_000)); // over maxPayloadBytes
        } catch {
          path = "refused";
          ctx.emit("report", "too large to show");
        }
        paths.push(path);
        await ctx.step("wait", () => gate); // the first runtime stops here
        ctx.emit("after", path);
        return path;
      },
    });
    const first = createRuntime({
      store: crashableStore(disk, { crashAtWrite: 4 }),
      fibers: [reporter],
      maxPayloadBytes: 1_000,
      leaseMs: 30,
    });
    const fiber = await first.start(reporter, {});
    await new Promise((resolve) => setTimeout(resolve, 50));
    void first.close().catch(() => {});
    release();
    const second = createRuntime({ store: disk, fibers: [reporter], maxPayloadBytes: 1_000, leaseMs: 0 });
    await second.recover();
    expect(await second.result(fiber)).toBe("refused");
    expect(paths).toEqual(["refused", "refused"]);
    const chunks = await disk.readStream(fiber.id, 0);
    expect(chunks.filter((c) => !c.type.startsWith("fiber.")).map((c) => [c.type, c.data])).toEqual([
      ["report", "too large to show"],
      ["after", "refused"],
    ]);
    await second.close();
  });
});
