/**
 * A minimal stand-in for `vitest` inside workerd, where Vitest itself cannot run: `describe`,
 * `it` (with `it.each`), `beforeEach`, `afterEach` collect cases into a registry, and `expect` is
 * Vitest's own (`@vitest/expect` on chai), so a suite such as `runStoreContract` runs unchanged in
 * a Durable Object. Test workers get it through an esbuild alias (`vitest` -> this file); the
 * Node-side test asks the worker for the case names and runs each one as its own Vitest test.
 */

import { JestAsymmetricMatchers, JestChaiExpect, JestExtend, setState } from "@vitest/expect";
import * as chai from "chai";

chai.use(JestExtend);
chai.use(JestChaiExpect);
chai.use(JestAsymmetricMatchers);

type Hook = () => unknown;
type Body = (...args: never[]) => unknown;

interface Suite {
  name: string;
  parent: Suite | null;
  beforeEach: Hook[];
  afterEach: Hook[];
}

/** One registered test: its full name and how to run it. */
export interface TestCase {
  name: string;
  suite: Suite;
  run: () => unknown;
}

/** What running one case reports to the Node side. */
export type CaseResult = { ok: true; ms: number } | { ok: false; ms: number; error: string };

const root: Suite = { name: "", parent: null, beforeEach: [], afterEach: [] };
let current = root;

/** Every case registered so far, in registration order. */
export const cases: TestCase[] = [];

/** Vitest's `expect` (jest matchers, asymmetric matchers, `.rejects` / `.resolves`). */
export const expect = ((value: unknown, message?: string) =>
  chai.expect(value, message)) as unknown as typeof import("vitest").expect;
Object.assign(expect, chai.expect);
setState(
  {
    assertionCalls: 0,
    isExpectingAssertions: false,
    isExpectingAssertionsError: null,
    expectedAssertionsNumber: null,
    expectedAssertionsNumberErrorGen: null,
  },
  expect,
);

export function describe(name: string, body: () => void): void {
  const suite: Suite = { name, parent: current, beforeEach: [], afterEach: [] };
  current = suite;
  try {
    body();
  } finally {
    current = suite.parent ?? root;
  }
}

export function beforeEach(hook: Hook): void {
  current.beforeEach.push(hook);
}

export function afterEach(hook: Hook): void {
  current.afterEach.push(hook);
}

function register(name: string, run: () => unknown): void {
  const names: string[] = [name];
  for (let suite: Suite | null = current; suite && suite !== root; suite = suite.parent)
    names.unshift(suite.name);
  cases.push({ name: names.join(" > "), suite: current, run });
}

/** `it(name, body)` and `it.each(rows)(name, body)` with Vitest's `%s`-style name formatting. */
export const it = Object.assign((name: string, body: () => unknown) => register(name, body), {
  each:
    (rows: readonly unknown[]) =>
    (name: string, body: Body): void => {
      for (const row of rows) {
        const args = Array.isArray(row) ? row : [row];
        register(formatName(name, args), () => (body as (...a: unknown[]) => unknown)(...args));
      }
    },
});
export const test = it;

function formatName(template: string, args: readonly unknown[]): string {
  let i = 0;
  return template.replace(/%[sdifjo%]/g, (token) => {
    if (token === "%%") return "%";
    const value = args[i++];
    return typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
  });
}

/** Runs one case: `beforeEach` hooks outermost first, the body, then `afterEach` hooks innermost first. */
export async function runCase(index: number): Promise<CaseResult> {
  const testCase = cases[index];
  const started = Date.now();
  if (!testCase) return { ok: false, ms: 0, error: `no case #${index} (there are ${cases.length})` };
  const chain: Suite[] = [];
  for (let suite: Suite | null = testCase.suite; suite; suite = suite.parent) chain.unshift(suite);
  let failure: unknown;
  try {
    for (const suite of chain) for (const hook of suite.beforeEach) await hook();
    await testCase.run();
  } catch (error) {
    failure = error;
  }
  for (const suite of [...chain].reverse()) {
    for (const hook of suite.afterEach) {
      try {
        await hook();
      } catch (error) {
        failure ??= error;
      }
    }
  }
  const ms = Date.now() - started;
  if (failure === undefined) return { ok: true, ms };
  const error = failure instanceof Error ? `${failure.message}\n${failure.stack ?? ""}` : String(failure);
  return { ok: false, ms, error };
}
