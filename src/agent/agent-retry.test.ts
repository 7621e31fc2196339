/**
 * Model retries a reader can see and a crash does not reset: each failed request is announced by
 * a durable `message.retry` chunk (which attempt comes next, when, and why the last failed)
 * before the wait, and a call recovered after a crash during that wait goes on from the
 * announced attempt once the wait is over, instead of starting again at attempt 1 at once.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { crashableStore } from "../testing/crash-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, storedEvents } from "./agent-harness";
import { ModelError } from "./errors";
import type { RetryChunkData } from "./model-step";
import { openAICompatible } from "./openai";
import type { ModelProvider } from "./types";

afterEach(closeRuntimes);

const user = [{ role: "user" as const, content: "hi" }];

/** A model whose first `failures` requests fail (retryable), then answers "hello"; records when each came. */
function flakyModel(failures: number, requestsAt: number[] = []): ModelProvider {
  return {
    name: "flaky",
    model: "flaky",
    supportsContinuation: true,
    async *stream() {
      requestsAt.push(Date.now());
      if (requestsAt.length <= failures)
        throw new ModelError(`Could not reach the model (request ${requestsAt.length})`, {
          kind: "network",
          retryable: true,
        });
      yield { type: "text", delta: "hello" };
      yield { type: "finish", reason: "stop" };
    },
  };
}

const retriesIn = async (store: MemoryStore, id: string): Promise<RetryChunkData[]> =>
  (await storedEvents(store, id))
    .filter((e) => e.type === "message.retry")
    .map((e) => e.data as RetryChunkData);

describe("model retries", () => {
  it("announces each failed request with a message.retry chunk before its wait", async () => {
    const store = new MemoryStore();
    const agent = defineAgent({
      name: "flaky",
      model: flakyModel(2),
      modelRetry: { maxAttempts: 5, initialDelayMs: 5, maxDelayMs: 100 },
    });
    const runtime = agentRuntime(agent, store);
    const fiber = await runtime.start(agent, { messages: user });
    const output = await runtime.result(fiber);
    expect(output.messages.at(-1)?.content).toBe("hello");
    const events = await storedEvents(store, fiber.id);
    expect(events.map((e) => e.type).filter((t) => t.startsWith("message."))).toEqual([
      "message.start",
      "message.retry",
      "message.retry",
      "message.end",
    ]);
    const messageId = `${fiber.id}:m1`;
    const retries = await retriesIn(store, fiber.id);
    expect(retries).toEqual([
      {
        messageId,
        attempt: 2,
        maxAttempts: 5,
        delayMs: 5,
        retryAt: expect.any(Number),
        error: { code: "model_error", message: "Could not reach the model (request 1)" },
      },
      {
        messageId,
        attempt: 3,
        maxAttempts: 5,
        delayMs: 10,
        retryAt: expect.any(Number),
        error: { code: "model_error", message: "Could not reach the model (request 2)" },
      },
    ]);
  });

  it("after a crash during the wait, goes on from the announced attempt once the wait is over", async () => {
    const disk = new MemoryStore();
    const dying = crashableStore(disk);
    const retry = { maxAttempts: 5, initialDelayMs: 400, maxDelayMs: 400 };
    // The crashed runtime's model fails for ever (its run may still wake up and call it); the
    // recovered runtime's fails once more, then answers.
    const before = defineAgent({
      name: "flaky",
      model: flakyModel(Number.POSITIVE_INFINITY),
      modelRetry: retry,
    });
    const requestsAt: number[] = [];
    const after = defineAgent({ name: "flaky", model: flakyModel(1, requestsAt), modelRetry: retry });
    const first = agentRuntime(before, dying);
    const fiber = await first.start(before, { messages: user });
    await expect.poll(() => retriesIn(disk, fiber.id), { interval: 5 }).toHaveLength(1);
    dying.crash();
    const [announced] = await retriesIn(disk, fiber.id);

    const second = agentRuntime(after, disk);
    await second.recover();
    const output = await second.result(fiber);
    expect(output.messages.at(-1)?.content).toBe("hello");
    // Not before the announced time (the wait is not skipped by the crash)...
    expect(requestsAt[0]).toBeGreaterThanOrEqual(announced?.retryAt ?? Number.POSITIVE_INFINITY);
    // ...and the count goes on: the recovered call's failure announces attempt 3, not 2 again.
    expect((await retriesIn(disk, fiber.id)).map((r) => r.attempt)).toEqual([2, 3]);
  });

  it("never starts an attempt before its announced retryAt, even when a timer fires early", async () => {
    // Timers fire a little before the wall clock says their time has come (Node's can, by about a
    // millisecond): here every long one fires 5 ms early.
    const realSetTimeout = globalThis.setTimeout;
    vi.spyOn(globalThis, "setTimeout").mockImplementation(((fn: () => void, ms?: number) =>
      realSetTimeout(fn, ms !== undefined && ms >= 100 ? ms - 5 : ms)) as typeof setTimeout);
    try {
      const store = new MemoryStore();
      const requestsAt: number[] = [];
      const agent = defineAgent({
        name: "flaky",
        model: flakyModel(1, requestsAt),
        modelRetry: { maxAttempts: 2, initialDelayMs: 200, maxDelayMs: 200 },
      });
      const runtime = agentRuntime(agent, store);
      const fiber = await runtime.start(agent, { messages: user });
      expect((await runtime.result(fiber)).messages.at(-1)?.content).toBe("hello");
      const [announced] = await retriesIn(store, fiber.id);
      expect(requestsAt[1]).toBeGreaterThanOrEqual(announced?.retryAt ?? Number.POSITIVE_INFINITY);
    } finally {
      vi.restoreAllMocks();
    }
  });

  it("a crash does not give a call new attempts: after the last announced one, it fails", async () => {
    const disk = new MemoryStore();
    const dying = crashableStore(disk);
    const retry = { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 };
    const before = defineAgent({
      name: "down",
      model: flakyModel(Number.POSITIVE_INFINITY),
      modelRetry: retry,
    });
    const requestsAt: number[] = [];
    const after = defineAgent({
      name: "down",
      model: flakyModel(Number.POSITIVE_INFINITY, requestsAt),
      modelRetry: retry,
    });
    const first = agentRuntime(before, dying);
    const fiber = await first.start(before, { messages: user });
    await expect.poll(() => retriesIn(disk, fiber.id), { interval: 5 }).toHaveLength(1);
    dying.crash();

    const second = agentRuntime(after, disk);
    await second.recover();
    await expect(second.result(fiber)).rejects.toMatchObject({ code: "step_failed" });
    // Attempt 2 of 2 was the one left: one request, and no further retry announced.
    expect(requestsAt).toHaveLength(1);
    expect((await retriesIn(disk, fiber.id)).map((r) => r.attempt)).toEqual([2]);
  });
});

describe("a reply cut off at the same point in every life", () => {
  it("is regenerated at most maxRecoveries times, then the call fails with recovery_exhausted", async () => {
    const disk = new MemoryStore();
    let requests = 0;
    // Two deltas, then nothing: each life's worker is stopped mid-reply (a browser's time limit),
    // and the provider cannot continue a partial reply, so each life starts it over.
    const model: ModelProvider = {
      name: "cut",
      model: "cut",
      supportsContinuation: false,
      async *stream() {
        requests++;
        yield { type: "text", delta: "Hello " };
        yield { type: "text", delta: "wor" };
        await new Promise<never>(() => {});
      },
    };
    // Each regeneration streams new chunks, which the runtime counts as progress: alone, its
    // maxRecoveries never ran out, and the model was asked again in every life, for good.
    const agent = defineAgent({ name: "cut", model, firstEventTimeoutMs: 0, noProgressTimeoutMs: 0 });
    const deltas = async (id: string) =>
      (await disk.readStream(id, 0)).filter((c) => c.type === "text.delta").length;
    const limit = 3;
    let dying = crashableStore(disk);
    let runtime = agentRuntime(agent, dying, { maxRecoveries: limit });
    const fiber = await runtime.start(agent, { messages: user });
    for (let life = 1; life <= limit + 2; life++) {
      await expect
        .poll(
          async () =>
            (await deltas(fiber.id)) === 2 * life || (await disk.getFiber(fiber.id))?.status === "failed",
        )
        .toBe(true);
      if ((await disk.getFiber(fiber.id))?.status === "failed") break;
      dying.crash();
      dying = crashableStore(disk);
      runtime = agentRuntime(agent, dying, { maxRecoveries: limit });
      await runtime.recover();
    }
    await expect(runtime.result(fiber)).rejects.toMatchObject({ code: "recovery_exhausted" });
    // The first life and one regeneration per recovery up to the limit, no more.
    expect(requests).toBe(limit + 1);
    const resets = (await disk.readStream(fiber.id, 0)).filter((c) => c.type === "message.reset");
    expect(resets.map((c) => (c.data as { interrupted?: boolean }).interrupted)).toEqual(
      Array(limit).fill(true),
    );
  });
});

describe("what the provider says about its reply", () => {
  const encoder = new TextEncoder();
  const sse = (value: unknown) => encoder.encode(`data: ${JSON.stringify(value)}\n\n`);

  it("waits at least the Retry-After the provider asked for before asking again", async () => {
    const store = new MemoryStore();
    const calls: number[] = [];
    const model = openAICompatible({
      baseUrl: "http://model.invalid/v1",
      model: "m",
      maxRetryAfterMs: 50, // longer waits are the model step's to make
      fetch: (async () => {
        calls.push(Date.now());
        if (calls.length === 1)
          return new Response('{"error":{"message":"rate limited"}}', {
            status: 429,
            headers: { "retry-after": "1" },
          });
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(sse({ choices: [{ index: 0, delta: { content: "ok" } }] }));
            controller.enqueue(sse({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }));
            controller.enqueue(encoder.encode("data: [DONE]\n\n"));
            controller.close();
          },
        });
        return new Response(body, { headers: { "content-type": "text/event-stream" } });
      }) as typeof fetch,
    });
    const agent = defineAgent({
      name: "patient",
      model,
      modelRetry: { maxAttempts: 5, initialDelayMs: 10, maxDelayMs: 20 },
    });
    const runtime = agentRuntime(agent, store);
    const fiber = await runtime.start(agent, { messages: user });
    expect((await runtime.result(fiber)).messages.at(-1)?.content).toBe("ok");
    expect(calls).toHaveLength(2);
    expect((calls[1] as number) - (calls[0] as number)).toBeGreaterThanOrEqual(950);
    expect((await retriesIn(store, fiber.id))[0]?.delayMs).toBe(1_000);
  });

  it("fails a call whose provider asks to wait longer than 10 minutes (MAX_RETRY_AFTER_MS), at once and with the provider's error", async () => {
    const store = new MemoryStore();
    let calls = 0;
    const model = openAICompatible({
      baseUrl: "http://model.invalid/v1",
      model: "m",
      fetch: (async () => {
        calls++;
        // A quota window: past a timer's range too (a timer would fire at once and spin).
        return new Response('{"error":{"message":"quota exhausted"}}', {
          status: 429,
          headers: { "retry-after": "3000000" },
        });
      }) as typeof fetch,
    });
    const agent = defineAgent({ name: "quota", model, modelRetry: { maxAttempts: 5, initialDelayMs: 10 } });
    const runtime = agentRuntime(agent, store);
    const fiber = await runtime.start(agent, { messages: user });
    const error = await runtime.result(fiber).catch((e: unknown) => e);
    expect((error as Error).message).toContain("quota exhausted");
    expect(calls).toBe(1);
    expect(await retriesIn(store, fiber.id)).toEqual([]);
  });

  it("takes a reply as complete after its finish reason when the server never sends [DONE] and keeps the connection open", async () => {
    const store = new MemoryStore();
    const bodies: string[] = [];
    const model = openAICompatible({
      baseUrl: "http://model.invalid/v1",
      model: "m",
      continuation: "none",
      fetch: (async (_url: string, init: RequestInit) => {
        bodies.push(String(init.body));
        const signal = init.signal as AbortSignal;
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(sse({ choices: [{ index: 0, delta: { content: "Hello there." } }] }));
            controller.enqueue(sse({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }));
            // Never closed, no usage, no [DONE]: only an abort ends it.
            signal.addEventListener("abort", () => controller.error(signal.reason));
          },
        });
        return new Response(body, { headers: { "content-type": "text/event-stream" } });
      }) as unknown as typeof fetch,
    });
    const agent = defineAgent({
      name: "no-done",
      model,
      noProgressTimeoutMs: 60_000,
      modelRetry: { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 2 },
    });
    const runtime = agentRuntime(agent, store);
    const fiber = await runtime.start(agent, { messages: user });
    // Done within the grace after the finish reason (the watchdog would take 60 s: past the test's timeout).
    expect((await runtime.result(fiber)).messages.at(-1)?.content).toBe("Hello there.");
    expect(bodies).toHaveLength(1);
    expect(await retriesIn(store, fiber.id)).toEqual([]);
  });
});
