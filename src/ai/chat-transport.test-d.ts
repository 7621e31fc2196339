/**
 * Type tests: the transport is the installed `ai`'s own `ChatTransport`, and a page's client
 * (typed by fiber map or not) or a runtime is a `ChatFiberClient` without casts (checked by
 * `npm run typecheck`).
 */

import type { ChatTransport, UIMessage } from "ai";
import { expectTypeOf } from "vitest";
import type { defineAgent } from "../agent/agent";
import type { FiberlineClient } from "../client/client";
import type { Runtime } from "../core/runtime";
import { type ChatFiberClient, FiberlineChatTransport } from "./chat-transport";

type Assistant = ReturnType<typeof defineAgent>;

expectTypeOf<FiberlineChatTransport>().toExtend<ChatTransport<UIMessage>>();
expectTypeOf<FiberlineClient<{ assistant: Assistant }>>().toExtend<ChatFiberClient>();
expectTypeOf<FiberlineClient>().toExtend<ChatFiberClient>();
expectTypeOf<Runtime>().toExtend<ChatFiberClient>();

export function build(client: FiberlineClient): FiberlineChatTransport {
  return new FiberlineChatTransport({ agent: "assistant", client });
}
