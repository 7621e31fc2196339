#!/usr/bin/env node
/**
 * `npm run simulate -- --seeds N [--from S] [--jobs K] [--verbose] [--show K]`: the deterministic
 * simulation tester (src/sim). Bundles src/sim/cli.ts with the project's esbuild into
 * node_modules/.cache (so its imports resolve against node_modules), runs it on Node, and exits
 * with its code: 0 when every schedule held every invariant, 1 when some did not.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const outdir = join(root, "node_modules", ".cache", "fiberline-sim");
mkdirSync(outdir, { recursive: true });
const outfile = join(outdir, "cli.mjs");
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
const cli = await import(pathToFileURL(outfile).href);
process.exitCode = await cli.run(process.argv.slice(2));
