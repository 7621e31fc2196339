/**
 * Builds the example extension into `examples/extension/dist` (`npm run build:extension`): the
 * background worker as `background.js` (an ES module, as manifest.json declares it), the side
 * panel page, and `public/manifest.json` copied as is. Load the folder unpacked in Chrome
 * (chrome://extensions, Developer mode, "Load unpacked"); the e2e suite loads it the same way.
 */
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "./",
  build: {
    outDir: fileURLToPath(new URL("./dist", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // Extension pages may not run inline scripts; the worker cannot load a preload helper.
    modulePreload: false,
    sourcemap: true,
    rolldownOptions: {
      input: {
        sidepanel: fileURLToPath(new URL("./sidepanel.html", import.meta.url)),
        background: fileURLToPath(new URL("./src/background.ts", import.meta.url)),
      },
      output: {
        entryFileNames: (chunk) =>
          chunk.name === "background" ? "background.js" : "assets/[name]-[hash].js",
      },
    },
  },
});
