/**
 * Tool-argument validation: what the model sends is parsed and checked against the tool's JSON
 * Schema, and every problem is named so the model can correct itself.
 */

import { describe, expect, it } from "vitest";
import { parseToolArguments } from "./tool-args";
import type { JsonSchema } from "./types";

const schema: JsonSchema = {
  type: "object",
  properties: {
    path: { type: "string", minLength: 1 },
    mode: { type: "string", enum: ["soft", "hard"] },
    retries: { type: "integer", minimum: 0, maximum: 5 },
    tags: { type: "array", items: { type: "string" } },
  },
  required: ["path"],
  additionalProperties: false,
};

describe("parseToolArguments", () => {
  it("accepts valid arguments and returns them parsed", () => {
    expect(parseToolArguments('{"path":"a.txt","mode":"soft","retries":2,"tags":["x"]}', schema)).toEqual({
      ok: true,
      value: { path: "a.txt", mode: "soft", retries: 2, tags: ["x"] },
    });
  });

  it("treats empty argument text as an empty object", () => {
    expect(parseToolArguments("", { type: "object", properties: {} })).toEqual({ ok: true, value: {} });
  });

  it.each([
    ['{"path": "a.txt"', /not valid JSON/],
    ["[1, 2]", /must be a JSON object/],
    ['"just a string"', /must be a JSON object/],
    ["{}", /arguments\.path is required\./],
    ['{"path": 7}', /arguments\.path must be string, got number\./],
    ['{"path": ""}', /arguments\.path must have at least 1 characters\./],
    ['{"path": "a", "mode": "medium"}', /arguments\.mode must be one of "soft", "hard"\./],
    ['{"path": "a", "retries": 2.5}', /arguments\.retries must be integer, got number\./],
    ['{"path": "a", "retries": 9}', /arguments\.retries must be <= 5\./],
    ['{"path": "a", "tags": ["ok", 3]}', /arguments\.tags\[1\] must be string, got number\./],
    ['{"path": "a", "force": true}', /arguments\.force is not an allowed property\./],
  ])("rejects %s", (text, message) => {
    const parsed = parseToolArguments(text, schema);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toMatch(message);
  });

  it("reports every problem at once", () => {
    const parsed = parseToolArguments('{"mode": "x", "extra": 1}', schema);
    expect(parsed).toEqual({
      ok: false,
      error:
        'arguments.path is required. arguments.mode must be one of "soft", "hard". arguments.extra is not an allowed property.',
    });
  });
});

describe("parseToolArguments on schemas beyond the simple subset (Zod, MCP servers)", () => {
  const rich: JsonSchema = {
    type: "object",
    properties: {
      note: { anyOf: [{ type: "string" }, { type: "null" }] },
      target: { $ref: "#/$defs/target" },
      kind: { const: "file" },
      id: { type: "string", pattern: "^[a-z]+-\\d+$" },
      paths: { type: "array", items: { type: "string" }, minItems: 1, uniqueItems: true },
    },
    required: ["kind"],
    additionalProperties: false,
    $defs: { target: { type: "object", properties: { host: { type: "string" } }, required: ["host"] } },
  };

  it("accepts arguments that match", () => {
    const text = '{"note":null,"target":{"host":"a"},"kind":"file","id":"ab-12","paths":["x"]}';
    expect(parseToolArguments(text, rich).ok).toBe(true);
  });

  it.each([
    [
      '{"kind":"file","note":3}',
      /arguments\.note must match one of its allowed forms \(anyOf\): arguments\.note must be string, got number\. Or: arguments\.note must be null, got number\./,
    ],
    ['{"kind":"file","target":{}}', /arguments\.target\.host is required\./],
    ['{"kind":"dir"}', /arguments\.kind must be "file"\./],
    ['{"kind":"file","id":"AB"}', /arguments\.id must match the pattern "\^\[a-z\]\+-\\\\d\+\$"\./],
    ['{"kind":"file","paths":[]}', /arguments\.paths must have at least 1 items\./],
    ['{"kind":"file","paths":["a","a"]}', /arguments\.paths must not repeat an item\./],
  ])("rejects %s, which the hand-written subset let through", (text, message) => {
    const parsed = parseToolArguments(text, rich);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toMatch(message);
  });

  it("reports a declared property of the wrong type once, not also as not allowed", () => {
    expect(parseToolArguments('{"kind":"file","id":7}', rich)).toEqual({
      ok: false,
      error: "arguments.id must be string, got number.",
    });
  });

  it("leaves the tool's schema object as it was", () => {
    const before = JSON.stringify(rich);
    parseToolArguments('{"kind":"x"}', rich);
    expect(JSON.stringify(rich)).toBe(before);
    expect(Object.getOwnPropertyNames(rich.properties?.target ?? {})).toEqual(["$ref"]);
  });

  it("says when the schema itself cannot be applied, instead of blaming the arguments", () => {
    const broken: JsonSchema = { type: "object", properties: { a: { $ref: "#/$defs/missing" } } };
    const parsed = parseToolArguments('{"a":1}', broken);
    expect(parsed).toMatchObject({
      ok: false,
      error: expect.stringMatching(/parameter schema cannot be applied/),
    });
  });
});
