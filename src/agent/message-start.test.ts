/**
 * When `message.start` is committed: with the reply's first delta when the model answers within
 * `START_LINGER_MS` (the first token does not queue behind a commit of its own), alone once that
 * time is up, and before a failed request's `message.retry` as before. The chunks and their order
 * never change.
 */

import { afterEach, describe, expect, it } from "vitest";
import type { Store, WriteGroup } from "../core/store";
import { MemoryStore } from "../store/memory-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, storedEvents } from "./agent-harness";
import { START_LINGER_MS } from "./model-step";
import type { ModelEvent, ModelProvider } from "./types";

afterEach(closeRuntimes);

/** `inner`, recording the chunk types of each commit. */
function recordingCommits(inner: Store): { store: Store; commits: string[][] } {
  const commits: string[][] = [];
  const store = new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      if (property !== "commit") return value.bind(target);
      return (groups: WriteGroup[]) => {
        const types = groups.flatMap((g) => (g.chunks ?? []).map((c) => c.type));
        if (types.length > 0) commits.push(types);
        return value.call(target, groups);
      };
    },
  });
  return { store, commits };
}

/** A provider that waits `firstAfterMs` (then `failures` times fails) before answering "hi". */
function slowModel(firstAfterMs: number, failures = 0): ModelProvider {
  let calls = 0;
  return {
    name: "slow",
    model: "slow-1",
    supportsContinuation: false,
    async *stream(): AsyncIterable<ModelEvent> {
      calls++;
      await new Promise((resolve) => setTimeout(resolve, firstAfterMs));
      if (calls <= failures) throw new Error("The model is overloaded.");
      yield { type: "text", delta: "hi" };
      yield { type: "finish", reason: "stop" };
    },
  };
}

const user = [{ role: "user" as const, content: "hello" }];

describe("message.start", () => {
  it("is committed with the first delta when the model answers quickly", async () => {
    const { store, commits } = recordingCommits(new MemoryStore());
    const agent = defineAgent({ name: "quick", model: slowModel(1) });
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user });
    await rt.result(fiber);
    expect(commits.find((types) => types.includes("message.start"))).toEqual(["message.start", "text.delta"]);
  });

  it("is committed alone once START_LINGER_MS pass without an answer", async () => {
    const { store, commits } = recordingCommits(new MemoryStore());
    const agent = defineAgent({ name: "slow", model: slowModel(START_LINGER_MS + 150) });
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user });
    await rt.result(fiber);
    expect(commits.find((types) => types.includes("message.start"))).toEqual(["message.start"]);
    const events = await storedEvents(store, fiber.id);
    expect(events.map((e) => e.type).slice(1, 4)).toEqual(["message.start", "text.delta", "message.end"]);
  });

  it("precedes the retry of a request that failed before any delta", async () => {
    const store = new MemoryStore();
    const agent = defineAgent({
      name: "retried",
      model: slowModel(1, 1),
      modelRetry: { initialDelayMs: 1, maxDelayMs: 1 },
    });
    const rt = agentRuntime(agent, store);
    const fiber = await rt.start(agent, { messages: user });
    await rt.result(fiber);
    const types = (await storedEvents(store, fiber.id)).map((e) => e.type);
    expect(types.filter((t) => t.startsWith("message."))).toEqual([
      "message.start",
      "message.retry",
      "message.end",
    ]);
  });
});
