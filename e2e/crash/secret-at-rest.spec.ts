/**
 * The demo's API key at rest, in real Chromium on a real on-disk profile: after a conversation on
 * a custom endpoint with a key, the key is nowhere in the profile's IndexedDB files (it is kept
 * encrypted with a non-extractable AES-GCM key, `app/worker/secrets.ts`), nor in the fiber's
 * record, journal or event stream, nor in what the settings route returns; and the worker still
 * answers on that endpoint with the key decrypted for the request. Run on the code before the
 * key was encrypted, it finds the key in the database's LevelDB log.
 */

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { inspect, startAssistant } from "./demo";
import { expect, test } from "./scenario";

const KEY = "sk-fiberline-at-rest-Q7v2Lm9XcT4pWz";

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/** The files of `profile` that hold `text` in Latin-1 / UTF-8 or UTF-16 (how V8 and LevelDB store strings). */
function filesHolding(profile: string, text: string): string[] {
  const needles = [Buffer.from(text, "latin1"), Buffer.from(text, "utf16le")];
  return filesUnder(profile).filter((file) => {
    const bytes = readFileSync(file);
    return needles.some((needle) => bytes.includes(needle));
  });
}

test("the API key is stored encrypted: absent from the profile's IndexedDB files and from every stream", async ({
  app,
}) => {
  const page = await app.openTab("/");
  const saved = await page.evaluate(
    async ([baseUrl, apiKey]) => {
      const response = await fetch("/demo-api/settings", {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ provider: "custom", baseUrl, model: "mock", apiKey, continuation: true }),
      });
      return { status: response.status, body: await response.text() };
    },
    [new URL("/mock-model/v1", page.url()).href, KEY] as const,
  );
  expect(saved.status).toBe(200);
  expect(saved.body).not.toContain(KEY);

  const subject = await startAssistant(app, "What is 2 + 3?");
  const events = await subject.log.done();
  expect(events.at(-1)?.data).toMatchObject({ status: "completed" });
  const answer = events
    .filter((e) => e.type === "text.delta")
    .map((e) => (e.data as { delta: string }).delta)
    .join("");
  expect(answer).toContain("5");

  // The worker still holds a working key: it answers with the key in use.
  const settings = await page.evaluate(() => fetch("/demo-api/settings").then((r) => r.text()));
  expect(JSON.parse(settings)).toMatchObject({ provider: "custom", hasApiKey: true });
  expect(settings).not.toContain(KEY);

  // Nothing the page can read holds it: the fiber's record, journal, snapshot, inbox, stream.
  const inspection = await inspect(page, subject.id);
  expect(JSON.stringify([inspection, events, await page.content()])).not.toContain(KEY);

  // Nothing on disk holds it either. Close the browser first, so every write reached the files.
  const profile = app.userDataDir;
  await app.closeBrowser();
  const indexedDbDirs = filesUnder(profile).filter((f) => f.includes("IndexedDB"));
  expect(indexedDbDirs.length).toBeGreaterThan(0);
  expect(filesHolding(profile, KEY)).toEqual([]);
});
