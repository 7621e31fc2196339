/**
 * Tests of the mock model's HTTP surface: the exact OpenAI chunk format, JSON completions,
 * routes and errors, injected failures, and the Vite plugin in both `vite` and `vite preview`.
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, preview } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSse } from "../core/sse";
import { mockReply, mockToolSpecs } from "./mock-model";
import { mockModelHandler, mockModelPlugin } from "./mock-server";

let server: http.Server;
let base: string;

beforeAll(async () => {
  server = http.createServer(mockModelHandler({ delayMs: 0, now: () => 1_700_000_000_000 }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function post(
  body: unknown,
  headers: Record<string, string> = {},
  path = "/v1/chat/completions",
): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function chunks(response: Response): Promise<string[]> {
  if (response.body === null) throw new Error("no body");
  const out: string[] = [];
  for await (const message of readSse(response.body)) out.push(message.data);
  return out;
}

const wireTools = [mockToolSpecs.calculator, mockToolSpecs.clock].map((t) => ({
  type: "function",
  function: t,
}));

describe("mockModelHandler streaming", () => {
  it("streams text in OpenAI's chunk format, then a finish chunk, a usage chunk and [DONE]", async () => {
    const messages = [{ role: "user" as const, content: "Tell me about streams" }];
    const response = await post({
      model: "mock",
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const data = await chunks(response);
    expect(data.at(-1)).toBe("[DONE]");
    const parsed = data.slice(0, -1).map((d) => JSON.parse(d) as Record<string, unknown>);
    expect(parsed[0]).toEqual({
      id: expect.stringMatching(/^chatcmpl-/),
      object: "chat.completion.chunk",
      created: 1_700_000_000,
      model: "mock",
      system_fingerprint: null,
      choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }],
      usage: null,
    });
    const contentChunks = parsed.slice(1, -2);
    const text = contentChunks
      .map((c) => (c.choices as { delta: { content: string } }[])[0]?.delta.content ?? "")
      .join("");
    expect(text).toBe(mockReply(messages).text);
    expect(contentChunks.length).toBeGreaterThan(20);
    expect(parsed.at(-2)).toMatchObject({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] });
    expect(parsed.at(-1)).toMatchObject({
      choices: [],
      usage: { prompt_tokens: expect.any(Number), completion_tokens: contentChunks.length },
    });
  });

  it("streams tool calls with ids first and arguments split over several chunks", async () => {
    const messages = [{ role: "user" as const, content: "calculate (3+4)*2 and tell me the time" }];
    const data = await chunks(await post({ messages, tools: wireTools, stream: true }));
    const deltas = data
      .slice(0, -1)
      .map(
        (d) =>
          JSON.parse(d) as { choices: { delta: { tool_calls?: unknown[] }; finish_reason: string | null }[] },
      );
    const toolDeltas = deltas.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    const expected = mockReply(messages).toolCalls;
    expect(toolDeltas[0]).toEqual({
      index: 0,
      id: expected[0]?.id,
      type: "function",
      function: { name: "calculator", arguments: "" },
    });
    const argumentPieces = toolDeltas.filter(
      (d) => (d as { index: number; id?: string }).index === 0 && !(d as { id?: string }).id,
    );
    expect(argumentPieces.length).toBeGreaterThan(2);
    expect(
      argumentPieces.map((d) => (d as { function: { arguments: string } }).function.arguments).join(""),
    ).toBe(expected[0]?.arguments);
    expect(deltas.at(-1)?.choices[0]?.finish_reason).toBe("tool_calls");
    expect(data.some((d) => d.includes('"usage":{'))).toBe(false);
  });

  it("continues an assistant prefix with the rest of the same reply", async () => {
    const messages = [{ role: "user" as const, content: "Tell me about prefixes" }];
    const full = mockReply(messages).text;
    const prefix = full.slice(0, 33);
    const data = await chunks(
      await post({ messages: [...messages, { role: "assistant", content: prefix }], stream: true }),
    );
    const rest = data
      .slice(0, -1)
      .map(
        (d) =>
          (JSON.parse(d) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? "",
      )
      .join("");
    expect(prefix + rest).toBe(full);
  });

  it("cuts the connection after interruptAfter pieces for the first request of a key only", async () => {
    const body = {
      messages: [{ role: "user", content: "Tell me about cuts" }],
      stream: true,
      mock: { interruptAfter: 2, failKey: `cut-${Math.random()}` },
    };
    const first = await post(body);
    await expect(chunks(first)).rejects.toThrow();
    const second = await chunks(await post(body));
    expect(second.at(-1)).toBe("[DONE]");
  });
});

describe("mockModelHandler routes", () => {
  it("answers a JSON completion when stream is false", async () => {
    const messages = [{ role: "user" as const, content: "what is 12 * 7" }];
    const response = await post({ messages, tools: wireTools });
    const [call] = mockReply(messages).toolCalls;
    expect(await response.json()).toMatchObject({
      object: "chat.completion",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: call?.id,
                type: "function",
                function: { name: "calculator", arguments: call?.arguments },
              },
            ],
          },
          finish_reason: "tool_calls",
        },
      ],
      usage: {
        prompt_tokens: expect.any(Number),
        completion_tokens: expect.any(Number),
        total_tokens: expect.any(Number),
      },
    });
  });

  it("lists the mock model", async () => {
    const response = await fetch(`${base}/v1/models`);
    expect(await response.json()).toEqual({
      object: "list",
      data: [{ id: "mock", object: "model", created: 0, owned_by: "fiberline" }],
    });
  });

  it("answers OpenAI-shaped errors for bad requests and unknown routes", async () => {
    const bad = await post("{not json");
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { type: "invalid_request_error" } });
    expect((await post({ messages: [] })).status).toBe(400);
    expect((await post({ messages: [{ role: "wizard", content: "x" }] })).status).toBe(400);
    expect((await fetch(`${base}/v1/chat/completions`)).status).toBe(405);
    expect((await fetch(`${base}/v1/embeddings`)).status).toBe(404);
  });

  it("fails the first failFirst requests of a key with 503 and Retry-After: 0", async () => {
    const body = { messages: [{ role: "user", content: "hi" }], mock: { failFirst: 2 } };
    const headers = { "x-mock-fail-key": `key-${Math.random()}` };
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await post(body, headers);
      statuses.push(response.status);
      if (response.status === 503) expect(response.headers.get("retry-after")).toBe("0");
      await response.arrayBuffer();
    }
    expect(statuses).toEqual([503, 503, 200]);
  });
});

describe("mockModelPlugin", () => {
  let root: string;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "fiberline-mock-plugin-"));
    writeFileSync(join(root, "index.html"), "<!doctype html><title>x</title>");
  });

  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  async function askModel(origin: string): Promise<string> {
    const response = await fetch(new URL("/mock-model/v1/chat/completions", origin), {
      method: "POST",
      body: JSON.stringify({ messages: [{ role: "user", content: "hello plugin" }] }),
    });
    const json = (await response.json()) as { choices: { message: { content: string } }[] };
    return json.choices[0]?.message.content ?? "";
  }

  it("serves the mock model from the dev server", async () => {
    const dev = await createServer({
      root,
      configFile: false,
      logLevel: "silent",
      plugins: [mockModelPlugin({ delayMs: 0 })],
      server: { host: "127.0.0.1", port: 0, strictPort: false, ws: false },
    });
    try {
      await dev.listen();
      const origin = dev.resolvedUrls?.local[0];
      if (origin === undefined) throw new Error("the dev server has no URL");
      expect(await askModel(origin)).toBe(mockReply([{ role: "user", content: "hello plugin" }]).text);
    } finally {
      await dev.close();
    }
  });

  it("serves the mock model from vite preview", async () => {
    const server = await preview({
      root,
      configFile: false,
      logLevel: "silent",
      plugins: [mockModelPlugin({ delayMs: 0 })],
      build: { outDir: root },
      preview: { host: "127.0.0.1", port: 0, strictPort: false },
    });
    try {
      const origin = server.resolvedUrls?.local[0];
      if (origin === undefined) throw new Error("the preview server has no URL");
      expect(await askModel(origin)).toBe(mockReply([{ role: "user", content: "hello plugin" }]).text);
    } finally {
      await server.close();
    }
  });
});
