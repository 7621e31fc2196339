#!/usr/bin/env node
/**
 * Removes build output folders given as arguments (relative to the repo root), so a build never
 * ships stale files. Used by `npm run build:lib` for `dist/types`, which `tsc` does not clean.
 */
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
for (const dir of process.argv.slice(2)) {
  if (!/^dist(\/|$)/.test(dir)) throw new Error(`clean.mjs only removes folders under dist/, got ${dir}`);
  rmSync(new URL(dir, `file://${root}`), { recursive: true, force: true });
}
