/**
 * Two ready tools that match the mock model's tool calls: a safe arithmetic `calculator` (a small
 * recursive-descent parser, never `eval`) and a `clock`. The demo assistant and the tests use
 * them; they are also a template for writing tools.
 */

import { NonRetryableError } from "../core/errors";
import type { ToolDefinition } from "./types";

/**
 * A calculator tool: `+ - * / % ^`, parentheses, unary minus and decimals.
 *
 * @example
 * defineAgent({ name: "assistant", model, tools: [calculatorTool()] });
 */
export function calculatorTool(): ToolDefinition<
  { expression: string },
  { expression: string; value: number }
> {
  return {
    name: "calculator",
    description: "Evaluates an arithmetic expression such as (3 + 4) * 2 and returns the number.",
    parameters: {
      type: "object",
      properties: { expression: { type: "string", description: "The expression to evaluate." } },
      required: ["expression"],
      additionalProperties: false,
    },
    execute({ expression }) {
      return { expression, value: evaluateArithmetic(expression) };
    },
  };
}

/** A clock tool: the current time as ISO 8601 and in the runtime's locale. */
export function clockTool(
  now: () => number = Date.now,
): ToolDefinition<Record<string, never>, { iso: string }> {
  return {
    name: "clock",
    description: "Returns the current date and time.",
    parameters: { type: "object", properties: {} },
    execute() {
      return { iso: new Date(now()).toISOString() };
    },
  };
}

/** Evaluates an arithmetic expression; throws `NonRetryableError` on anything else. */
export function evaluateArithmetic(expression: string): number {
  const tokens = expression.match(/\d+(?:\.\d+)?|[-+*/%^()]|\S/g) ?? [];
  let pos = 0;
  const peek = () => tokens[pos];
  const fail = (why: string): never => {
    throw new NonRetryableError(`Cannot evaluate "${expression}": ${why}.`);
  };
  const primary = (): number => {
    const token = tokens[pos++];
    if (token === undefined) return fail("it ends too early");
    if (token === "(") {
      const value = sum();
      if (tokens[pos++] !== ")") fail("a parenthesis is not closed");
      return value;
    }
    if (token === "-") return -primary();
    if (token === "+") return primary();
    if (/^\d/.test(token)) return Number(token);
    return fail(`unexpected "${token}"`);
  };
  const power = (): number => {
    const base = primary();
    if (peek() === "^") {
      pos++;
      return base ** power();
    }
    return base;
  };
  const product = (): number => {
    let value = power();
    for (let op = peek(); op === "*" || op === "/" || op === "%"; op = peek()) {
      pos++;
      const rhs = power();
      value = op === "*" ? value * rhs : op === "/" ? value / rhs : value % rhs;
    }
    return value;
  };
  const sum = (): number => {
    let value = product();
    for (let op = peek(); op === "+" || op === "-"; op = peek()) {
      pos++;
      const rhs = product();
      value = op === "+" ? value + rhs : value - rhs;
    }
    return value;
  };
  const value = sum();
  if (pos < tokens.length) fail(`unexpected "${tokens[pos]}"`);
  if (!Number.isFinite(value)) fail("the result is not a finite number");
  return value;
}
