/**
 * The demo's deterministic mock model, answered inside the extension's worker: the same replies
 * the demo's dev server streams over HTTP (`mockCompletion` of `fiberline/agent`), token by token
 * with a delay, with no server and no network. It continues an assistant prefix, so a reply cut
 * off by a worker stop resumes where it stopped.
 */

import { type ModelProvider, mockCompletion, mockTokens } from "../../../src/agent/index";
import { sleep } from "../../../src/core/sleep";

/** A mock model that streams `delayMs` apart per token. */
export function inWorkerMockModel(options: { delayMs?: number } = {}): ModelProvider {
  const delayMs = options.delayMs ?? 40;
  return {
    name: "mock",
    model: "mock",
    supportsContinuation: true,
    async *stream(request) {
      const messages = request.prefix
        ? [...request.messages, { role: "assistant" as const, content: request.prefix }]
        : request.messages;
      const completion = mockCompletion(messages, { tools: request.tools.map((tool) => tool.name) });
      for (const piece of mockTokens(completion.text)) {
        await sleep(delayMs, request.signal);
        yield { type: "text", delta: piece };
      }
      for (const call of completion.toolCalls) {
        yield { type: "tool_call", id: call.id, name: call.name, arguments: call.arguments };
      }
      yield { type: "finish", reason: completion.finishReason };
    },
  };
}
