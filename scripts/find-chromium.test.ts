/**
 * `ensureChromium`, what `npm test` runs first (issue 16, "First run"): with no Chromium it runs
 * the download once and uses what it brought; where the download fails it stops with the command
 * to run; a `CHROMIUM_PATH` typo or `FIBERLINE_NO_BROWSER_DOWNLOAD` never starts a download. The
 * download itself is injected: this machine cannot reach Playwright's server.
 */

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ensureChromium, findChromium } from "./find-chromium.mjs";

/** Whether Playwright's own Chromium is installed here: it would be found before any download. */
function bundledChromium(): boolean {
  const saved = process.env.CHROMIUM_PATH;
  delete process.env.CHROMIUM_PATH;
  try {
    findChromium({ systemPaths: [] });
    return true;
  } catch {
    return false;
  } finally {
    if (saved !== undefined) process.env.CHROMIUM_PATH = saved;
  }
}

describe("ensureChromium", () => {
  let dir: string;
  let browser: string;
  const env = { ...process.env };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "fiberline-chromium-"));
    browser = join(dir, "chromium");
    delete process.env.CHROMIUM_PATH;
    delete process.env.FIBERLINE_NO_BROWSER_DOWNLOAD;
  });
  afterEach(() => {
    process.env = { ...env };
    rmSync(dir, { recursive: true, force: true });
  });

  /** A download that puts an executable where the second look finds it. */
  const installs = () =>
    vi.fn(async () => {
      writeFileSync(browser, "#!/bin/sh\n");
      chmodSync(browser, 0o755);
      return 0;
    });

  it.skipIf(bundledChromium())("downloads once when no Chromium is found, then uses it", async () => {
    const install = installs();
    const lines: string[] = [];
    await expect(
      ensureChromium({ systemPaths: [browser], install, log: (l) => lines.push(l) }),
    ).resolves.toBe(browser);
    expect(install).toHaveBeenCalledTimes(1);
    expect(lines.join("\n")).toContain("npx playwright install chromium");
    // Found now: no second download.
    await expect(ensureChromium({ systemPaths: [browser], install, log: () => {} })).resolves.toBe(browser);
    expect(install).toHaveBeenCalledTimes(1);
  });

  it.skipIf(bundledChromium())("stops with the commands to run when the download fails", async () => {
    const failed = ensureChromium({ systemPaths: [browser], install: async () => 1, log: () => {} });
    await expect(failed).rejects.toThrow(/npx playwright install chromium.*apt-get install -y chromium/s);
    await expect(failed).rejects.toThrow(/failed \(exit code 1\).*download server/s);
    const unstartable = ensureChromium({
      systemPaths: [browser],
      install: async () => {
        throw new Error("spawn ENOENT");
      },
      log: () => {},
    });
    await expect(unstartable).rejects.toThrow(/could not start \(spawn ENOENT\)/);
  });

  it("never downloads for a CHROMIUM_PATH that is not an executable, or when downloads are turned off", async () => {
    const install = installs();
    process.env.CHROMIUM_PATH = join(dir, "typo");
    await expect(ensureChromium({ systemPaths: [browser], install, log: () => {} })).rejects.toThrow(
      /CHROMIUM_PATH is set to .*typo, which is not an executable file/,
    );
    delete process.env.CHROMIUM_PATH;
    process.env.FIBERLINE_NO_BROWSER_DOWNLOAD = "1";
    if (!bundledChromium()) {
      await expect(ensureChromium({ systemPaths: [browser], install, log: () => {} })).rejects.toThrow(
        /No Chromium found/,
      );
    }
    expect(install).not.toHaveBeenCalled();
  });
});
