/**
 * No credential reaches the journal or the stream: after every failure path of a model call
 * (unreachable endpoint, a platform error that quotes the URL, bodies and mid-stream errors that
 * echo the key, bodies that do not parse), the whole store is searched for each secret, in
 * messages, stacks and the cause chain (issue 20, item 3).
 */

import { afterEach, describe, expect, it } from "vitest";
import { serializeError } from "../core/errors";
import { MemoryStore } from "../store/memory-store";
import { defineAgent } from "./agent";
import { agentRuntime, closeRuntimes, storeText } from "./agent-harness";
import { openAICompatible } from "./openai";
import { sseBody } from "./scripted-model";

afterEach(closeRuntimes);

const API_KEY = "sk-live-7d1c0ffee-SECRET";
const USER = "agent-user";
const PASSWORD = "p@ss:w0rd/SECRET";
const HEADER_TOKEN = "hdr-token-SECRET-42";
const ENCODED_PASSWORD = encodeURIComponent(PASSWORD);
const BASIC = btoa(`${USER}:${PASSWORD}`);
/** Short enough for a `JSON.parse` error to quote it whole. */
const SHORT_KEY = "k3y-42xy";
const SECRETS = [API_KEY, PASSWORD, ENCODED_PASSWORD, BASIC, HEADER_TOKEN, SHORT_KEY];

type Fetch = (url: string, init: RequestInit) => Promise<Response>;

/** Runs one agent call to failure with `fetch` and returns everything the store and the error hold. */
async function failWith(options: { baseUrl: string; apiKey?: string; fetch?: Fetch }): Promise<string> {
  const model = openAICompatible({
    baseUrl: options.baseUrl,
    model: "m",
    headers: { "x-api-token": HEADER_TOKEN },
    maxRetries: 1,
    backoff: { initialDelayMs: 1, maxDelayMs: 1 },
    ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
    ...(options.fetch === undefined ? {} : { fetch: options.fetch as typeof fetch }),
  });
  const agent = defineAgent({ name: "leaky", model, modelRetry: { maxAttempts: 2, initialDelayMs: 1 } });
  const store = new MemoryStore();
  const rt = agentRuntime(agent, store);
  const fiber = await rt.start(agent, { messages: [{ role: "user", content: "hi" }] });
  const error = await rt.result(fiber).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeDefined();
  return (await storeText(store)) + JSON.stringify(serializeError(error));
}

function expectNoSecret(text: string): void {
  for (const secret of SECRETS) expect(text, `found ${secret}`).not.toContain(secret);
}

/** A platform error that quotes everything it was given, two causes deep, as undici's do. */
function quotingFetch(): Fetch {
  return async (url, init) => {
    const headers = JSON.stringify(init.headers);
    throw new TypeError(`fetch failed for ${url}`, {
      cause: new Error(`connect ECONNREFUSED ${url}`, { cause: new Error(`request headers ${headers}`) }),
    });
  };
}

function respond(body: string, init: ResponseInit): Fetch {
  return async () => new Response(body, init);
}

const sse = { "content-type": "text/event-stream" };

describe("credentials stay out of the journal and the stream", () => {
  it("a password in baseUrl is sent as Basic auth and never left in the URL", async () => {
    const seen: { url: string; authorization: string | undefined }[] = [];
    const model = openAICompatible({
      baseUrl: `https://${USER}:${ENCODED_PASSWORD}@models.example/v1`,
      model: "m",
      fetch: (async (url: string, init: RequestInit) => {
        seen.push({ url, authorization: (init.headers as Record<string, string>).authorization });
        return new Response(sseBody({ text: "hello" }), { headers: sse });
      }) as typeof fetch,
    });
    const events = [];
    for await (const event of model.stream({ messages: [], tools: [] })) events.push(event);
    expect(seen).toEqual([
      { url: "https://models.example/v1/chat/completions", authorization: `Basic ${BASIC}` },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop" });
  });

  it("URL credentials together with apiKey are rejected without quoting them", () => {
    let error: unknown;
    try {
      openAICompatible({ baseUrl: `https://${USER}:${ENCODED_PASSWORD}@h/v1`, model: "m", apiKey: API_KEY });
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: "invalid_argument" });
    expectNoSecret(JSON.stringify(serializeError(error)));
  });

  it("the real fetch refusing a URL with credentials leaks nothing", async () => {
    // Port 1 on loopback refuses at once: no network is needed.
    const text = await failWith({ baseUrl: `http://${USER}:${ENCODED_PASSWORD}@127.0.0.1:1/v1` });
    expect(text).toContain("model_error");
    expectNoSecret(text);
  });

  it("a platform error that quotes the URL and headers in its causes leaks nothing", async () => {
    const text = await failWith({
      baseUrl: `http://${USER}:${ENCODED_PASSWORD}@127.0.0.1:1/v1`,
      fetch: quotingFetch(),
    });
    expect(text).toContain("ECONNREFUSED");
    expectNoSecret(text);
    const keyed = await failWith({
      baseUrl: "http://127.0.0.1:1/v1",
      apiKey: API_KEY,
      fetch: quotingFetch(),
    });
    expect(keyed).toContain("ECONNREFUSED");
    expectNoSecret(keyed);
  });

  it("bodies that echo the key, parse or not, leak nothing", async () => {
    const bodies: Fetch[] = [
      respond(JSON.stringify({ error: { message: `bad key ${API_KEY}`, code: API_KEY } }), { status: 401 }),
      respond(`data: ${API_KEY} is not json\n\ndata: {}\n\n`, { headers: sse }),
      respond(`${API_KEY} is not json either`, { headers: { "content-type": "application/json" } }),
      respond(`data: {"error":{"message":"echo ${API_KEY}","code":"server_error"}}\n\n`, { headers: sse }),
      respond(`data: {"choices":[{"index":0,"delta":{"content":"cut ${API_KEY.slice(0, 3)}`, {
        headers: sse,
      }),
    ];
    for (const fetch of bodies) {
      const text = await failWith({ baseUrl: "http://h.invalid/v1", apiKey: API_KEY, fetch });
      expect(text).toContain("model_error");
      expectNoSecret(text);
    }
    for (const contentType of ["text/event-stream", "application/json"]) {
      const fetch = respond(`${contentType === "application/json" ? "" : "data: "}${SHORT_KEY} oops\n\n`, {
        headers: { "content-type": contentType },
      });
      const text = await failWith({ baseUrl: "http://h.invalid/v1", apiKey: SHORT_KEY, fetch });
      expect(text).toContain("not valid JSON");
      expectNoSecret(text);
    }
  });
});
