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
export { toAgentMessages } from "./chat-input";
export {
  type ChatFiberClient,
  type ChatInputRequest,
  type ChatResume,
  FiberlineChatTransport,
  type FiberlineChatTransportOptions,
} from "./chat-transport";
export { foldResets, isDiscardedPart, UiChunkMapper, type UiChunkMapperOptions } from "./ui-chunks";
