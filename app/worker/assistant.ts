/**
 * The demo's assistant: an agent fiber with a calculator, a clock and an approval-gated
 * `delete_file` tool. Its model is chosen per run from the worker's settings, so the API key is
 * read from the worker's storage at call time and never enters the journal or the stream.
 */

import {
  calculatorTool,
  clockTool,
  defineAgent,
  type ModelProvider,
  type ModelSelection,
  openAICompatible,
  type ToolDefinition,
} from "../../src/agent/index";
import { readHistory } from "./chat-history";
import { readApiKey, readSettings, recordDeletion } from "./demo-db";
import { MODEL_RETRY, watchModel } from "./model-watch";

/** Where the demo's dev and preview server serve the mock model. */
export const MOCK_BASE_URL = "/mock-model/v1";

/** A tool that needs a person's approval; its "deletion" is only recorded. */
function deleteFileTool(): ToolDefinition<{ path: string }, { path: string; result: string }> {
  return {
    name: "delete_file",
    description: "Deletes a file. Requires a person's approval.",
    parameters: {
      type: "object",
      properties: { path: { type: "string", description: "The file to delete." } },
      required: ["path"],
    },
    requiresApproval: true,
    async execute({ path }, { idempotencyKey }) {
      await recordDeletion(idempotencyKey, path);
      return { path, result: "recorded in the demo's deletion log; no real file was touched" };
    },
  };
}

/**
 * The provider the settings choose right now, watched for the page (`model-watch.ts`). It makes
 * one request per attempt (`maxRetries: 0`): the agent's `MODEL_RETRY` is the only retry loop,
 * so the attempts the page shows are all there are.
 */
export async function selectModel({ fiberId }: Pick<ModelSelection, "fiberId">): Promise<ModelProvider> {
  const settings = await readSettings();
  if (settings.provider === "custom") {
    // Decrypted here, for this provider only (secrets.ts); the provider sends it as a header.
    const apiKey = await readApiKey(settings);
    return watchModel(
      fiberId,
      openAICompatible({
        name: "custom",
        baseUrl: settings.baseUrl,
        model: settings.model,
        maxRetries: 0,
        ...(apiKey ? { apiKey } : {}),
        continuation: settings.continuation ? "assistant-prefix" : "none",
      }),
    );
  }
  return watchModel(
    fiberId,
    openAICompatible({
      name: "mock",
      baseUrl: MOCK_BASE_URL,
      model: "mock",
      maxRetries: 0,
      continuation: "assistant-prefix",
      headers: { "x-mock-delay-ms": String(settings.mockDelayMs) },
    }),
  );
}

/** The assistant's system prompt (the crash suite computes the mock model's replies with it). */
export const ASSISTANT_SYSTEM_PROMPT =
  "You are the Fiberline demo assistant. Answer briefly. Use the calculator for arithmetic, the clock for the time, and delete_file only when asked to delete a file.";

/**
 * The assistant fiber: `start("assistant", { messages })`, or from the chat
 * `{ messages: [user message], historyRef: "<conversation>/<turn>" }`, whose earlier messages the
 * worker reads from the chat's database instead of carrying them in every input.
 */
export const assistant = defineAgent({
  name: "assistant",
  model: selectModel,
  history: readHistory,
  tools: [calculatorTool(), clockTool(), deleteFileTool()],
  system: ASSISTANT_SYSTEM_PROMPT,
  maxTurns: 6,
  modelRetry: MODEL_RETRY,
  // Each attempt of a tool gets 30 s: a tool that hangs is stopped, retried, then reported to the
  // model as not finished in time, instead of stalling the reply. Keep one on any tool of yours.
  toolTimeoutMs: 30_000,
});
