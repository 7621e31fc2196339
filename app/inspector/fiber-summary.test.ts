import { describe, expect, it } from "vitest";
import { summarizeFiber } from "./fiber-summary";

const titles = new Map([["c1", "What is 6 * 7?"]]);

describe("summarizeFiber", () => {
  it("an assistant reply: its prompt and its conversation", () => {
    const input = { messages: [{ role: "user", content: "What is\n6 * 7?" }], historyRef: "c1/t1" };
    expect(summarizeFiber({ name: "assistant", input }, titles)).toEqual({
      what: "“What is 6 * 7?”",
      context: "in “What is 6 * 7?”",
    });
  });
  it("says when the conversation is gone, or there never was one", () => {
    const messages = [{ role: "user", content: "hi" }];
    expect(
      summarizeFiber({ name: "assistant", input: { messages, historyRef: "gone/t1" } }, titles).context,
    ).toBe("in a deleted conversation");
    expect(summarizeFiber({ name: "assistant", input: { messages } }, titles).context).toBe(
      "started outside the chat",
    );
  });
  it("a lab fiber: its settings", () => {
    expect(summarizeFiber({ name: "lab.ticker", input: { count: 3, intervalMs: 1.5 } }, titles)).toEqual({
      what: "3 steps, 1.5 ms each",
      context: "crash lab",
    });
  });
});
