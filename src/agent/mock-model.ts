/**
 * The deterministic mock model: its reply is a pure function of the conversation, so the demo and
 * the tests run with no account and no network, and a crashed reply can be compared with an
 * uninterrupted one. Browser-safe (no Node imports); `mock-server.ts` serves it over HTTP.
 */

import type { ChatMessage, ModelUsage, ToolCall, ToolSpec, UserContentPart } from "./types";

/** One tool call the mock model makes. */
export interface MockToolCall {
  /** Deterministic: a hash of the conversation and the call's index. */
  id: string;
  name: string;
  /** JSON text, as a model writes it. */
  arguments: string;
}

/** The mock model's whole reply to a conversation. */
export interface MockTurn {
  /** Reasoning streamed before the text, for a prompt that asks the model to think; absent otherwise. */
  reasoning?: string;
  /** Assistant text ("" on a turn that only calls tools). */
  text: string;
  toolCalls: MockToolCall[];
  finishReason: "stop" | "tool_calls";
}

/** Options of {@link mockReply}. */
export interface MockReplyOptions {
  /** The tool names the request offers; calls to other tools are not made. Default: all mock tools. */
  tools?: readonly string[];
}

/**
 * The tools the mock model knows how to call, as they should be offered to it. `delete_file`
 * stands for any tool that needs a person's approval.
 */
export const mockToolSpecs = {
  calculator: {
    name: "calculator",
    description: "Evaluates an arithmetic expression such as (3 + 4) * 2 and returns the number.",
    parameters: {
      type: "object",
      properties: { expression: { type: "string", description: "The expression to evaluate." } },
      required: ["expression"],
    },
  },
  clock: {
    name: "clock",
    description: "Returns the current date and time.",
    parameters: { type: "object", properties: {} },
  },
  delete_file: {
    name: "delete_file",
    description: "Deletes a file. Requires a person's approval.",
    parameters: {
      type: "object",
      properties: { path: { type: "string", description: "The file to delete." } },
      required: ["path"],
    },
    requiresApproval: true,
  },
} as const satisfies Record<string, ToolSpec & { requiresApproval?: boolean }>;

/**
 * The mock model's reply to `messages`: a pure function of the conversation.
 *
 * Rules, checked against the last user message: "hostile" returns markdown with a `<script>`
 * tag, an `<img onerror>` and a `javascript:` link; "approval"/"delete" call `delete_file`;
 * arithmetic ("what is 12 * 7", "calculate (3+4)*2") calls `calculator`; "what time is it" calls
 * `clock` (several rules may fire at once: parallel tool calls). Once tool results follow the
 * last user message, it answers with them. Otherwise it writes a few hundred characters that
 * mention the prompt, chosen by a hash of the conversation, opening with "I see the image you
 * sent." when the message carries images (content parts), so a demo shows they arrived. A prompt
 * with the word "think" gets a few sentences of reasoning first (streamed as `reasoning_content`),
 * whatever the reply then does.
 *
 * @example
 * mockReply([{ role: "user", content: "what is 12 * 7" }]).toolCalls[0];
 * // { id: "call_…", name: "calculator", arguments: "{\"expression\":\"12 * 7\"}" }
 */
export function mockReply(messages: readonly ChatMessage[], options: MockReplyOptions = {}): MockTurn {
  const key = conversationKey(messages);
  const lastUser = findLastIndex(messages, (m) => m.role === "user");
  const content = lastUser === -1 ? "" : (messages[lastUser]?.content ?? "");
  const prompt = typeof content === "string" ? content : textOfParts(content);
  const images = typeof content === "string" ? 0 : content.filter((part) => part.type === "image_url").length;
  const tail = messages.slice(lastUser + 1);
  if (tail.some((m) => m.role === "tool"))
    return { text: answerFromToolResults(tail, key), toolCalls: [], finishReason: "stop" };
  if (/hostile/i.test(prompt)) return { text: hostileMarkdown(prompt), toolCalls: [], finishReason: "stop" };
  const offered = options.tools === undefined ? undefined : new Set(options.tools);
  const wanted = wantedToolCalls(prompt).filter((call) => offered === undefined || offered.has(call.name));
  const reasoning = /\bthink/i.test(prompt) ? { reasoning: reasoningFor(prompt, wanted) } : {};
  if (wanted.length > 0) {
    const toolCalls = wanted.map((call, index) => ({
      id: `call_${hash(`${key}#${index}`)}${hash(`${index}#${key}`, 7)}`,
      name: call.name,
      arguments: JSON.stringify(call.args),
    }));
    return { ...reasoning, text: "", toolCalls, finishReason: "tool_calls" };
  }
  const seen = images === 0 ? "" : `I see ${images === 1 ? "the image" : `${images} images`} you sent. `;
  return {
    ...reasoning,
    text: `${seen}${proseReply(
      prompt,
      key,
      lastUser === -1 ? 0 : messages.slice(0, lastUser + 1).filter((m) => m.role === "user").length,
    )}`,
    toolCalls: [],
    finishReason: "stop",
  };
}

/** What the mock endpoint sends for one request: the reply, minus any assistant prefix it continues. */
export interface MockCompletion extends MockTurn {
  /** The assistant prefix the request ended with ("" when none). */
  prefix: string;
  /** The reply without the prefix: `prefix + text` is the uninterrupted reply's text. */
  text: string;
  /** The whole reply, prefix included. */
  turn: MockTurn;
  usage: ModelUsage;
  /** A hash of the conversation without the prefix (stable across a reply's continuations). */
  key: string;
}

/**
 * The mock endpoint's answer to a request: when the conversation ends with an assistant message
 * (a prefix to continue), it continues the same deterministic reply from where the prefix ends.
 * A prefix the reply does not start with cannot be continued; the whole reply is sent then.
 */
export function mockCompletion(
  messages: readonly ChatMessage[],
  options: MockReplyOptions = {},
): MockCompletion {
  const last = messages[messages.length - 1];
  const hasPrefix =
    last?.role === "assistant" &&
    typeof last.content === "string" &&
    last.content !== "" &&
    (last.tool_calls?.length ?? 0) === 0;
  const prefix = hasPrefix ? (last.content ?? "") : "";
  const conversation = hasPrefix ? messages.slice(0, -1) : messages;
  const turn = mockReply(conversation, options);
  const text = prefix !== "" && turn.text.startsWith(prefix) ? turn.text.slice(prefix.length) : turn.text;
  const promptChars = messages.reduce(
    (n, m) =>
      n +
      (m.content?.length ?? 0) +
      JSON.stringify(m.role === "assistant" ? (m.tool_calls ?? []) : []).length,
    0,
  );
  // A continuation continues the text: the reasoning was streamed before it.
  const reasoning = prefix === "" && turn.reasoning !== undefined ? { reasoning: turn.reasoning } : {};
  const completionTokens =
    mockTokens(reasoning.reasoning ?? "").length +
    mockTokens(text).length +
    turn.toolCalls.reduce((n, c) => n + mockTokens(c.arguments).length + 1, 0);
  return {
    ...reasoning,
    prefix,
    text,
    toolCalls: turn.toolCalls,
    finishReason: turn.finishReason,
    turn,
    usage: { promptTokens: Math.ceil(promptChars / 4), completionTokens },
    key: conversationKey(conversation),
  };
}

/**
 * Splits text into token-sized pieces (a word with its leading space, long words in pieces of up
 * to four characters); joined, the pieces are the text again.
 */
export function mockTokens(text: string): string[] {
  return Array.from(text.matchAll(/\s*\S{1,4}|\s+/g), (m) => m[0]);
}

interface WantedCall {
  name: keyof typeof mockToolSpecs;
  args: Record<string, string>;
}

function wantedToolCalls(prompt: string): WantedCall[] {
  const calls: WantedCall[] = [];
  if (/\b(?:approval|approve|delete)\b/i.test(prompt))
    calls.push({ name: "delete_file", args: { path: findPath(prompt) } });
  const expression = findExpression(prompt);
  if (expression !== undefined) calls.push({ name: "calculator", args: { expression } });
  if (
    /\b(?:what time|the time|current time|time is it|time now|what(?:'s| is) the date|today's date|what day|current date)\b/i.test(
      prompt,
    )
  ) {
    calls.push({ name: "clock", args: {} });
  }
  return calls;
}

/** The arithmetic expression the prompt asks for, if it asks for one. */
function findExpression(prompt: string): string | undefined {
  const normalized = prompt
    .replace(/×/g, "*")
    .replace(/÷/g, "/")
    .replace(/\bplus\b/gi, "+")
    .replace(/\bminus\b/gi, "-")
    .replace(/\b(?:times|multiplied by)\b/gi, "*")
    .replace(/\bdivided by\b/gi, "/")
    .replace(/(\d)\s*x\s*(?=[\d(])/gi, "$1 * ");
  for (const match of normalized.matchAll(/[-+*/^%().\d\s]+/g)) {
    const candidate = balanceParens(match[0].trim());
    if (!/\d\s*[-+*/^%]\s*[-(.\d]/.test(candidate)) continue;
    const rest = normalized.replace(match[0], " ");
    const asks = /\b(?:what(?:'s| is)|calculate|compute|evaluate|how much|solve|result of)\b/i.test(rest);
    // A bare expression ("12*7?") also counts as a question.
    if (asks || rest.replace(/[^a-z]/gi, "").length < 3) return candidate;
  }
  return undefined;
}

function balanceParens(text: string): string {
  let out = text;
  for (;;) {
    const open = (out.match(/\(/g) ?? []).length;
    const close = (out.match(/\)/g) ?? []).length;
    if (open > close && out.startsWith("(")) out = out.slice(1).trim();
    else if (close > open && out.endsWith(")")) out = out.slice(0, -1).trim();
    else return out;
  }
}

function findPath(prompt: string): string {
  const quoted = prompt.match(/["'`]([^"'`\s]+)["'`]/);
  if (quoted?.[1] !== undefined) return quoted[1];
  return prompt.match(/[\w./-]*\w\.[A-Za-z0-9]{1,8}\b/)?.[0] ?? "notes.txt";
}

function answerFromToolResults(tail: readonly ChatMessage[], key: string): string {
  const calls = new Map<string, ToolCall>();
  for (const m of tail)
    if (m.role === "assistant") for (const call of m.tool_calls ?? []) calls.set(call.id, call);
  const sentences: string[] = [];
  for (const m of tail) {
    if (m.role !== "tool") continue;
    const call = calls.get(m.tool_call_id);
    const args = parseObject(call?.function.arguments ?? "{}");
    const { value, error } = readResult(m.content);
    switch (call?.function.name) {
      case "calculator":
        sentences.push(
          error === undefined
            ? `${String(args.expression ?? "The expression")} = ${value}.`
            : `I could not evaluate ${String(args.expression ?? "that")}: ${error}.`,
        );
        break;
      case "clock":
        sentences.push(
          error === undefined
            ? `According to the clock tool, it is ${value}.`
            : `The clock tool failed: ${error}.`,
        );
        break;
      case "delete_file": {
        const path = String(args.path ?? "the file");
        sentences.push(
          error !== undefined || /\b(?:denied|rejected|declined|not approved)\b/i.test(m.content)
            ? `I did not delete ${path}: the request was not approved.`
            : `I deleted ${path} (${value}).`,
        );
        break;
      }
      default:
        sentences.push(
          error === undefined
            ? `The ${call?.function.name ?? "unknown"} tool returned ${value}.`
            : `The ${call?.function.name ?? "unknown"} tool failed: ${error}.`,
        );
    }
  }
  const afterwords = [
    "Each tool call ran as a journaled step with an idempotency key taken from its call id, so a crash cannot make it run twice.",
    "The result came back through the durable stream, so this answer survives a reload.",
    "If the browser had crashed while the tool ran, the agent would have resumed from the journal instead of starting over.",
  ];
  const random = prng(key);
  return `${sentences.join(" ")} ${afterwords[Math.floor(random() * afterwords.length)] ?? ""}`.trim();
}

function readResult(content: string): { value: string; error?: string } {
  const parsed = parseJsonValue(content);
  if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
    const record = parsed as Record<string, unknown>;
    if (record.error !== undefined)
      return {
        value: "",
        error: typeof record.error === "string" ? record.error : JSON.stringify(record.error),
      };
    for (const field of ["result", "value", "time", "now", "iso"])
      if (record[field] !== undefined) return { value: String(record[field]) };
  } else if (parsed !== undefined && parsed !== null) {
    return { value: String(parsed) };
  }
  return { value: content.trim().slice(0, 200) };
}

function hostileMarkdown(prompt: string): string {
  return [
    `You asked for "${summarize(prompt)}", so here is **hostile** markdown for the XSS test.`,
    "",
    '<script>window.__fiberlineXss = true; alert("xss from a script tag")</script>',
    "",
    '<img src="x" onerror="window.__fiberlineXss = true; alert(\'xss from onerror\')">',
    "",
    "[A harmless-looking link](javascript:window.__fiberlineXss=true;alert('xss%20from%20a%20link'))",
    "",
    "If any of the above ran, the page renders model output unsafely.",
  ].join("\n");
}

const OPENERS = [
  'You asked: "{prompt}".',
  'Here is what I can say about "{prompt}".',
  'Thanks for the question, "{prompt}".',
  'Let me answer "{prompt}" step by step.',
];
const MIDDLES = [
  "I am Fiberline's mock model, so this reply is a pure function of the conversation: the same messages always produce the same words.",
  "Every piece of this text is appended to the fiber's durable stream in IndexedDB before it reaches the page.",
  "If the browser crashes now, the agent resumes the reply where it stopped instead of starting over.",
  "A real model would reason about your question; this one picks its sentences from a hash of the conversation.",
  "The text streams slowly on purpose, so you can watch it arrive and interrupt it at any point.",
  "After a crash the partial reply is sent back as an assistant prefix, and only the remainder is generated.",
  "Tool calls run as journaled steps, each with an idempotency key derived from the model's call id.",
  "Nothing here needs an API key or the network: the model is served by the demo's own dev server.",
  "A reader that reconnects asks for the chunks after the last sequence number it saw, so it never sees a word twice.",
  "Ask me to calculate something, or what time it is, to see a tool call instead of prose.",
];
const CLOSERS = [
  "That is all for this turn.",
  "Ask a follow-up question to continue the conversation.",
  "I hope that helps.",
  "Try closing the tab mid-sentence and coming back.",
];

function proseReply(prompt: string, key: string, turnNumber: number): string {
  const random = prng(key);
  const pick = (list: readonly string[]): string => list[Math.floor(random() * list.length)] ?? "";
  const middles = [...MIDDLES];
  const chosen: string[] = [];
  for (let i = 0; i < 3; i++) chosen.push(middles.splice(Math.floor(random() * middles.length), 1)[0] ?? "");
  const turn = turnNumber > 1 ? ` This is turn ${turnNumber} of our conversation.` : "";
  return `${pick(OPENERS).replace("{prompt}", summarize(prompt))} ${chosen.join(" ")}${turn} ${pick(CLOSERS)}`;
}

/** The text of a message made of parts (images are not text). */
function textOfParts(parts: readonly UserContentPart[]): string {
  return parts
    .map((part) => (part.type === "text" ? part.text : ""))
    .filter((text) => text !== "")
    .join("\n");
}

function reasoningFor(prompt: string, wanted: readonly WantedCall[]): string {
  const plan =
    wanted.length > 0
      ? `I need ${wanted.map((call) => `the ${call.name} tool`).join(" and ")} for that, so I will call it first.`
      : "No tool is needed; I will answer in a few sentences.";
  return `The user asks: "${summarize(prompt)}". ${plan} Keep it short and plain.`;
}

function summarize(prompt: string): string {
  const flat = prompt.replace(/\s+/g, " ").trim();
  if (flat === "") return "(an empty message)";
  return flat.length > 80 ? `${flat.slice(0, 79)}…` : flat;
}

function conversationKey(messages: readonly ChatMessage[]): string {
  return hash(
    JSON.stringify(
      messages.map((m) => [
        m.role,
        m.content,
        m.role === "assistant"
          ? (m.tool_calls ?? []).map((c) => [c.id, c.function.name, c.function.arguments])
          : null,
        m.role === "tool" ? m.tool_call_id : null,
      ]),
    ),
  );
}

/** cyrb53: a fast 53-bit string hash, as 14 hex digits. Not cryptographic; only needs to be stable. */
function hash(text: string, seed = 0): string {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, "0");
}

/** mulberry32 seeded from a hex hash: a deterministic stream of numbers in [0, 1). */
function prng(key: string): () => number {
  let state = Number.parseInt(key.slice(-8), 16) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function findLastIndex<T>(items: readonly T[], test: (item: T) => boolean): number {
  for (let i = items.length - 1; i >= 0; i--) if (test(items[i] as T)) return i;
  return -1;
}

function parseJsonValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parseObject(text: string): Record<string, unknown> {
  const value = parseJsonValue(text);
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}
