/**
 * Validation of a model's tool-call arguments against the tool's JSON Schema, with
 * `@cfworker/json-schema` (drafts 4, 7, 2019-09 and 2020-12, no `eval`, so it runs in a Service
 * Worker and a Durable Object). Its findings are rewritten as one sentence each that names the
 * argument (`arguments.tags[1] must be string, got number.`), so the model can correct itself.
 * Used by `defineAgent` before `execute`; failures go back to the model as tool errors.
 */

import { type OutputUnit, type Schema, type SchemaDraft, Validator } from "@cfworker/json-schema";
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

/** One validator per schema object: building one walks the whole schema. */
const validators = new WeakMap<JsonSchema, Validator>();

function validatorFor(schema: JsonSchema): Validator {
  let validator = validators.get(schema);
  if (validator === undefined) {
    // The library annotates the schema objects it is given; the tool's own stay untouched.
    validator = new Validator(structuredClone(schema) as Schema, draftOf(schema), false);
    validators.set(schema, validator);
  }
  return validator;
}

function draftOf(schema: JsonSchema): SchemaDraft {
  const declared = typeof schema.$schema === "string" ? schema.$schema : "";
  if (declared.includes("draft-04")) return "4";
  if (declared.includes("draft-07") || declared.includes("draft-06")) return "7";
  if (declared.includes("2019-09")) return "2019-09";
  return "2020-12";
}

/** Lists every way `value` breaks `schema`, each naming the path, e.g. `arguments.expression`. */
export function validate(value: unknown, schema: JsonSchema, path: string): string[] {
  let units: readonly OutputUnit[];
  try {
    const result = validatorFor(schema).validate(value);
    if (result.valid) return [];
    units = result.errors;
  } catch (error) {
    // An unresolvable `$ref` and the like: the schema is at fault, not the model's arguments.
    return [
      `The tool's parameter schema cannot be applied (${(error as Error).message}); the arguments were not checked.`,
    ];
  }
  return [...new Set(describeUnits(units, { root: schema, value, path }))];
}

interface Scope {
  root: JsonSchema;
  value: unknown;
  path: string;
}

/** Keywords whose failure only says that something inside failed: their inner units say what. */
const WRAPPERS = new Set([
  "properties",
  "patternProperties",
  "items",
  "prefixItems",
  "additionalItems",
  "unevaluatedItems",
  "unevaluatedProperties",
  "$ref",
  "$recursiveRef",
  "allOf",
  "dependentSchemas",
  "propertyNames",
  "if",
  "then",
  "else",
]);

function describeUnits(units: readonly OutputUnit[], scope: Scope): string[] {
  const out: string[] = [];
  for (let i = 0; i < units.length; i++) {
    const unit = units[i] as OutputUnit;
    const inner = innerUnits(units, i);
    if (unit.keyword === "additionalProperties") {
      // The library also runs declared properties that failed their own schema through
      // `additionalProperties`; those are reported once, by their own schema.
      const owner = schemaAt(scope.root, parentLocation(unit.keywordLocation));
      const key = /^Property "(.*)" does not match/.exec(unit.error)?.[1];
      const declared = key !== undefined && isDeclared(owner, key);
      if (declared || (isRecord(owner) && isRecord(owner.additionalProperties))) {
        if (!declared) out.push(...describeUnits(inner, scope));
      } else if (key !== undefined) {
        out.push(`${join(scope, unit.instanceLocation, key)} is not an allowed property.`);
      }
      i += inner.length;
    } else if (unit.keyword === "anyOf" || unit.keyword === "oneOf") {
      const options = describeUnits(inner, scope);
      const at = pathOf(scope, unit.instanceLocation);
      out.push(
        options.length === 0
          ? `${at} must match exactly one of its allowed forms (${unit.keyword}).`
          : `${at} must match one of its allowed forms (${unit.keyword}): ${options.join(" Or: ")}`,
      );
      i += inner.length;
    } else if (!WRAPPERS.has(unit.keyword)) {
      out.push(describe(unit, scope));
    }
  }
  return out;
}

/** The units right after `units[i]` that explain it (their keyword location lies inside its). */
function innerUnits(units: readonly OutputUnit[], i: number): OutputUnit[] {
  const parent = units[i] as OutputUnit;
  const inner: OutputUnit[] = [];
  for (const unit of units.slice(i + 1)) {
    const within =
      unit.keywordLocation.startsWith(`${parent.keywordLocation}/`) ||
      // A `false` schema reports its instance location as its keyword location.
      (unit.keyword === "false" && unit.instanceLocation.startsWith(`${parent.instanceLocation}/`));
    if (!within) break;
    inner.push(unit);
  }
  return inner;
}

/** One failed keyword as a sentence about the argument it concerns. */
function describe(unit: OutputUnit, scope: Scope): string {
  const at = pathOf(scope, unit.instanceLocation);
  const limit = schemaAt(scope.root, unit.keywordLocation);
  const value = valueAt(scope.value, unit.instanceLocation);
  switch (unit.keyword) {
    case "type": {
      const types = Array.isArray(limit) ? limit : [limit];
      return `${at} must be ${types.join(" or ")}, got ${typeName(value)}.`;
    }
    case "required":
      if (Array.isArray(limit) && isRecord(value)) {
        const missing = limit.filter((key): key is string => typeof key === "string" && !(key in value));
        return missing.map((key) => `${join(scope, unit.instanceLocation, key)} is required.`).join(" ");
      }
      break;
    case "enum":
      if (Array.isArray(limit))
        return `${at} must be one of ${limit.map((o) => JSON.stringify(o)).join(", ")}.`;
      break;
    case "const":
      return `${at} must be ${JSON.stringify(limit)}.`;
    case "minimum":
      return `${at} must be >= ${limit}.`;
    case "maximum":
      return `${at} must be <= ${limit}.`;
    case "exclusiveMinimum":
      return `${at} must be > ${limit}.`;
    case "exclusiveMaximum":
      return `${at} must be < ${limit}.`;
    case "multipleOf":
      return `${at} must be a multiple of ${limit}.`;
    case "minLength":
      return `${at} must have at least ${limit} characters.`;
    case "maxLength":
      return `${at} must have at most ${limit} characters.`;
    case "minItems":
      return `${at} must have at least ${limit} items.`;
    case "maxItems":
      return `${at} must have at most ${limit} items.`;
    case "uniqueItems":
      return `${at} must not repeat an item.`;
    case "pattern":
      return `${at} must match the pattern ${JSON.stringify(limit)}.`;
    case "format":
      return `${at} must be a valid ${limit}.`;
    case "false":
      return `${at} is not allowed.`;
  }
  // Keywords without a sentence of their own (and keywords behind a `$ref` to another document).
  return `${at}: ${unit.error}`;
}

/** `#/tags/1` under `arguments` as `arguments.tags[1]`. */
function pathOf(scope: Scope, pointer: string): string {
  let path = scope.path;
  let node = scope.value;
  for (const segment of segments(pointer)) {
    path += Array.isArray(node) && /^\d+$/.test(segment) ? `[${segment}]` : `.${segment}`;
    node = isRecord(node) || Array.isArray(node) ? (node as Record<string, unknown>)[segment] : undefined;
  }
  return path;
}

function join(scope: Scope, pointer: string, key: string): string {
  return `${pathOf(scope, pointer)}.${key}`;
}

function valueAt(value: unknown, pointer: string): unknown {
  let node = value;
  for (const segment of segments(pointer)) {
    node = isRecord(node) || Array.isArray(node) ? (node as Record<string, unknown>)[segment] : undefined;
  }
  return node;
}

/**
 * The schema value at a keyword location, following local `$ref`s the location passes through
 * (`#/properties/b/$ref/required`); undefined where it cannot be resolved.
 */
function schemaAt(root: JsonSchema, pointer: string): unknown {
  let node: unknown = root;
  for (const segment of segments(pointer)) {
    if (segment === "$ref" && isRecord(node) && typeof node.$ref === "string") {
      node = node.$ref.startsWith("#") ? schemaAt(root, node.$ref) : undefined;
      continue;
    }
    node = isRecord(node) || Array.isArray(node) ? (node as Record<string, unknown>)[segment] : undefined;
  }
  return node;
}

function parentLocation(pointer: string): string {
  return pointer.slice(0, pointer.lastIndexOf("/"));
}

function segments(pointer: string): string[] {
  const body = pointer.replace(/^#\/?/, "");
  if (body === "") return [];
  return body.split("/").map((s) => decodeURIComponent(s).replace(/~1/g, "/").replace(/~0/g, "~"));
}

function isDeclared(schema: unknown, key: string): boolean {
  if (!isRecord(schema)) return false;
  if (isRecord(schema.properties) && key in schema.properties) return true;
  const patterns = isRecord(schema.patternProperties) ? Object.keys(schema.patternProperties) : [];
  return patterns.some((pattern) => new RegExp(pattern, "u").test(key));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}
