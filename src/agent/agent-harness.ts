/**
 * Runtime-side helpers for agent tests: runtimes that close after each test, a tool that records
 * every execution and deduplicates on its `idempotencyKey` as the docs ask tools to, the whole
 * store as text (to search for secrets), and the stream of a fiber. Used with `ScriptedModel` by
 * the agent's tests and property test; not exported from `fiberline/agent`.
 */

import type { FiberDefinition } from "../core/define";
import type { FiberEvent } from "../core/records";
import { createRuntime, type Runtime, type RuntimeOptions } from "../core/runtime";
import type { Store } from "../core/store";
import type { AgentInput, AgentOutput } from "./agent";
import type { ModelProvider, ToolDefinition } from "./types";

/** Runtimes made by {@link agentRuntime}, closed by {@link closeRuntimes}. */
const open: Runtime[] = [];

/**
 * A runtime for `agent` (or any fiber) on `store`, with a short lease so a second runtime can
 * recover quickly.
 */
export function agentRuntime(
  agent: FiberDefinition<AgentInput, AgentOutput> | FiberDefinition,
  store: Store,
  options: Partial<RuntimeOptions> = {},
): Runtime {
  const runtime = createRuntime({
    store,
    fibers: [agent as FiberDefinition],
    leaseMs: 30,
    pollIntervalMs: 10,
    ...options,
  });
  open.push(runtime);
  return runtime;
}

/** Closes every runtime made since the last call (a crashed one hangs, so each gets 10 ms). */
export async function closeRuntimes(): Promise<void> {
  await Promise.all(
    open.splice(0).map((r) => Promise.race([r.close(), new Promise((resolve) => setTimeout(resolve, 10))])),
  );
}

/** One execution of a {@link recordingTool}. */
export interface ToolRun {
  key: string;
  path: string;
  /** False when an earlier execution with the same key had already done the effect. */
  effect: boolean;
}

/**
 * A `delete_file`-like tool that records each execution and, like a well-behaved side-effecting
 * API, does its effect once per `idempotencyKey` and answers repeats with the first result.
 */
export function recordingTool(
  runs: ToolRun[],
  options: { name?: string; requiresApproval?: boolean } = {},
): ToolDefinition<{ path: string }, string> {
  const done = new Map<string, string>();
  return {
    name: options.name ?? "delete_file",
    description: "Deletes a file.",
    parameters: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
    requiresApproval: options.requiresApproval ?? false,
    execute: ({ path }, { idempotencyKey }) => {
      const earlier = done.get(idempotencyKey);
      runs.push({ key: idempotencyKey, path, effect: earlier === undefined });
      if (earlier !== undefined) return earlier;
      const result = `deleted ${path}`;
      done.set(idempotencyKey, result);
      return result;
    },
  };
}

/** A {@link heldAfterTool} model and what lets it go on. */
export interface HeldModel {
  model: ModelProvider;
  release(): void;
}

/**
 * `model`, except that each call made after a tool result (the reply's answer to the tool) waits
 * for `release()`: for tests that act (reload, stop, resume) in the middle of a reply.
 */
export function heldAfterTool(model: ModelProvider): HeldModel {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  return {
    model: {
      ...model,
      async *stream(request) {
        if (request.messages.some((m) => m.role === "tool")) await gate;
        yield* model.stream(request);
      },
    },
    release: () => release(),
  };
}

/** A {@link heldApprovalTool}: the tool, how many times it ran, and what lets it finish. */
export interface HeldTool {
  tool: ToolDefinition<{ path: string }, string>;
  runs(): number;
  release(): void;
}

/**
 * A `delete_file` tool that needs approval and, once approved, runs until `release()`: for tests
 * that act (reload, stop, resume) while an approved tool runs.
 */
export function heldApprovalTool(): HeldTool {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let runs = 0;
  return {
    tool: {
      name: "delete_file",
      description: "Deletes a file.",
      parameters: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
      requiresApproval: true,
      execute: async ({ path }) => {
        runs++;
        await gate;
        return `deleted ${path}`;
      },
    },
    runs: () => runs,
    release: () => release(),
  };
}

/** Everything `store` holds about every fiber (records, journals, snapshots, streams, inboxes) as one string. */
export async function storeText(store: Store): Promise<string> {
  const parts: unknown[] = [];
  for (const fiber of await store.listFibers()) {
    parts.push(
      fiber,
      await store.readJournal(fiber.id),
      await store.readSnapshot(fiber.id),
      await store.readStream(fiber.id, 0),
      await store.readInbox(fiber.id),
    );
  }
  return JSON.stringify(parts);
}

/** The fiber's stream as stored (no waiting for more). */
export async function storedEvents(store: Store, id: string): Promise<FiberEvent[]> {
  return (await store.readStream(id, 0)).map(({ seq, type, data, at }) => ({ seq, type, data, at }));
}

/** What a chat UI shows: the text of each message, honouring `message.reset`. */
export function renderedText(events: readonly FiberEvent[]): Map<string, string> {
  const text = new Map<string, string>();
  for (const ev of events) {
    const data = ev.data as { messageId?: string; delta?: string };
    if (ev.type === "message.start" || ev.type === "message.reset") text.set(String(data.messageId), "");
    if (ev.type === "text.delta")
      text.set(String(data.messageId), (text.get(String(data.messageId)) ?? "") + data.delta);
  }
  return text;
}
