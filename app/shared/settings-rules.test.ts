import { describe, expect, it } from "vitest";
import { apiKeyProblem, modelProblem } from "./settings-rules";

describe("apiKeyProblem", () => {
  it("accepts keys as providers issue them", () => {
    expect(apiKeyProblem("sk-proj-AbC_123-xyz")).toBeUndefined();
    expect(apiKeyProblem("ollama")).toBeUndefined();
  });
  it("names a character a header cannot carry, with its code point", () => {
    expect(apiKeyProblem("sk-ключ")).toContain("“к” (U+043A)");
    expect(apiKeyProblem("sk-🔑")).toContain("“🔑” (U+1F511)");
    expect(apiKeyProblem("sk key")).toContain("a space");
    expect(apiKeyProblem("sk\u0007")).toContain("a control character");
  });
  it("refuses a paste far longer than any key", () => {
    expect(apiKeyProblem("k".repeat(1_025))).toContain("1025 characters long");
  });
});

describe("modelProblem", () => {
  it("accepts ids of OpenAI, Ollama, OpenRouter and Hugging Face", () => {
    for (const id of ["gpt-4o-mini", "llama3.1:8b", "anthropic/claude-3.5-sonnet", "org/Model-7B@main+q4"])
      expect(modelProblem(id)).toBeUndefined();
  });
  it("refuses spaces, other characters and 100 KB ids", () => {
    expect(modelProblem("gpt 4o")).toContain("a space");
    expect(modelProblem("gpt-4o?")).toContain("“?”");
    expect(modelProblem("m".repeat(100_000))).toContain("100000 characters long");
  });
});
