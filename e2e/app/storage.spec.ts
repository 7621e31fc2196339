/**
 * Measures what a long conversation costs in storage (opt-in, it sends 200 messages:
 * `FIBERLINE_MEASURE=1 npx playwright test e2e/app/storage.spec.ts --project app`): a 200-turn chat through the
 * composer, then the bytes every IndexedDB database of the origin holds (values as UTF-8 JSON)
 * and the sizes of the assistant fibers' inputs and results. The numbers go in docs/demo.md.
 */

import { expect, test } from "./fixtures";

const TURNS = Number(process.env.FIBERLINE_MEASURE_TURNS ?? 200);

test.skip(!process.env.FIBERLINE_MEASURE, "set FIBERLINE_MEASURE=1 to measure a 200-turn conversation");

test("storage of a 200-turn conversation", async ({ demo, page }) => {
  test.setTimeout(30 * 60_000);
  await demo.setMockDelay(0);
  for (let turn = 1; turn <= TURNS; turn++) {
    await demo.send(`Tell me one more thing about durable agents, number ${turn}`);
    await expect(page.locator('[data-testid="message"][data-role="assistant"]')).toHaveCount(turn);
    await expect(demo.lastReply()).toHaveAttribute("data-status", "done");
    await expect(page.getByTestId("composer-send")).toBeVisible();
  }
  const measured = await page.evaluate(async () => {
    const utf8 = (value: unknown) => new Blob([JSON.stringify(value) ?? ""]).size;
    const databases: Record<string, number> = {};
    for (const info of await indexedDB.databases()) {
      if (!info.name) continue;
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const request = indexedDB.open(info.name as string);
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      let bytes = 0;
      for (const name of db.objectStoreNames) {
        const values = await new Promise<unknown[]>((resolve, reject) => {
          const request = db.transaction(name).objectStore(name).getAll();
          request.onsuccess = () => resolve(request.result);
          request.onerror = () => reject(request.error);
        });
        for (const value of values) bytes += utf8(value);
      }
      db.close();
      databases[info.name] = bytes;
    }
    const client = window.fiberline;
    if (!client) throw new Error("not connected");
    const fibers = (await client.list({ name: "assistant" })) as Array<{ input: unknown; result?: unknown }>;
    const inputs = fibers.map((f) => utf8(f.input));
    const results = fibers.map((f) => utf8(f.result));
    return {
      databases,
      fibers: fibers.length,
      inputBytes: inputs.reduce((a, b) => a + b, 0),
      largestInput: Math.max(...inputs),
      resultBytes: results.reduce((a, b) => a + b, 0),
      largestResult: Math.max(...results),
    };
  });
  console.log(`STORAGE ${TURNS} turns: ${JSON.stringify(measured)}`);
  expect(measured.fibers).toBe(TURNS);
});
