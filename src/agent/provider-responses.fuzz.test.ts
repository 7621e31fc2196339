/**
 * Whatever an OpenAI-compatible endpoint sends back, fuzzed with fast-check (issue 17): arbitrary
 * bytes, SSE streams of well-formed, malformed, truncated and error chunks (LF, CRLF or CR line
 * ends, split anywhere, UTF-8 cut mid-character, the body broken off by the network), JSON bodies
 * from endpoints that ignore `stream: true`, and error statuses. The provider's stream ends in one
 * of two ways: a valid reply (well-typed events, one `finish`, last) or a `ModelError` with a
 * known `kind`, which survives the journal's serialization as itself; never another throw, never
 * a hang, never the API key in a message. Run through a whole agent on a `MemoryStore`, the fiber
 * always ends with a typed error or a result, and its journal and stream stay well-formed.
 */

import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { deserializeError, type ErrorCode, FiberlineError, serializeError } from "../core/errors";
import { MemoryStore } from "../store/memory-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, storeText } from "./agent-harness";
import { ModelError, type ModelErrorKind } from "./errors";
import { openAICompatible } from "./openai";
import type { ModelEvent, ToolDefinition } from "./types";

afterEach(closeRuntimes);

const API_KEY = "sk-FUZZ-never-in-a-message-4242";

const KINDS: readonly ModelErrorKind[] = [
  "http_status",
  "network",
  "stalled",
  "malformed_stream",
  "truncated_stream",
  "provider_error",
];

// ---- what an endpoint may send ---------------------------------------------------------------

const text = fc.oneof(
  fc.string(),
  fc.string({ unit: "grapheme" }),
  fc.constantFrom("", "[DONE]", "{", "\u0000"),
);
const toolCallDelta = fc.record(
  {
    index: fc.oneof(fc.nat(3), fc.constantFrom(-1, 1.5), fc.string()),
    id: fc.oneof(fc.string(), fc.constant(null)),
    type: fc.constant("function"),
    function: fc.record(
      { name: fc.oneof(fc.constantFrom("lookup", ""), fc.string()), arguments: fc.oneof(text, fc.integer()) },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);
const contentPart = fc.record(
  {
    type: fc.constantFrom("text", "thinking", "image_url", 3),
    text: fc.oneof(fc.string(), fc.integer()),
    thinking: fc.oneof(fc.string(), fc.array(fc.record({ type: fc.constant("text"), text: fc.string() }))),
  },
  { requiredKeys: [] },
);
const delta = fc.record(
  {
    role: fc.constantFrom("assistant", "tool", 7),
    content: fc.oneof(fc.string(), fc.constant(null), fc.array(contentPart, { maxLength: 3 })),
    reasoning_content: fc.oneof(fc.string(), fc.constant(null)),
    reasoning: fc.string(),
    refusal: fc.oneof(fc.string(), fc.constant(null)),
    tool_calls: fc.oneof(fc.array(toolCallDelta, { maxLength: 3 }), fc.anything()),
  },
  { requiredKeys: [] },
);
const choice = fc.record(
  {
    index: fc.oneof(fc.constant(0), fc.nat(2), fc.string()),
    delta: fc.oneof(delta, fc.anything()),
    message: delta,
    finish_reason: fc.oneof(
      fc.constant(null),
      fc.constantFrom("stop", "length", "tool_calls", "content_filter"),
      fc.string(),
      fc.integer(),
    ),
  },
  { requiredKeys: [] },
);
const chunkObject = fc.record(
  {
    id: fc.string(),
    object: fc.constant("chat.completion.chunk"),
    choices: fc.oneof(fc.array(choice, { maxLength: 2 }), fc.anything()),
    usage: fc.oneof(
      fc.record(
        {
          prompt_tokens: fc.oneof(fc.nat(), fc.double(), fc.string()),
          completion_tokens: fc.oneof(fc.nat(), fc.double(), fc.string()),
        },
        { requiredKeys: [] },
      ),
      fc.constant(null),
    ),
    error: fc.oneof(
      fc.string(),
      fc.record({ message: fc.string(), code: fc.oneof(fc.string(), fc.integer()) }, { requiredKeys: [] }),
      fc.constant(null),
    ),
  },
  { requiredKeys: ["choices"] },
);
/** The `data:` of one event: a chunk, any JSON, a chunk cut short, plain text or `[DONE]`. */
const data = fc.oneof(
  { weight: 6, arbitrary: chunkObject.map((c) => JSON.stringify(c)) },
  { weight: 2, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 2, arbitrary: fc.tuple(chunkObject, fc.double({ min: 0, max: 1, noNaN: true })).map(cut) },
  { weight: 1, arbitrary: text },
  { weight: 2, arbitrary: fc.constant("[DONE]") },
);
const sseEvent = fc.record(
  {
    comment: fc.string(),
    event: fc.constantFrom("error", "message", "ping", ""),
    id: fc.string(),
    retry: fc.oneof(fc.nat(), fc.string()),
    data,
  },
  { requiredKeys: ["data"] },
);
const eol = fc.constantFrom("\n", "\r\n", "\r");

/** `arbitrary` once in `every` values, else null. */
function sometimes<T>(arbitrary: fc.Arbitrary<T>, every: number): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: every - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary });
}

function cut([value, at]: [unknown, number]): string {
  const json = JSON.stringify(value);
  return json.slice(0, Math.floor(json.length * at));
}

function sseText(events: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(fc.array(fc.tuple(sseEvent, eol), { maxLength: 12 }), events).map(([list, tail]) =>
    list
      .map(([e, nl]) =>
        [
          e.comment === undefined ? undefined : `: ${e.comment}`,
          e.event === undefined ? undefined : `event: ${e.event}`,
          e.id === undefined ? undefined : `id: ${e.id}`,
          e.retry === undefined ? undefined : `retry: ${e.retry}`,
          `data: ${e.data}`,
        ]
          .filter((line) => line !== undefined)
          .map((line) => `${line}${nl}`)
          .join("")
          .concat(nl),
      )
      .join("")
      .concat(tail),
  );
}

/** One HTTP answer of the endpoint. */
interface Answer {
  /** `fetch` itself rejects (no response at all). */
  unreachable: boolean;
  status: number;
  contentType: string;
  headers: Record<string, string>;
  body: Uint8Array;
  /** Where the body is split into reads. */
  splits: number[];
  /** The body breaks off with a network error after its last byte instead of closing. */
  broken: boolean;
}

/** A well-formed reply (text, maybe a call of the agent's tool, a finish reason), cut or not. */
const plausible = fc
  .record({
    deltas: fc.array(fc.string(), { maxLength: 4 }),
    call: sometimes(fc.record({ id: fc.string(), args: fc.oneof(fc.constant('{"q":"x"}'), fc.string()) }), 2),
    finish: fc.constantFrom("stop", "tool_calls", "length"),
    done: fc.boolean(),
    cutAt: sometimes(fc.double({ min: 0, max: 1, noNaN: true }), 2),
  })
  .map(({ deltas, call, finish, done, cutAt }) => {
    const chunks: unknown[] = deltas.map((content) => ({ choices: [{ index: 0, delta: { content } }] }));
    if (call)
      chunks.push({
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [{ index: 0, id: call.id, function: { name: "lookup", arguments: call.args } }],
            },
          },
        ],
      });
    chunks.push({ choices: [{ index: 0, delta: {}, finish_reason: finish }] });
    chunks.push({ choices: [], usage: { prompt_tokens: 3, completion_tokens: deltas.length } });
    const t = chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join("") + (done ? "data: [DONE]\n\n" : "");
    return cutAt === null ? t : t.slice(0, Math.floor(t.length * cutAt));
  });

const encoder = new TextEncoder();
const body = fc.oneof(
  { weight: 5, arbitrary: plausible },
  { weight: 8, arbitrary: sseText(fc.oneof(fc.constant(""), fc.constant("data: [DONE]\n\n"), text)) },
  // A stream cut at any byte.
  {
    weight: 3,
    arbitrary: fc
      .tuple(sseText(fc.constant("")), fc.double({ min: 0, max: 1, noNaN: true }))
      .map(([t, at]) => t.slice(0, Math.floor(t.length * at))),
  },
  { weight: 2, arbitrary: chunkObject.map((c) => JSON.stringify({ ...c, choices: c.choices })) },
  { weight: 1, arbitrary: text },
);
const answer: fc.Arbitrary<Answer> = fc
  .record({
    unreachable: fc.boolean().map((b) => b && Math.random() < 0.2),
    status: fc.oneof(
      { weight: 8, arbitrary: fc.constant(200) },
      { weight: 2, arbitrary: fc.constantFrom(400, 401, 404, 408, 429, 500, 503, 204) },
    ),
    contentType: fc.oneof(
      { weight: 6, arbitrary: fc.constant("text/event-stream") },
      {
        weight: 2,
        arbitrary: fc.constantFrom("application/json", "application/problem+json", "text/plain", ""),
      },
    ),
    headers: fc.record(
      {
        "retry-after": fc.oneof(fc.string(), fc.nat(5).map(String)),
        "x-should-retry": fc.constantFrom("true", "false"),
      },
      { requiredKeys: [] },
    ),
    text: body,
    // Invalid UTF-8 spliced in (a byte that no character starts with, or half of one).
    garbage: sometimes(
      fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom(0xff, 0xc3, 0xe2, 0x80)),
      5,
    ),
    splits: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
    broken: fc.boolean(),
  })
  .map(({ text: t, garbage, splits, ...rest }) => {
    let bytes = encoder.encode(t);
    if (garbage) {
      const at = Math.floor(bytes.length * garbage[0]);
      bytes = new Uint8Array([...bytes.subarray(0, at), garbage[1], ...bytes.subarray(at)]);
    }
    return {
      ...rest,
      body: bytes,
      splits: splits.map((s) => Math.floor(s * bytes.length)).sort((a, b) => a - b),
    };
  });

/** A `fetch` that answers with `answers`, one per call (the last one again when they run out). */
function fakeFetch(answers: readonly Answer[]): typeof fetch {
  let call = 0;
  return async () => {
    const a = answers[Math.min(call++, answers.length - 1)] as Answer;
    if (a.unreachable) throw new TypeError("fetch failed");
    const pieces: Uint8Array[] = [];
    let from = 0;
    for (const at of [...a.splits, a.body.length]) {
      pieces.push(a.body.subarray(from, at));
      from = at;
    }
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = pieces.shift();
        if (next !== undefined) controller.enqueue(next);
        else if (a.broken) controller.error(new TypeError("terminated"));
        else controller.close();
      },
    });
    const nullBody = a.status === 204;
    return new Response(nullBody ? null : stream, {
      status: a.status,
      headers: { ...a.headers, ...(a.contentType ? { "content-type": a.contentType } : {}) },
    });
  };
}

function provider(answers: readonly Answer[]) {
  return openAICompatible({
    baseUrl: "https://fuzz.invalid/v1",
    apiKey: API_KEY,
    model: "fuzz",
    fetch: fakeFetch(answers),
    maxRetries: 1,
    backoff: { initialDelayMs: 0, maxDelayMs: 1 },
    maxRetryAfterMs: 0,
  });
}

type Ending = { events: ModelEvent[] } | { error: unknown } | "hang";

/** Reads a whole model call; "hang" when it has not ended 5 s later. */
async function readCall(answers: readonly Answer[]): Promise<Ending> {
  const events: ModelEvent[] = [];
  const read = (async (): Promise<Ending> => {
    try {
      for await (const ev of provider(answers).stream({
        messages: [{ role: "user", content: "hi" }],
        tools: [],
      }))
        events.push(ev);
      return { events };
    } catch (error) {
      return { error };
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<"hang">((resolve) => {
    timer = setTimeout(() => resolve("hang"), 5_000);
  });
  try {
    return await Promise.race([read, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** A reply the agent can use: known event types with well-typed fields, and one `finish`, last. */
function expectValidReply(events: ModelEvent[]): void {
  expect(events.at(-1)?.type).toBe("finish");
  expect(events.filter((e) => e.type === "finish")).toHaveLength(1);
  for (const ev of events) {
    switch (ev.type) {
      case "text":
      case "reasoning":
        expect(typeof ev.delta).toBe("string");
        expect(ev.delta).not.toBe("");
        break;
      case "tool_call":
        expect(typeof ev.id).toBe("string");
        expect(ev.id).not.toBe("");
        expect(typeof ev.name).toBe("string");
        expect(ev.name).not.toBe("");
        expect(typeof ev.arguments).toBe("string");
        break;
      case "usage":
        expect(Number.isFinite(ev.usage.promptTokens)).toBe(true);
        expect(Number.isFinite(ev.usage.completionTokens)).toBe(true);
        break;
      case "finish":
        expect(typeof ev.reason).toBe("string");
        break;
      default:
        throw new Error(`unknown event ${JSON.stringify(ev)}`);
    }
  }
}

/** A typed model error that keeps its class, code and kind through the journal's serialization. */
function expectTypedError(error: unknown): void {
  expect(error).toBeInstanceOf(ModelError);
  const model = error as ModelError;
  expect(model.code).toBe("model_error");
  expect(KINDS).toContain(model.kind);
  expect(typeof model.retryable).toBe("boolean");
  expect(model.message).not.toContain(API_KEY);
  const copy = deserializeError(structuredClone(serializeError(error)));
  expect(copy).toBeInstanceOf(ModelError);
  expect((copy as ModelError).kind).toBe(model.kind);
}

describe("the OpenAI-compatible provider, given any response", () => {
  it("ends every call with a valid reply or a typed ModelError, never another throw or a hang", async () => {
    const seen = { replies: 0, errors: new Map<string, number>() };
    await fc.assert(
      fc.asyncProperty(fc.array(answer, { minLength: 1, maxLength: 2 }), async (answers) => {
        const ending = await readCall(answers);
        expect(ending).not.toBe("hang");
        if (ending === "hang") return;
        if ("events" in ending) {
          expectValidReply(ending.events);
          seen.replies++;
        } else {
          expectTypedError(ending.error);
          const kind = (ending.error as ModelError).kind;
          seen.errors.set(kind, (seen.errors.get(kind) ?? 0) + 1);
        }
      }),
      { numRuns: 500 },
    );
    // The generators reach both endings and the main kinds of failure (else they test little).
    expect(seen.replies).toBeGreaterThan(10);
    for (const kind of ["http_status", "network", "malformed_stream", "truncated_stream", "provider_error"])
      expect(seen.errors.get(kind) ?? 0, kind).toBeGreaterThan(0);
  });
});

// ---- through a whole agent -------------------------------------------------------------------

/** Every code `FiberlineError`s of the runtime and the agent layer carry. */
const CODES: readonly ErrorCode[] = [
  "model_error",
  "max_turns",
  "tool_error",
  "step_failed",
  "non_retryable",
  "timeout",
  "invalid_argument",
  "not_cloneable",
  "payload_too_large",
  "replay_diverged",
];

const lookup: ToolDefinition<{ q?: unknown }, string> = {
  name: "lookup",
  description: "Looks something up.",
  parameters: { type: "object", properties: { q: { type: "string" } } },
  execute: ({ q }) => `found ${String(q)}`,
};

/**
 * `answer` with a `Retry-After` of at most a second: the model step waits as long as the provider
 * asks (in real time), and a property of 150 whole agent runs that drew up to 5 s each took the
 * run near the test's timeout. How a `Retry-After` is parsed is the first property's.
 */
function briefRetryAfter(given: Answer): Answer {
  const seconds = Number(given.headers["retry-after"]);
  if (!Number.isFinite(seconds) || seconds <= 1) return given;
  return { ...given, headers: { ...given.headers, "retry-after": "1" } };
}

describe("an agent whose model endpoint sends any response", () => {
  it("ends the fiber completed or failed with a typed error, its journal and stream well-formed", async () => {
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.array(answer.map(briefRetryAfter), { minLength: 1, maxLength: 4 }),
        async (answers) => {
          const store = new MemoryStore();
          const agent = defineAgent({
            name: "fuzzed",
            model: provider(answers),
            tools: [lookup],
            maxTurns: 3,
            modelRetry: { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 2 },
          });
          const runtime = agentRuntime(agent, store);
          const { id } = await runtime.start(agent, { messages: [{ role: "user", content: "go" }] });
          const ended = await Promise.race([
            runtime.result(id).then(
              () => "completed",
              () => "failed",
            ),
            new Promise((resolve) => setTimeout(() => resolve("hang"), 10_000)),
          ]);
          expect(ended).not.toBe("hang");
          const record = await store.getFiber(id);
          expect(record?.status).toBe(ended);
          let outcome = "completed";
          if (record?.status === "failed") {
            const error = deserializeError(record.error as Parameters<typeof deserializeError>[0]);
            expect(error).toBeInstanceOf(FiberlineError);
            expect(CODES).toContain((error as FiberlineError).code);
            outcome = (error as FiberlineError).code;
            // Typed all the way down: a failed model step holds the provider's ModelError.
            if (outcome !== "max_turns") {
              const chain: unknown[] = [];
              for (let e: unknown = error; e instanceof Error; e = e.cause) chain.push(e);
              const model = chain.find((e) => e instanceof ModelError) as ModelError | undefined;
              expect(model, JSON.stringify(record.error)).toBeDefined();
              expect(KINDS).toContain(model?.kind);
              outcome = `${outcome}(${model?.kind})`;
            }
          }
          const tools = (await store.readJournal(id)).some((e) => e.key.startsWith("tool"));
          const key = `${outcome}${tools ? " after a tool" : ""}`;
          seen.set(key, (seen.get(key) ?? 0) + 1);
          // The stream: 1, 2, 3... with one fiber.end, last, saying how the fiber ended.
          const stream = await store.readStream(id, 0);
          expect(stream.map((c) => c.seq)).toEqual(stream.map((_, i) => i + 1));
          expect(stream.filter((c) => c.type === "fiber.end")).toHaveLength(1);
          expect(stream.at(-1)).toMatchObject({ type: "fiber.end", data: { status: record?.status } });
          // The journal: every step settled, every recorded value storable as it is.
          const journal = await store.readJournal(id);
          for (const entry of journal) {
            expect(entry.status).not.toBe("started");
            expect(() => structuredClone(entry)).not.toThrow();
          }
          expect(await storeText(store)).not.toContain(API_KEY);
          await closeRuntimes();
        },
      ),
      { numRuns: 150 },
    );
    // Both endings happen (the generators are not all failures, nor all clean replies).
    expect([...seen.keys()].some((k) => k.startsWith("completed"))).toBe(true);
    expect([...seen.keys()].some((k) => !k.startsWith("completed"))).toBe(true);
  });
});
