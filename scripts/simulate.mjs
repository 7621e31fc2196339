#!/usr/bin/env node
/**
 * `npm run simulate -- --seeds N [--from S] [--jobs K] [--verbose] [--show K]`: the deterministic
 * simulation tester (src/sim). Bundles src/sim/cli.ts with the project's esbuild into
 * node_modules/.cache (so its imports resolve against node_modules), runs it on Node, and exits
 * with its code: 0 when every schedule held every invariant, 1 when some did not. Each run bundles
 * to a file of its own (its worker threads load the same file), removed when it ends, so runs side
 * by side never run each other's code.
 */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const outdir = join(root, "node_modules", ".cache", "fiberline-sim");
mkdirSync(outdir, { recursive: true });
const outfile = join(outdir, `cli-${process.pid}.mjs`);
await build({
  entryPoints: [join(root, "src", "sim", "cli.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  sourcemap: "inline",
  logLevel: "warning",
});
try {
  const cli = await import(pathToFileURL(outfile).href);
  process.exitCode = await cli.run(process.argv.slice(2));
} finally {
  rmSync(outfile, { force: true });
}
