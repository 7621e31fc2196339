/**
 * Library build: one ESM file per `exports` entry in `dist/lib`, shared code in `dist/lib/chunks`.
 * Used by `npm run build:lib`; `.d.ts` files come from `tsc -p tsconfig.build.json`, not from here.
 */
import { existsSync } from "node:fs";
import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

/** Output file name (without `.js`) -> source entry. Fixed: it mirrors package.json "exports". */
const entries: Record<string, string> = {
  index: "src/index.ts",
  sw: "src/sw/index.ts",
  client: "src/client/index.ts",
  react: "src/react/index.ts",
  agent: "src/agent/index.ts",
  testing: "src/testing/index.ts",
  edge: "src/edge/index.ts",
  extension: "src/extension/index.ts",
  ai: "src/ai/index.ts",
};

const missing = Object.values(entries).filter((file) => !existsSync(`${root}${file}`));
if (missing.length > 0) {
  throw new Error(
    `Library build: missing entry source file(s): ${missing.join(", ")}.\n` +
      'Every package.json "exports" entry needs its src/<entry>/index.ts; ' +
      "create the file (it may re-export nothing yet) or remove the entry from both " +
      'vite.lib.config.ts and package.json "exports".',
  );
}

/** Packages the library imports but never bundles: the consumer installs them. */
const externalPackages = [
  "idb",
  "comlink",
  "@cfworker/json-schema",
  "react",
  "@playwright/test",
  "playwright",
  "playwright-core",
  "ai",
  "@ai-sdk/provider",
];
const builtins = new Set(builtinModules);

function isExternal(id: string): boolean {
  if (id.startsWith("node:") || builtins.has(id)) return true;
  // `react` also covers `react/jsx-runtime` and any other subpath.
  return externalPackages.some((name) => id === name || id.startsWith(`${name}/`));
}

export default defineConfig({
  root,
  // The app's static assets must not leak into the library output.
  publicDir: false,
  oxc: {
    jsx: { runtime: "automatic", importSource: "react" },
  },
  build: {
    outDir: "dist/lib",
    emptyOutDir: true,
    target: "es2022",
    minify: false,
    sourcemap: true,
    copyPublicDir: false,
    reportCompressedSize: false,
    lib: {
      entry: Object.fromEntries(Object.entries(entries).map(([name, file]) => [name, `${root}${file}`])),
      formats: ["es"],
      fileName: (_format, entryName) => `${entryName}.js`,
    },
    rolldownOptions: {
      external: isExternal,
      output: {
        chunkFileNames: "chunks/[name]-[hash].js",
      },
    },
  },
});
