/**
 * The demo app's build (`npm run build:app`, `npm start`): the React PWA in `app/` and its
 * ES-module Service Worker `app/sw.ts`, emitted as `/sw.js` at the root scope with the app shell's
 * precache manifest injected (vite-plugin-pwa, injectManifest). Both the dev server and
 * `vite preview` serve the mock model at `/mock-model/v1`; preview listens on a fixed port, since
 * IndexedDB and the worker registration are keyed by origin, port included.
 */
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig, type Plugin, runnerImport } from "vite";
import { VitePWA } from "vite-plugin-pwa";
import type * as MockServer from "./src/agent/mock-server";

const root = fileURLToPath(new URL("./app", import.meta.url));

/**
 * The demo's fixed port (dev and preview). `FIBERLINE_APP_PORT` moves it, and the build with it
 * (to `dist/app-<port>`), so a second e2e run on the same machine and checkout neither collides on
 * the port nor empties the folder the first run's preview serves (playwright.config.ts reads it too).
 */
export const DEMO_PORT = Number(process.env.FIBERLINE_APP_PORT ?? 5199);
const outDir = DEMO_PORT === 5199 ? "./dist/app" : `./dist/app-${DEMO_PORT}`;

/**
 * The mock model's server, loaded through Vite's module runner rather than imported: the config
 * file is bundled before it runs, and that bundler warns on every build about the library's
 * extensionless imports (`configLoader: 'native'` will not resolve them), which the runner does.
 */
async function loadMockServer(): Promise<typeof MockServer> {
  const entry = fileURLToPath(new URL("./src/agent/mock-server.ts", import.meta.url));
  return (await runnerImport<typeof MockServer>(entry)).module;
}

/**
 * The worker is one file: vite-plugin-pwa asks for that with Rollup's `inlineDynamicImports`,
 * which Vite 8 (Rolldown) warns is deprecated on every build; this says it as `codeSplitting: false`.
 */
function oneChunkWorker(): Plugin {
  return {
    name: "fiberline:one-chunk-worker",
    config(config) {
      // Changed in place: Vite 8 keeps `rollupOptions` as an alias of `rolldownOptions`.
      const output = config.build?.rollupOptions?.output as Record<string, unknown> | undefined;
      if (output && "inlineDynamicImports" in output) {
        output.codeSplitting = output.inlineDynamicImports !== true;
        delete output.inlineDynamicImports;
      }
    },
  };
}

export default defineConfig(async () => ({
  root,
  publicDir: fileURLToPath(new URL("./public", import.meta.url)),
  plugins: [
    react(),
    // 40 ms between tokens unless a request says otherwise (the worker sends the settings' delay
    // with x-mock-delay-ms; a custom provider pointed at the mock sends none).
    (await loadMockServer()).mockModelPlugin({ delayMs: 40 }),
    VitePWA({
      strategies: "injectManifest",
      srcDir: ".",
      filename: "sw.ts",
      // The page registers the worker itself through fiberline/client's connect().
      injectRegister: false,
      // public/manifest.webmanifest is the manifest; index.html links it.
      manifest: false,
      injectManifest: {
        globPatterns: ["**/*.{js,css,html,png,svg,ico,webmanifest}"],
        rollupFormat: "es",
        buildPlugins: { vite: [oneChunkWorker()] },
      },
      devOptions: { enabled: true, type: "module" },
    }),
  ],
  build: {
    outDir: fileURLToPath(new URL(outDir, import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
  },
  server: { port: DEMO_PORT, strictPort: true },
  preview: { port: DEMO_PORT, strictPort: true },
}));
