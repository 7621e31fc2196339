/**
 * Decoding of Chat Completions chunks into `ModelEvent`s, one delta shape at a time: reasoning
 * under each name providers use, Mistral's content-part arrays, refusals, choices other than 0,
 * and errors put in the stream. The recorded streams of real providers are `interop.test.ts`.
 */

import { describe, expect, it } from "vitest";
import { ModelError } from "./errors";
import { ChunkAssembler, eventsFromCompletion } from "./openai-chunks";
import type { ModelEvent } from "./types";

const context = { label: "https://api.example/v1/chat/completions", redact: (text: string) => text };

/** The events of `chunks` sent as one stream, ending with `[DONE]`. */
function decode(...chunks: unknown[]): ModelEvent[] {
  const assembler = new ChunkAssembler(context);
  const out: ModelEvent[] = [];
  for (const chunk of [...chunks.map((c) => JSON.stringify(c)), "[DONE]"])
    out.push(...assembler.accept({ event: "message", data: chunk }, false));
  return out;
}

const delta = (d: Record<string, unknown>, finish: string | null = null) => ({
  choices: [{ index: 0, delta: d, finish_reason: finish }],
});

describe("reasoning deltas", () => {
  it("are read from reasoning_content (DeepSeek, xAI, Z.ai) and reasoning (OpenRouter, Groq)", () => {
    expect(
      decode(
        delta({ role: "assistant", content: null, reasoning_content: "Think" }),
        delta({ reasoning: " harder", channel: "analysis" }),
        delta({ content: "Done." }, "stop"),
      ),
    ).toEqual([
      { type: "reasoning", delta: "Think" },
      { type: "reasoning", delta: " harder" },
      { type: "text", delta: "Done." },
      { type: "finish", reason: "stop" },
    ]);
  });

  it("sent under both names at once are read once", () => {
    expect(decode(delta({ reasoning_content: "once", reasoning: "once" }, "stop"))).toEqual([
      { type: "reasoning", delta: "once" },
      { type: "finish", reason: "stop" },
    ]);
  });

  it("come before the text of the same delta", () => {
    expect(decode(delta({ reasoning: "r", content: "t" }, "stop")).map((e) => e.type)).toEqual([
      "reasoning",
      "text",
      "finish",
    ]);
  });

  it("of a non-streamed completion are read too", () => {
    const completion = {
      choices: [{ index: 0, message: { role: "assistant", content: "4", reasoning_content: "2+2" } }],
    };
    expect([...eventsFromCompletion(context, completion)]).toEqual([
      { type: "reasoning", delta: "2+2" },
      { type: "text", delta: "4" },
      { type: "finish", reason: "stop" },
    ]);
  });
});

describe("tool calls of a non-streamed completion", () => {
  it("without a function name, or with an empty one, are a malformed reply, as in a stream", () => {
    // Found by the provider fuzz (time-seeded, in a clean-clone CI run): an empty name passed.
    for (const fn of [{}, { name: "" }, { name: 7 }]) {
      const completion = { choices: [{ message: { tool_calls: [{ function: fn }] } }] };
      expect(() => [...eventsFromCompletion(context, completion)]).toThrow(
        expect.objectContaining({ code: "model_error", kind: "malformed_stream", retryable: false }),
      );
    }
  });
});

describe("content-part arrays (Mistral)", () => {
  it("read text parts as text and thinking parts as reasoning, then plain strings", () => {
    // mistral-small answering 17 x 23: the "3" arrives as a text part, "91" as a plain string.
    const events = decode(
      delta({ content: [{ type: "thinking", thinking: [{ type: "text", text: "17*23" }], closed: true }] }),
      delta({ content: [{ type: "thinking", thinking: [{ type: "text", text: " = 391" }] }] }),
      delta({ content: [{ type: "text", text: "3" }] }),
      delta({ content: "91" }, "stop"),
    );
    expect(events).toEqual([
      { type: "reasoning", delta: "17*23" },
      { type: "reasoning", delta: " = 391" },
      { type: "text", delta: "3" },
      { type: "text", delta: "91" },
      { type: "finish", reason: "stop" },
    ]);
  });

  it("keep the order of mixed parts in one delta, and a thinking part may be a plain string", () => {
    const events = decode(
      delta({
        content: [
          { type: "thinking", thinking: "a" },
          { type: "text", text: "b" },
          { type: "image_url", image_url: { url: "data:," } },
          { type: "thinking", thinking: [{ type: "text", text: "c" }] },
        ],
      }),
    );
    expect(events.filter((e) => e.type !== "finish")).toEqual([
      { type: "reasoning", delta: "a" },
      { type: "text", delta: "b" },
      { type: "reasoning", delta: "c" },
    ]);
  });
});

describe("other delta fields", () => {
  it("stream a refusal as the answer text", () => {
    expect(
      decode(delta({ content: null, refusal: "I'm sorry" }), delta({ refusal: ", no." }, "stop")),
    ).toEqual([
      { type: "text", delta: "I'm sorry" },
      { type: "text", delta: ", no." },
      { type: "finish", reason: "stop" },
    ]);
  });

  it("follow choice 0 only when n > 1", () => {
    const events = decode(
      { choices: [{ index: 1, delta: { content: "other" } }] },
      { choices: [{ index: 0, delta: { content: "mine" } }] },
      { choices: [{ index: 2, delta: { content: "third" }, finish_reason: "stop" }] },
      { choices: [{ index: 0, delta: {}, finish_reason: "stop" }] },
    );
    expect(events).toEqual([
      { type: "text", delta: "mine" },
      { type: "finish", reason: "stop" },
    ]);
  });
});

describe("finish reasons", () => {
  it('take an empty or "null" one on a chunk before the end for no finish (Ollama, SGLang): the tool calls after it are kept', () => {
    const call = (id: string | undefined, args: string) => ({
      tool_calls: [
        {
          index: 0,
          ...(id
            ? { id, type: "function", function: { name: "delete_file", arguments: args } }
            : { function: { arguments: args } }),
        },
      ],
    });
    for (const empty of ["", "null"]) {
      const events = decode(
        delta({ role: "assistant", content: "On it." }, empty),
        delta(call("call_1", '{"pa'), empty),
        delta(call(undefined, 'th":"a.txt"}'), empty),
        delta({}, "tool_calls"),
      );
      expect(events).toEqual([
        { type: "text", delta: "On it." },
        { type: "tool_call", id: "call_1", name: "delete_file", arguments: '{"path":"a.txt"}' },
        { type: "finish", reason: "tool_calls" },
      ]);
    }
  });
});

describe("tool-call deltas", () => {
  const whole = (id: string, name: string, args: string, index?: number) => ({
    tool_calls: [
      {
        ...(index === undefined ? {} : { index }),
        id,
        type: "function",
        function: { name, arguments: args },
      },
    ],
  });

  it("without an index, each call whole in its own chunk (Gemini's OpenAI endpoint), stay apart", () => {
    expect(
      decode(
        delta(whole("function-call-1", "get_weather", '{"location":"Sydney"}')),
        delta(whole("function-call-2", "get_time", '{"zone":"AEST"}')),
        delta({}, "stop"),
      ),
    ).toEqual([
      { type: "tool_call", id: "function-call-1", name: "get_weather", arguments: '{"location":"Sydney"}' },
      { type: "tool_call", id: "function-call-2", name: "get_time", arguments: '{"zone":"AEST"}' },
      { type: "finish", reason: "stop" },
    ]);
  });

  it("of one call whose later deltas carry another id and no name (Poolside, older mlx servers) stay one call", () => {
    expect(
      decode(
        delta(whole("call_first", "get_weather", '{"location":', 0)),
        delta({ tool_calls: [{ index: 0, id: "call_other", function: { arguments: '"Oslo"}' } }] }),
        delta({}, "tool_calls"),
      ),
    ).toEqual([
      { type: "tool_call", id: "call_first", name: "get_weather", arguments: '{"location":"Oslo"}' },
      { type: "finish", reason: "tool_calls" },
    ]);
  });

  it("with index 0 for every call (some proxies) stay apart too; indexed deltas still join by index", () => {
    expect(
      decode(
        delta(whole("call_a", "get_weather", '{"location":', 0)),
        delta({ tool_calls: [{ index: 1, id: "call_b", function: { name: "get_time", arguments: "{}" } }] }),
        delta({ tool_calls: [{ index: 0, function: { arguments: '"Oslo"}' } }] }),
        delta(whole("call_c", "lookup", '{"q":"x"}', 0)),
        delta({}, "tool_calls"),
      ),
    ).toEqual([
      { type: "tool_call", id: "call_a", name: "get_weather", arguments: '{"location":"Oslo"}' },
      { type: "tool_call", id: "call_c", name: "lookup", arguments: '{"q":"x"}' },
      { type: "tool_call", id: "call_b", name: "get_time", arguments: "{}" },
      { type: "finish", reason: "tool_calls" },
    ]);
  });
});

describe("errors in the stream", () => {
  it("with a numeric 4xx code are not retryable, and keep the code", () => {
    const error = (() => {
      try {
        decode(delta({ content: "" }, "length"), { error: { code: 400, message: "Token limit reached" } });
      } catch (thrown) {
        return thrown;
      }
    })();
    expect(error).toBeInstanceOf(ModelError);
    expect(error).toMatchObject({
      code: "model_error",
      kind: "provider_error",
      retryable: false,
      data: { providerCode: "400" },
    });
    expect((error as ModelError).message).toContain("Token limit reached");
  });

  it("with a numeric 429 or 5xx code are retryable", () => {
    for (const code of [429, 502]) {
      expect(() => decode({ error: { code, message: "upstream" } })).toThrow(
        expect.objectContaining({ retryable: true, kind: "provider_error" }),
      );
    }
  });
});
