/**
 * The deterministic mock model as a `fetch` handler: an OpenAI-compatible streaming
 * `POST /v1/chat/completions`, so the example's assistant uses the real `openAICompatible`
 * provider (HTTP, SSE parsing, continuation) with no account and no network. Mounted on the
 * Worker at `/mock-model/v1` and handed to the provider as its `fetch` inside the Durable Object.
 */

import { type ChatMessage, mockCompletion, mockTokens } from "fiberline/agent";

const encoder = new TextEncoder();

/** Answers a chat-completions request with the mock model's reply, streamed piece by piece. */
export async function mockModel(request: Request, delayMs = 25): Promise<Response> {
  if (request.method !== "POST" || !new URL(request.url).pathname.endsWith("/chat/completions")) {
    return Response.json({ error: { message: "POST /v1/chat/completions only." } }, { status: 404 });
  }
  const body = (await request.json()) as {
    messages: ChatMessage[];
    tools?: Array<{ function?: { name?: string } }>;
    model?: string;
  };
  const tools = (body.tools ?? []).flatMap((tool) => (tool.function?.name ? [tool.function.name] : []));
  const completion = mockCompletion(body.messages, { tools });
  const base = {
    id: `chatcmpl-${completion.key}`,
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model: body.model ?? "mock",
  };
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const write = async (text: string, pause = true) => {
    if (pause && delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    await writer.write(encoder.encode(text));
  };
  const writer = writable.getWriter();
  void (async () => {
    await write(chunk({ role: "assistant", content: "" }), false);
    for (const piece of mockTokens(completion.text)) await write(chunk({ content: piece }));
    for (const [index, call] of completion.toolCalls.entries()) {
      const fn = { name: call.name, arguments: call.arguments };
      await write(chunk({ tool_calls: [{ index, id: call.id, type: "function", function: fn }] }));
    }
    await write(chunk({}, completion.finishReason));
    await write("data: [DONE]\n\n", false);
    await writer.close();
  })().catch((error: unknown) => writer.abort(error));

  return new Response(readable, {
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
  });
}
