/**
 * `fiberline/ai`: the Vercel AI SDK on Fiberline. `FiberlineChatTransport` gives `useChat` a
 * reply loop that survives reloads, worker stops and browser crashes; `aiSdkModel` runs any AI
 * SDK language model as a durable agent's model. Needs `ai` (6.x) and `@ai-sdk/provider` (3.x).
 */

export {
  type AiSdkCallSettings,
  type AiSdkLanguageModel,
  type AiSdkModelOptions,
  aiSdkModel,
  type LanguageModelV4Like,
} from "./ai-sdk-model";
export { type ChatCursor, type ChatCursorStore, idbCursorStore, memoryCursorStore } from "./chat-cursors";
export {
  type ChatFiberClient,
  type ChatInputRequest,
  FiberlineChatTransport,
  type FiberlineChatTransportOptions,
  toAgentMessages,
} from "./chat-transport";
export { foldResets, isDiscardedPart, UiChunkMapper } from "./ui-chunks";
