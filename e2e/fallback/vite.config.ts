/**
 * Builds the fallback fixture (`index.html` + `page.ts`, no Service Worker) into
 * dist/e2e-fallback; `fallback.spec.ts` builds and serves it itself.
 */

import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  publicDir: false,
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../../dist/e2e-fallback", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    minify: false,
    sourcemap: true,
  },
});
