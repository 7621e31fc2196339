/**
 * The stash and step-result payload fuzz (issue 17), shared by the Node run on `MemoryStore`
 * (`stash-payloads.fuzz.test.ts`) and the smaller run on Chromium's IndexedDB
 * (`stash-payloads.fuzz.browser.test.ts`): fiber code hands `ctx.stash` or a step any value
 * (cycles, functions, symbols, BigInt, Dates, Maps, Sets, typed arrays, class instances, deep
 * nesting, huge strings, getters that throw). Each value is either stored and read back equal to
 * what `structuredClone` makes of it, or refused with a `FiberlineError` of a stable code while
 * the snapshot, journal and stream written before it stay exactly readable and the fiber goes on.
 */

import fc from "fast-check";
import { expect } from "vitest";
import { defineFiber } from "../core/define";
import { FiberlineError } from "../core/errors";
import { createRuntime } from "../core/runtime";
import type { Store } from "../core/store";

/** The codes a refused payload may carry. */
export const REFUSAL_CODES = ["not_cloneable", "payload_too_large"] as const;

/** The payload limit the fuzz runs with (small, so "huge" is cheap to build). */
export const MAX_PAYLOAD_BYTES = 32_768;

/** How the fiber hands the value over. */
export type Via = "stash" | "step";

/** What the fiber saw. */
type Outcome =
  | { outcome: "stored" }
  | { outcome: "refused"; fiberline: boolean; code: unknown; name: string };

/** Values for the fiber, by fiber id (they need not be storable, so they cannot be its input). */
const payloads = new Map<string, { value: unknown; via: Via }>();

const BEFORE = { phase: "before", at: new Date(0), tags: new Set(["a"]) };

export const stasher = defineFiber("stasher", {
  async run(ctx): Promise<Outcome> {
    await ctx.stash(BEFORE);
    await ctx.step("before", async () => "committed");
    ctx.emit("before", { ok: true });
    const payload = payloads.get(ctx.id);
    if (!payload) throw new Error(`no payload for ${ctx.id}`);
    try {
      if (payload.via === "stash") await ctx.stash(payload.value);
      else await ctx.step("fuzz", async () => payload.value);
      return { outcome: "stored" };
    } catch (error) {
      return {
        outcome: "refused",
        fiberline: error instanceof FiberlineError,
        code: (error as { code?: unknown } | null)?.code,
        name: String((error as { name?: unknown } | null)?.name),
      };
    }
  },
});

class WithPrivate {
  #secret = 1;
  visible = "yes";
  get secret(): number {
    return this.#secret;
  }
}

/** A chain of `depth` nested objects (or Maps) around `leaf`. */
export function nested(depth: number, leaf: unknown, map: boolean): unknown {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = map ? new Map([["next", value]]) : { next: value };
  return value;
}

function cyclic(value: unknown): unknown {
  const holder: Record<string, unknown> = { value };
  holder.self = holder;
  return holder;
}

/** Any value fiber code might hand over, nasty ones included. */
export const payload: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.anything({
      withBigInt: true,
      withDate: true,
      withMap: true,
      withSet: true,
      withTypedArray: true,
      withSparseArray: true,
      withNullPrototype: true,
      withBoxedValues: true,
      withObjectString: true,
      maxDepth: 4,
    }),
  },
  { weight: 1, arbitrary: fc.anything().map(cyclic) },
  { weight: 1, arbitrary: fc.func(fc.anything()).map((f) => ({ f })) },
  { weight: 1, arbitrary: fc.string().map((s) => ({ s: Symbol(s) })) },
  { weight: 1, arbitrary: fc.constant(Symbol("top")) },
  { weight: 1, arbitrary: fc.bigInt().map((n) => ({ n, list: [n, -n] })) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: MAX_PAYLOAD_BYTES - 64, max: MAX_PAYLOAD_BYTES * 3 })
      .map((n) => ({ big: "x".repeat(n) })),
  },
  {
    weight: 1,
    arbitrary: fc
      // Deeper chains are the explicit cases of the test files: comparing them recursively
      // overflows the test's own stack.
      .tuple(fc.integer({ min: 1, max: 300 }), fc.boolean())
      .map(([depth, map]) => nested(depth, "leaf", map)),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<unknown>(
      new WithPrivate(),
      new Error("an error value"),
      /re+gex/giu,
      new Uint8Array([1, 2, 3]).buffer,
      new Float64Array([Number.NaN, -0, Number.POSITIVE_INFINITY]),
      new DataView(new ArrayBuffer(4)),
      Promise.resolve(1),
      new WeakMap(),
    ),
  },
);

/** What a store holds for the fiber, for comparisons. */
async function durable(store: Store, id: string) {
  return {
    snapshot: (await store.readSnapshot(id))?.value,
    journal: (await store.readJournal(id)).filter((e) => e.key.startsWith("before#")),
    before: (await store.readStream(id, 0)).filter((c) => c.type === "before").map((c) => c.data),
  };
}

/** What became of one value: refused (with its code), or stored and read back as `stored`. */
export type Handled = { refused: string } | { stored: unknown };

/**
 * Hands `value` to a fiber on a fresh store from `create` (by `ctx.stash` or as a step's result)
 * and checks what every outcome must keep: the fiber ends, what it committed before is intact,
 * a refusal is a `FiberlineError` with one of `REFUSAL_CODES` that leaves the snapshot as it was.
 */
export async function handOver(create: () => Store, value: unknown, via: Via): Promise<Handled> {
  const store = create();
  const runtime = createRuntime({
    store,
    fibers: [stasher],
    maxPayloadBytes: MAX_PAYLOAD_BYTES,
    leaseMs: 200,
    maxRecoveries: 2,
  });
  try {
    await runtime.recover();
    const id = `p-${Math.random().toString(36).slice(2)}`;
    payloads.set(id, { value, via });
    await runtime.start(stasher, undefined, { id });
    const outcome = await Promise.race([
      runtime.result(id),
      new Promise<"hang">((resolve) => setTimeout(() => resolve("hang"), 15_000)),
    ]);
    payloads.delete(id);
    expect(outcome).not.toBe("hang");
    const o = outcome as Outcome;
    const held = await durable(store, id);
    expect(held.journal).toMatchObject([{ status: "completed", result: "committed" }]);
    expect(held.before).toEqual([{ ok: true }]);
    if (o.outcome === "refused") {
      expect(o.fiberline, `${o.name}: ${String(o.code)}`).toBe(true);
      expect(REFUSAL_CODES).toContain(o.code);
      // Everything written before the refused value is still there, the snapshot unchanged.
      expect(held.snapshot).toStrictEqual(structuredClone(BEFORE));
      return { refused: String(o.code) };
    }
    const stored =
      via === "stash"
        ? held.snapshot
        : (await store.readJournal(id)).find((e) => e.key.startsWith("fuzz#"))?.result;
    return { stored };
  } finally {
    await runtime.close();
    await store.close();
  }
}

/** Runs the property over `numRuns` values on stores made by `create`; counts the outcomes. */
export async function checkPayloads(create: () => Store, numRuns: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(payload, fc.constantFrom<Via>("stash", "step"), async (value, via) => {
      const handled = await handOver(create, value, via);
      // A step's function is async: a promise it returns is awaited, like any async function's.
      const expected = via === "step" && value instanceof Promise ? await value : value;
      if ("stored" in handled) expect(handled.stored).toStrictEqual(structuredClone(expected));
      const key = "stored" in handled ? `${via} stored` : `${via} refused ${handled.refused}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }),
    { numRuns },
  );
  return seen;
}

/** The depth of a chain made by `nested` and its leaf, walked without recursion. */
export function chainOf(value: unknown): { depth: number; leaf: unknown } {
  let depth = 0;
  let at = value;
  for (;;) {
    if (at instanceof Map) at = at.get("next");
    else if (typeof at === "object" && at !== null && "next" in at) at = (at as { next: unknown }).next;
    else return { depth, leaf: at };
    depth++;
  }
}
