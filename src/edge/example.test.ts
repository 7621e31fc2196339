/**
 * `examples/edge` in workerd: the example Worker (bundled as wrangler would, with `fiberline`
 * resolved to the sources as its `wrangler.toml` aliases them) runs the agent layer unchanged in a
 * Durable Object: the assistant calls the mock model through the real OpenAI-compatible provider,
 * runs the calculator tool as a journaled step and streams its answer.
 */

import { resolve } from "node:path";
import { afterAll, expect, it } from "vitest";
import { readStream } from "./testing/sse-client";
import { bundleWorker, TestWorker } from "./testing/workerd";

const worker = new TestWorker({
  script: await bundleWorker("examples/edge/src/worker.ts", {
    fiberline: resolve("src/index.ts"),
    "fiberline/agent": resolve("src/agent/index.ts"),
    "fiberline/edge": resolve("src/edge/index.ts"),
  }),
  durableObjects: { FIBERS: "FiberObject" },
});

afterAll(() => worker.dispose());

it("runs the example's assistant in a Durable Object: a tool call, then a streamed answer", async () => {
  const started = await worker.fetch("/__fiberline/fibers", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      name: "assistant",
      id: "chat-1",
      input: { messages: [{ role: "user", content: "what is 12 * 7" }] },
    }),
  });
  expect(started.status).toBe(201);
  expect(started.headers.get("access-control-allow-origin")).toBe("*");
  expect(started.headers.get("access-control-expose-headers")).toContain("x-fiberline");

  const { events, ended } = await readStream(worker, "chat-1", 0);
  expect(ended).toBe("fiber.end");
  const types = events.map((e) => e.type);
  expect(types).toContain("tool.call");
  expect(events.find((e) => e.type === "tool.result")?.data).toMatchObject({
    name: "calculator",
    result: { value: 84 },
  });
  const answer = events
    .filter((e) => e.type === "text.delta")
    .map((e) => (e.data as { delta: string }).delta)
    .join("");
  expect(answer).toContain("84");
  expect(events.at(-1)?.data).toMatchObject({ status: "completed" });
}, 20_000);
