/**
 * Tests of the pure mock model: determinism, the prompts that trigger tool calls, answers from
 * tool results, the hostile reply, token splitting and prefix continuation.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { mockCompletion, mockReply, mockTokens, mockToolSpecs } from "./mock-model";
import type { ChatMessage } from "./types";

const user = (content: string): ChatMessage => ({ role: "user", content });

function toolTurn(prompt: string, results: Record<string, string>): ChatMessage[] {
  const conversation: ChatMessage[] = [user(prompt)];
  const turn = mockReply(conversation);
  const assistant: ChatMessage = {
    role: "assistant",
    content: null,
    tool_calls: turn.toolCalls.map((c) => ({
      id: c.id,
      type: "function",
      function: { name: c.name, arguments: c.arguments },
    })),
  };
  const toolMessages = turn.toolCalls.map(
    (c): ChatMessage => ({ role: "tool", tool_call_id: c.id, content: results[c.name] ?? "" }),
  );
  return [...conversation, assistant, ...toolMessages];
}

describe("mockReply prose", () => {
  it("is a pure function of the conversation", () => {
    const conversation = [
      { role: "system", content: "Be brief." } as const,
      user("Tell me about durable execution"),
    ];
    expect(mockReply(conversation)).toEqual(mockReply(structuredClone(conversation)));
    expect(mockReply([user("Tell me about durable execution!")]).text).not.toBe(
      mockReply([user("Tell me about durable execution")]).text,
    );
  });

  it("writes a few hundred characters in several sentences that mention the prompt", () => {
    const { text, toolCalls, finishReason } = mockReply([user("Tell me about durable execution")]);
    expect(toolCalls).toEqual([]);
    expect(finishReason).toBe("stop");
    expect(text).toContain("Tell me about durable execution");
    expect(text.length).toBeGreaterThan(250);
    expect(text.length).toBeLessThan(1000);
    expect(text.split(/[.!?](?:\s|$)/).filter((s) => s.trim() !== "").length).toBeGreaterThanOrEqual(4);
  });

  it("varies with earlier turns, not only the last prompt", () => {
    const first = mockReply([user("hello")]).text;
    const later = mockReply([user("hi"), { role: "assistant", content: "Hi!" }, user("hello")]).text;
    expect(later).not.toBe(first);
    expect(later).toContain("turn 2");
  });
});

describe("mockReply tool calls", () => {
  it.each([
    ["what is 12 * 7", "12 * 7"],
    ["calculate (3+4)*2", "(3+4)*2"],
    ["What's 5 plus 3?", "5 + 3"],
    ["12*7?", "12*7"],
    ["Please compute 100 / 4 for me", "100 / 4"],
  ])("asks the calculator for %j", (prompt, expression) => {
    const turn = mockReply([user(prompt)]);
    expect(turn.finishReason).toBe("tool_calls");
    expect(turn.text).toBe("");
    expect(turn.toolCalls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([
      ["calculator", { expression }],
    ]);
  });

  it.each(["Tell me about the year 2024", "I have 3 cats and 2 dogs"])(
    "does not call the calculator for %j",
    (prompt) => {
      expect(mockReply([user(prompt)]).toolCalls).toEqual([]);
    },
  );

  it("asks the clock for the time or date", () => {
    for (const prompt of ["what time is it?", "What's the date today?"]) {
      expect(mockReply([user(prompt)]).toolCalls.map((c) => [c.name, c.arguments])).toEqual([
        ["clock", "{}"],
      ]);
    }
  });

  it("calls several tools at once, with distinct deterministic ids", () => {
    const conversation = [user("what is 12 * 7 and what time is it")];
    const turn = mockReply(conversation);
    expect(turn.toolCalls.map((c) => c.name)).toEqual(["calculator", "clock"]);
    const ids = turn.toolCalls.map((c) => c.id);
    expect(new Set(ids).size).toBe(2);
    expect(ids.every((id) => /^call_[0-9a-f]{28}$/.test(id))).toBe(true);
    expect(mockReply(structuredClone(conversation)).toolCalls.map((c) => c.id)).toEqual(ids);
    expect(mockReply([user("what is 12 * 8 and what time is it")]).toolCalls.map((c) => c.id)).not.toEqual(
      ids,
    );
  });

  it("maps approval and delete prompts to delete_file, a tool that requires approval", () => {
    expect(mockToolSpecs.delete_file.requiresApproval).toBe(true);
    const turn = mockReply([user("Please delete report-2024.txt")]);
    expect(turn.toolCalls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([
      ["delete_file", { path: "report-2024.txt" }],
    ]);
    expect(
      mockReply([user("do something that needs approval")]).toolCalls.map((c) => [
        c.name,
        JSON.parse(c.arguments),
      ]),
    ).toEqual([["delete_file", { path: "notes.txt" }]]);
  });

  it("only calls the tools the request offers", () => {
    expect(
      mockReply([user("what is 12 * 7 and what time is it")], { tools: ["clock"] }).toolCalls.map(
        (c) => c.name,
      ),
    ).toEqual(["clock"]);
    const none = mockReply([user("what is 12 * 7")], { tools: [] });
    expect(none.toolCalls).toEqual([]);
    expect(none.text).toContain("what is 12 * 7");
  });
});

describe("mockReply after tool results", () => {
  it("answers with the calculator's result", () => {
    const turn = mockReply(toolTurn("what is 12 * 7", { calculator: "84" }));
    expect(turn.toolCalls).toEqual([]);
    expect(turn.finishReason).toBe("stop");
    expect(turn.text).toMatch(/^12 \* 7 = 84\. /);
  });

  it("reads JSON results and reports tool errors", () => {
    expect(
      mockReply(toolTurn("what time is it", { clock: JSON.stringify({ time: "2030-01-01T10:00:00Z" }) }))
        .text,
    ).toContain("it is 2030-01-01T10:00:00Z");
    expect(
      mockReply(toolTurn("what is 1 / 0", { calculator: JSON.stringify({ error: "division by zero" }) }))
        .text,
    ).toContain("could not evaluate 1 / 0: division by zero");
  });

  it("says so when a person denied the approval", () => {
    expect(mockReply(toolTurn("delete notes.txt", { delete_file: "Denied by the user." })).text).toContain(
      "I did not delete notes.txt",
    );
    expect(mockReply(toolTurn("delete notes.txt", { delete_file: "ok" })).text).toContain(
      "I deleted notes.txt",
    );
  });

  it("calls tools again for a new question after an answered one", () => {
    const history = toolTurn("what is 12 * 7", { calculator: "84" });
    const answered: ChatMessage[] = [
      ...history,
      { role: "assistant", content: mockReply(history).text },
      user("what time is it"),
    ];
    expect(mockReply(answered).toolCalls.map((c) => c.name)).toEqual(["clock"]);
  });
});

describe("mockReply hostile", () => {
  it("returns markdown with a script tag, an onerror image and a javascript: link", () => {
    const { text, toolCalls } = mockReply([user("show me something hostile")]);
    expect(toolCalls).toEqual([]);
    expect(text).toContain("<script>");
    expect(text).toMatch(/<img [^>]*onerror=/);
    expect(text).toMatch(/\]\(javascript:/);
  });
});

describe("mockTokens", () => {
  it("splits into word-sized pieces that join back to the text", () => {
    expect(mockTokens("Hello wonderful world!\n\nOk ")).toEqual([
      "Hell",
      "o",
      " wond",
      "erfu",
      "l",
      " worl",
      "d!",
      "\n\nOk",
      " ",
    ]);
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (text) => {
        const pieces = mockTokens(text);
        expect(pieces.join("")).toBe(text);
        expect(pieces.every((p) => p.length > 0 && p.trim().length <= 4)).toBe(true);
      }),
    );
  });
});

describe("mockCompletion", () => {
  it("continues the same reply after any assistant prefix", () => {
    const conversation = [user("Tell me about crash recovery")];
    const full = mockCompletion(conversation);
    expect(full.prefix).toBe("");
    expect(full.text).toBe(mockReply(conversation).text);
    for (const cut of [1, 5, 17, Math.floor(full.text.length / 2), full.text.length - 1]) {
      const prefix = full.text.slice(0, cut);
      const rest = mockCompletion([...conversation, { role: "assistant", content: prefix }]);
      expect(rest.prefix).toBe(prefix);
      expect(prefix + rest.text).toBe(full.text);
      expect(rest.key).toBe(full.key);
      expect(rest.usage.completionTokens).toBeLessThanOrEqual(full.usage.completionTokens);
    }
  });

  it("sends the whole reply when the prefix is not the start of it", () => {
    const conversation = [user("Tell me about crash recovery")];
    const rest = mockCompletion([...conversation, { role: "assistant", content: "Something else" }]);
    expect(rest.text).toBe(mockReply(conversation).text);
  });

  it("does not treat an assistant tool-call turn as a prefix", () => {
    const history = toolTurn("what is 12 * 7", { calculator: "84" }).slice(0, 2);
    expect(mockCompletion(history).prefix).toBe("");
  });
});
