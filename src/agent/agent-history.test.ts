/**
 * `defineAgent`'s `history` option: the messages before the input are read by reference when the
 * run needs them, sent to the model, and neither stored in the input, the journal nor the result.
 */

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { MemoryStore } from "../store/memory-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, storeText } from "./agent-harness";
import { mockReply } from "./mock-model";
import { mockModelHandler } from "./mock-server";
import { openAICompatible } from "./openai";
import type { ChatMessage } from "./types";

let server: Server;
let baseUrl: string;
beforeAll(async () => {
  server = createServer(mockModelHandler({ delayMs: 0 }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
afterEach(closeRuntimes);

const EARLIER: ChatMessage[] = [
  { role: "user", content: "Remember the word PELICAN-HISTORY please" },
  { role: "assistant", content: "I will remember PELICAN-HISTORY." },
];

it("sends the referenced history to the model without storing it anywhere", async () => {
  const refs: Array<string | undefined> = [];
  const agent = defineAgent({
    name: "referenced",
    model: openAICompatible({ baseUrl, model: "mock" }),
    history: ({ input }) => {
      refs.push(input.historyRef);
      return input.historyRef === "chat-1/turn-2" ? EARLIER : [];
    },
  });
  const store = new MemoryStore();
  const rt = agentRuntime(agent, store);
  const question: ChatMessage = { role: "user", content: "And what else?" };
  const fiber = await rt.start(agent, { messages: [question], historyRef: "chat-1/turn-2" });
  const output = await rt.result(fiber);
  expect(refs).toEqual(["chat-1/turn-2"]);
  // The model answered the whole conversation (the mock's reply is a function of all of it)...
  const expected = mockReply([...EARLIER, question]).text;
  expect(expected).not.toBe(mockReply([question]).text);
  expect(output.messages).toEqual([question, { role: "assistant", content: expected }]);
  // ...but the history is nowhere in the store.
  expect(await storeText(store)).not.toContain("PELICAN-HISTORY");
});

it("fails the fiber with the history's own error when it cannot be read", async () => {
  const agent = defineAgent({
    name: "unreadable",
    model: openAICompatible({ baseUrl, model: "mock" }),
    history: () => {
      throw new Error("The conversation was deleted.");
    },
  });
  const rt = agentRuntime(agent, new MemoryStore());
  const fiber = await rt.start(agent, { messages: [{ role: "user", content: "hi" }], historyRef: "gone" });
  await expect(rt.result(fiber)).rejects.toThrow("The conversation was deleted.");
});
