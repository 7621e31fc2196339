/**
 * A scripted model for agent tests: the model's replies as data (text, tool calls with chosen
 * ids, finish reasons), served as real Chat Completions SSE bytes through `openAICompatible`'s
 * `fetch` option, with the body of any request cut off at any byte. Continuations are checked: a
 * request that ends in an assistant prefix must continue exactly what the script said. Used by
 * the agent's tests and property test; not exported from `fiberline/agent`.
 */

import { type OpenAICompatibleOptions, openAICompatible } from "./openai";
import type { ChatMessage, ModelProvider } from "./types";

/** One reply of the scripted model. */
export interface ScriptedReply {
  /** Streamed as `reasoning_content` deltas before the text (not again when continuing a prefix). */
  reasoning?: string;
  text?: string;
  toolCalls?: readonly { id: string; name: string; arguments: string }[];
  /** Default: `tool_calls` when there are tool calls, else `stop`. */
  finishReason?: string;
}

/** What the scripted model was asked. */
export interface ScriptedRequest {
  messages: ChatMessage[];
  /** The assistant prefix to continue, or `""`. */
  prefix: string;
  /** Which reply of the script answered it (0-based). */
  reply: number;
  /** How many bytes of the body were sent before the cut, or undefined when sent whole. */
  cutAt: number | undefined;
}

/** Options of {@link ScriptedModel}. */
export interface ScriptedModelOptions {
  /** Reply number n answers a request whose conversation holds n assistant messages (a prefix not counted). */
  replies: readonly ScriptedReply[];
  /** Where to cut the body of request number `request` (0-based): the connection drops after that many bytes. */
  cut?: (request: number, body: Uint8Array) => number | undefined;
  /** The error a cut connection fails with (default `TypeError("terminated")`, as undici's). */
  cutError?: (url: string, init: RequestInit | undefined) => Error;
  /** Characters per text delta (default 5; UTF-16 units, so pairs may split between deltas). */
  deltaChars?: number;
}

const encoder = new TextEncoder();

/** A model whose replies are a script, reachable over a `fetch` that never touches the network. */
export class ScriptedModel {
  /** Every request, in order. */
  readonly requests: ScriptedRequest[] = [];
  readonly #options: ScriptedModelOptions;

  constructor(options: ScriptedModelOptions) {
    this.#options = options;
  }

  /** An `openAICompatible` provider on this script (continuation on, fast retries). */
  provider(options: Partial<OpenAICompatibleOptions> = {}): ModelProvider {
    return openAICompatible({
      baseUrl: "http://scripted.invalid/v1",
      model: "scripted",
      continuation: "assistant-prefix",
      backoff: { initialDelayMs: 1, maxDelayMs: 2 },
      fetch: this.fetch,
      ...options,
    });
  }

  /** The `fetch` serving the script. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const body = JSON.parse(String(init?.body)) as { messages: ChatMessage[] };
    const last = body.messages.at(-1);
    const prefix = last?.role === "assistant" ? (last.content ?? "") : "";
    const history = prefix === "" ? body.messages : body.messages.slice(0, -1);
    const number = history.filter((m) => m.role === "assistant").length;
    const reply = this.#options.replies[number];
    const text = reply?.text ?? "";
    if (reply === undefined || !text.startsWith(prefix)) {
      const why =
        reply === undefined
          ? `no reply #${number}`
          : `prefix ${JSON.stringify(prefix)} is not the reply's start`;
      this.requests.push({ messages: body.messages, prefix, reply: number, cutAt: undefined });
      return new Response(JSON.stringify({ error: { message: `script: ${why}` } }), { status: 400 });
    }
    const bytes = encoder.encode(sseBody(reply, prefix.length, this.#options.deltaChars ?? 5));
    const cut = this.#options.cut?.(this.requests.length, bytes);
    const cutAt = cut !== undefined && cut < bytes.length ? Math.max(0, cut) : undefined;
    this.requests.push({ messages: body.messages, prefix, reply: number, cutAt });
    const signal = init?.signal;
    const end = cutAt ?? bytes.length;
    // Two reads, split mid-body, so the decoder sees a boundary too; the cut comes after both
    // were read (erroring a stream drops what is still queued in it).
    const middle = Math.floor(end / 2);
    const failure = (): Error => this.#options.cutError?.(String(input), init) ?? new TypeError("terminated");
    const pieces = [bytes.slice(0, middle), bytes.slice(middle, end)].filter((p) => p.length > 0);
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const piece = pieces.shift();
        if (piece !== undefined) controller.enqueue(piece);
        else if (cutAt === undefined) controller.close();
        else controller.error(failure());
      },
    });
    signal?.throwIfAborted();
    return new Response(stream, { headers: { "content-type": "text/event-stream" } });
  };
}

/** The SSE body of `reply` from character `from` of its text on, as an OpenAI endpoint streams it. */
export function sseBody(reply: ScriptedReply, from = 0, deltaChars = 5): string {
  const events: unknown[] = [{ choices: [{ index: 0, delta: { role: "assistant" } }] }];
  const reasoning = from === 0 ? (reply.reasoning ?? "") : "";
  for (let i = 0; i < reasoning.length; i += deltaChars)
    events.push({
      choices: [
        { index: 0, delta: { content: null, reasoning_content: reasoning.slice(i, i + deltaChars) } },
      ],
    });
  const text = (reply.text ?? "").slice(from);
  for (let i = 0; i < text.length; i += deltaChars)
    events.push({ choices: [{ index: 0, delta: { content: text.slice(i, i + deltaChars) } }] });
  for (const [index, call] of (reply.toolCalls ?? []).entries()) {
    events.push({
      choices: [
        {
          index: 0,
          delta: {
            tool_calls: [
              { index, id: call.id, type: "function", function: { name: call.name, arguments: "" } },
            ],
          },
        },
      ],
    });
    const half = Math.ceil(call.arguments.length / 2);
    for (const piece of [call.arguments.slice(0, half), call.arguments.slice(half)])
      if (piece !== "")
        events.push({
          choices: [{ index: 0, delta: { tool_calls: [{ index, function: { arguments: piece } }] } }],
        });
  }
  const finish = reply.finishReason ?? ((reply.toolCalls?.length ?? 0) > 0 ? "tool_calls" : "stop");
  events.push({ choices: [{ index: 0, delta: {}, finish_reason: finish }] });
  events.push({ choices: [], usage: { prompt_tokens: 10, completion_tokens: text.length } });
  return `${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("")}data: [DONE]\n\n`;
}
