/**
 * The example extension (`examples/extension`) in a real Chromium for the extension specs: built
 * once per test process, loaded unpacked on a fresh persistent profile (`--load-extension`), with
 * helpers to find its background worker, stop it over CDP, read its fibers from inside it, open
 * its side panel page in a tab, and crash and relaunch the browser (`fiberline/testing`'s process
 * helpers).
 */

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test as base, expect, type Page, type Worker } from "@playwright/test";
import type { FiberRecord } from "../../src/index";
import {
  closeBrowser,
  crashBrowser,
  type LaunchedBrowser,
  launchBrowser,
  relaunchBrowser,
} from "../support/browser";

const root = fileURLToPath(new URL("../..", import.meta.url));
/** Where `npm run build:extension` writes the unpacked extension. */
export const EXTENSION_DIR = join(root, "examples/extension/dist");
/** The side panel keeps the fiber it shows here (see `examples/extension/src/sidepanel.ts`). */
const CURRENT_KEY = "fiberline-example/current";

let built = false;
/** Builds the example extension (once per test process). */
export function buildExtension(): void {
  if (built) return;
  const result = spawnSync(
    "npx",
    ["vite", "build", "-c", "examples/extension/vite.config.ts", "--logLevel", "warn"],
    { cwd: root, encoding: "utf8" },
  );
  if (result.status !== 0) {
    throw new Error(`Building the example extension failed:\n${result.stderr}${result.stdout}`);
  }
  built = true;
}

/** A Chromium with the example extension loaded. */
export class ExtensionBrowser {
  #browser: LaunchedBrowser;
  readonly extensionId: string;

  private constructor(browser: LaunchedBrowser, extensionId: string) {
    this.#browser = browser;
    this.extensionId = extensionId;
  }

  static async launch(userDataDir: string): Promise<ExtensionBrowser> {
    const browser = await launchBrowser({
      userDataDir,
      args: [`--disable-extensions-except=${EXTENSION_DIR}`, `--load-extension=${EXTENSION_DIR}`],
    });
    const running = browser.context.serviceWorkers().find((w) => w.url().startsWith("chrome-extension://"));
    const worker =
      running ??
      (await browser.context.waitForEvent("serviceworker", {
        predicate: (w) => w.url().startsWith("chrome-extension://"),
        timeout: 15_000,
      }));
    return new ExtensionBrowser(browser, new URL(worker.url()).host);
  }

  /**
   * The extension's running background worker, once Chrome runs one (whatever started it).
   * Playwright may still list a stopped instance, so the one that answers is returned.
   */
  async worker(timeoutMs = 15_000): Promise<Worker> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const workers = this.#browser.context
        .serviceWorkers()
        .filter((w) => w.url().startsWith(`chrome-extension://${this.extensionId}/`))
        .reverse();
      for (const worker of workers) {
        if (await worker.evaluate(() => "fiberline" in globalThis).catch(() => false)) return worker;
      }
      if (Date.now() > deadline) {
        throw new Error(`No background worker of extension ${this.extensionId} ran within ${timeoutMs} ms.`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Whether a background worker of the extension runs now (asked of the browser over CDP). */
  async workerRunning(): Promise<boolean> {
    const session = await this.#browser.browser.newBrowserCDPSession();
    try {
      const { targetInfos } = (await session.send("Target.getTargets")) as {
        targetInfos: Array<{ type: string; url: string }>;
      };
      return targetInfos.some(
        (t) => t.type === "service_worker" && t.url.startsWith(`chrome-extension://${this.extensionId}/`),
      );
    } finally {
      await session.detach().catch(() => {});
    }
  }

  /**
   * Stops the background worker as Chrome stops an idle one: CDP `ServiceWorker.stopAllWorkers`
   * from a session on a tab of the extension's origin (a session on another origin does not reach
   * the extension's workers). The tab shows `manifest.json`, which runs no script and connects
   * nothing, and is closed again.
   */
  async stopWorker(): Promise<void> {
    const tab = await this.#browser.context.newPage();
    try {
      await tab.goto(`chrome-extension://${this.extensionId}/manifest.json`);
      const session = await this.#browser.context.newCDPSession(tab);
      try {
        await session.send("ServiceWorker.enable");
        await session.send("ServiceWorker.stopAllWorkers");
      } finally {
        await session.detach().catch(() => {});
      }
    } finally {
      await tab.close();
    }
  }

  /** A fiber's record, read inside the running background worker. */
  async fiber(id: string): Promise<FiberRecord | undefined> {
    const worker = await this.worker();
    return await worker.evaluate(
      (fiberId) =>
        (
          globalThis as unknown as {
            fiberline: { runtime: { get(id: string): Promise<FiberRecord | undefined> } };
          }
        ).fiberline.runtime.get(fiberId),
      id,
    );
  }

  /** Opens the side panel page in a tab, showing fiber `id` (default: the one it showed last). */
  async openPanel(id?: string): Promise<Page> {
    const page = await this.#browser.context.newPage();
    const hash = id === undefined ? "" : `#fiber=${encodeURIComponent(id)}`;
    await page.goto(`chrome-extension://${this.extensionId}/sidepanel.html${hash}`);
    await expect(page.locator("#status")).not.toHaveText(/Connecting/);
    return page;
  }

  /** Whether any extension page (side panel, popup, options) is open. */
  extensionPagesOpen(): boolean {
    return this.#browser.context.pages().some((p) => p.url().startsWith("chrome-extension://"));
  }

  /** Closes every extension page, leaving the blank tab so the browser stays up. */
  async closeExtensionPages(): Promise<void> {
    for (const page of this.#browser.context.pages()) {
      if (page.url().startsWith("chrome-extension://")) await page.close();
    }
  }

  /** SIGKILLs the browser's process group (a crash) and launches it again on the same profile. */
  async crashAndRelaunch(): Promise<void> {
    await crashBrowser(this.#browser);
    this.#browser = await relaunchBrowser(this.#browser);
  }

  async close(): Promise<void> {
    await closeBrowser(this.#browser);
  }
}

/** One chunk as the side panel lists it. */
export interface PanelChunk {
  seq: number;
  type: string;
}

/** The chunks the side panel has rendered, in the order it rendered them. */
export async function panelLog(panel: Page): Promise<PanelChunk[]> {
  return await panel.locator("#log li").evaluateAll((items) =>
    items.map((li) => ({
      seq: Number((li as HTMLElement).dataset.seq),
      type: String((li as HTMLElement).dataset.type),
    })),
  );
}

/** Submits one of the side panel's forms; resolves with the id of the fiber it started. */
export async function submit(
  panel: Page,
  form: "#ask" | "#remind",
  fill: Record<string, string>,
): Promise<string> {
  const before = await panel.evaluate((key) => localStorage.getItem(key), CURRENT_KEY);
  for (const [selector, value] of Object.entries(fill)) await panel.fill(selector, value);
  await panel.click(`${form} button`);
  let id: string | null = null;
  await expect
    .poll(async () => {
      id = await panel.evaluate((key) => localStorage.getItem(key), CURRENT_KEY);
      return id !== null && id !== before;
    })
    .toBe(true);
  return String(id);
}

/** `test` with `ext`: the example extension on a fresh profile, closed and removed after the test. */
export const test = base.extend<{ ext: ExtensionBrowser }>({
  // biome-ignore lint/correctness/noEmptyPattern: Playwright fixtures take their dependencies by destructuring.
  ext: async ({}, use) => {
    buildExtension();
    const userDataDir = mkdtempSync(join(tmpdir(), "fiberline-extension-"));
    const ext = await ExtensionBrowser.launch(userDataDir);
    try {
      await use(ext);
    } finally {
      await ext.close();
      rmSync(userDataDir, { recursive: true, force: true });
    }
  },
});

export { expect };
