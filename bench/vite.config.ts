/**
 * Builds the bench page, its dedicated worker and its Service Worker (`sw.js` at the root, an ES
 * module worker, so it can import the shared chunks) into `bench/dist`. Used by `bench/run.mjs`;
 * the demo app's root `vite.config.ts` is separate.
 */

import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  root: here("./browser"),
  logLevel: "warn",
  build: {
    outDir: here("./dist"),
    emptyOutDir: true,
    target: "es2022",
    minify: false,
    rollupOptions: {
      input: { index: here("./browser/index.html"), sw: here("./browser/sw.ts") },
      output: {
        entryFileNames: (chunk) => (chunk.name === "sw" ? "sw.js" : "assets/[name]-[hash].js"),
      },
    },
  },
  worker: { format: "es" },
});
