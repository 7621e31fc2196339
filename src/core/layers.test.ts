/**
 * The rule that keeps the engine apart (ARCHITECTURE.md): `src/core` imports nothing from the
 * other folders of `src`. The stores implement the engine's `Store` port (`core/store.ts`), never
 * the other way round, so the two folders cannot grow a loop again.
 */

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const core = fileURLToPath(new URL(".", import.meta.url));

describe("src/core", () => {
  it("imports only from src/core (tests aside)", () => {
    const sources = readdirSync(core).filter(
      (name) => name.endsWith(".ts") && !name.endsWith(".test.ts") && !name.endsWith(".test-d.ts"),
    );
    expect(sources.length).toBeGreaterThan(10);
    const outside: string[] = [];
    for (const name of sources) {
      const text = readFileSync(join(core, name), "utf8");
      for (const match of text.matchAll(/from\s+"(\.[^"]*)"/g)) {
        if (match[1]?.startsWith("../")) outside.push(`${name}: ${match[1]}`);
      }
    }
    expect(outside).toEqual([]);
  });
});
