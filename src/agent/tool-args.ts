/**
 * Validation of a model's tool-call arguments against the tool's JSON Schema (the subset models
 * are given: type, properties, required, additionalProperties, items, enum, numeric and length
 * bounds). Used by `defineAgent` before `execute`; failures go back to the model as tool errors.
 */

import type { JsonSchema } from "./types";

/** The outcome of parsing and validating tool arguments. */
export type ParsedArgs = { ok: true; value: Record<string, unknown> } | { ok: false; error: string };

/** Parses the model's JSON argument text and validates it against `schema`. */
export function parseToolArguments(text: string, schema: JsonSchema): ParsedArgs {
  let value: unknown;
  try {
    value = text.trim() === "" ? {} : JSON.parse(text);
  } catch (error) {
    return { ok: false, error: `The arguments are not valid JSON (${(error as Error).message}).` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, error: "The arguments must be a JSON object." };
  }
  const problems = validate(value, schema, "arguments");
  if (problems.length > 0) return { ok: false, error: problems.join(" ") };
  return { ok: true, value: value as Record<string, unknown> };
}

/** Lists every way `value` breaks `schema`, each naming the path, e.g. `arguments.expression`. */
export function validate(value: unknown, schema: JsonSchema, path: string): string[] {
  const problems: string[] = [];
  if (schema.type !== undefined) {
    const allowed = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!allowed.some((t) => matchesType(value, t))) {
      problems.push(`${path} must be ${allowed.join(" or ")}, got ${typeName(value)}.`);
      return problems;
    }
  }
  if (schema.enum && !schema.enum.some((option) => Object.is(option, value))) {
    problems.push(`${path} must be one of ${schema.enum.map((o) => JSON.stringify(o)).join(", ")}.`);
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum)
      problems.push(`${path} must be >= ${schema.minimum}.`);
    if (typeof schema.maximum === "number" && value > schema.maximum)
      problems.push(`${path} must be <= ${schema.maximum}.`);
  }
  if (typeof value === "string") {
    if (typeof schema.minLength === "number" && value.length < schema.minLength)
      problems.push(`${path} must have at least ${schema.minLength} characters.`);
    if (typeof schema.maxLength === "number" && value.length > schema.maxLength)
      problems.push(`${path} must have at most ${schema.maxLength} characters.`);
  }
  if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => {
      problems.push(...validate(item, schema.items as JsonSchema, `${path}[${i}]`));
    });
  }
  if (isPlainObject(value)) {
    for (const key of schema.required ?? []) {
      if (!(key in value)) problems.push(`${path}.${key} is required.`);
    }
    const properties = schema.properties ?? {};
    for (const [key, item] of Object.entries(value)) {
      const propertySchema = properties[key];
      if (propertySchema) problems.push(...validate(item, propertySchema, `${path}.${key}`));
      else if (schema.additionalProperties === false)
        problems.push(`${path}.${key} is not an allowed property.`);
      else if (typeof schema.additionalProperties === "object")
        problems.push(...validate(item, schema.additionalProperties, `${path}.${key}`));
    }
  }
  return problems;
}

function matchesType(value: unknown, type: string): boolean {
  switch (type) {
    case "object":
      return isPlainObject(value);
    case "array":
      return Array.isArray(value);
    case "integer":
      return Number.isInteger(value);
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "null":
      return value === null;
    default:
      return typeof value === type;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}
