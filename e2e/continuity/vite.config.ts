/**
 * Builds the continuity e2e's page (`index.html` + `page.ts`) and its Service Workers (`sw.ts` at
 * `/sw.js`, `sw-example.ts` at `/sw-example.js`, root scope) into `dist/e2e-continuity`; the spec serves it with
 * `vite preview` on `FIBERLINE_CONTINUITY_PORT` (default 5620).
 */

import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));
const port = Number(process.env.FIBERLINE_CONTINUITY_PORT ?? 5620);

export default defineConfig({
  root,
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../../dist/e2e-continuity", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    minify: false,
    sourcemap: true,
    rolldownOptions: {
      input: { index: `${root}index.html`, sw: `${root}sw.ts`, "sw-example": `${root}sw-example.ts` },
      output: {
        entryFileNames: (chunk) =>
          chunk.name === "sw" || chunk.name === "sw-example" ? `${chunk.name}.js` : "assets/[name]-[hash].js",
      },
    },
  },
  // examples/edge imports the package by name, as an app would.
  resolve: { alias: { fiberline: fileURLToPath(new URL("../../src/index.ts", import.meta.url)) } },
  preview: { port, strictPort: true, host: "localhost" },
});
