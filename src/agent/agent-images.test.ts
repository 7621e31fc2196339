/**
 * User messages with images (content parts, as the Chat Completions API takes them) reach the
 * model as they were given, over real HTTP to the mock model, and stay in the agent's output
 * (issue 15, section 3).
 */

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes } from "./agent-harness";
import { mockReply } from "./mock-model";
import { mockModelHandler } from "./mock-server";
import { openAICompatible } from "./openai";
import type { ChatMessage, UserContentPart } from "./types";

// A 1x1 transparent PNG.
const PIXEL =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
const parts: UserContentPart[] = [
  { type: "text", text: "What is in these pictures?" },
  { type: "image_url", image_url: { url: PIXEL } },
  { type: "image_url", image_url: { url: "https://example.com/cat.jpg", detail: "low" } },
];

let server: Server;
let baseUrl: string;
beforeAll(async () => {
  server = createServer(mockModelHandler({ delayMs: 0 }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(async () => {
  await closeRuntimes();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe("user messages with images", () => {
  it("are sent to the model as image_url parts, and the model sees them", async () => {
    const bodies: { messages: ChatMessage[] }[] = [];
    const model = openAICompatible({
      baseUrl,
      model: "mock",
      fetch: (input, init) => {
        bodies.push(JSON.parse(String(init?.body)));
        return fetch(input, init);
      },
    });
    const agent = defineAgent({ name: "vision", model, system: "Describe images." });
    const rt = agentRuntime(agent, new MemoryStore());
    const input = { messages: [{ role: "user" as const, content: parts }] };
    const output = await rt.result(await rt.start(agent, input));

    expect(bodies).toHaveLength(1);
    expect(bodies[0]?.messages).toEqual([
      { role: "system", content: "Describe images." },
      { role: "user", content: parts },
    ]);
    expect(output.messages[0]).toEqual({ role: "user", content: parts });
    expect(output.messages.at(-1)?.content).toMatch(/^I see 2 images you sent\. /);
  });

  it("are read by the mock model for their text, so the reply is the same as for plain text", () => {
    const withImage = mockReply([
      { role: "user", content: [{ type: "text", text: "what is 12 * 7" }, parts[1] as UserContentPart] },
    ]);
    expect(withImage.toolCalls.map((c) => [c.name, c.arguments])).toEqual([
      ["calculator", JSON.stringify({ expression: "12 * 7" })],
    ]);
    expect(mockReply([{ role: "user", content: [parts[2] as UserContentPart] }]).text).toMatch(
      /^I see the image you sent\. /,
    );
  });
});
