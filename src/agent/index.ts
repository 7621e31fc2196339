/**
 * `fiberline/agent`: LLM agent loops as fibers. `defineAgent`, the OpenAI-compatible streaming
 * provider, the deterministic mock model, and example tools. The mock model's HTTP server and
 * Vite plugin are Node-only and live in `src/agent/mock-server.ts` (not exported here).
 */

export {
  type AgentChunk,
  type AgentInput,
  type AgentOptions,
  type AgentOutput,
  type ApprovalDecision,
  approvalEventName,
  defineAgent,
  type ModelSelection,
  type ToolCallRef,
  toolCallKey,
} from "./agent";
export { ModelError, type ModelErrorData, type ModelErrorKind } from "./errors";
export { calculatorTool, clockTool, evaluateArithmetic } from "./example-tools";
export {
  type MockReplyOptions,
  type MockTurn,
  mockCompletion,
  mockReply,
  mockTokens,
  mockToolSpecs,
} from "./mock-model";
export { type OpenAICompatibleOptions, openAICompatible } from "./openai";
export { type ParsedArgs, parseToolArguments } from "./tool-args";
export type {
  AssistantMessage,
  ChatMessage,
  FinishReason,
  ImagePart,
  JsonSchema,
  ModelEvent,
  ModelProvider,
  ModelRequest,
  ModelUsage,
  SystemMessage,
  TextPart,
  ToolCall,
  ToolContext,
  ToolDefinition,
  ToolMessage,
  ToolSpec,
  UserContentPart,
  UserMessage,
} from "./types";
