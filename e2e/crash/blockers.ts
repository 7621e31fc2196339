/**
 * Holding an IndexedDB object store from the page, so that the worker's next write to it waits:
 * a crash then lands *during* that write (a stash, a tool's side effect) instead of near it. The
 * page keeps one `readwrite` transaction alive with a chain of requests; IndexedDB runs
 * transactions on overlapping stores in order, so the worker's transaction queues behind it.
 */

import type { Page } from "@playwright/test";

/**
 * Opens a `readwrite` transaction on `database`.`store` in `page` and keeps it open until the page
 * dies (a crash) or {@link releaseStore}; resolves with the value stored under `key` (in
 * `options.index` when given) at that moment, read inside the transaction (so no write of it can
 * land after).
 */
export async function holdStore(
  page: Page,
  database: string,
  store: string,
  key: string,
  options: { index?: string } = {},
): Promise<unknown> {
  const index = options.index ?? null;
  return await page.evaluate(
    ({ database, store, key, index }) =>
      new Promise<unknown>((resolve, reject) => {
        const open = indexedDB.open(database);
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const db = open.result;
          const tx = db.transaction(store, "readwrite");
          const objects = index === null ? tx.objectStore(store) : tx.objectStore(store).index(index);
          const scope = window as unknown as { __releaseStore?: () => void };
          let held = true;
          scope.__releaseStore = () => {
            held = false;
          };
          const first = objects.get(key);
          first.onsuccess = () => {
            resolve(first.result ?? null);
            // A request issued from each success callback keeps the transaction active.
            const spin = () => {
              if (held) objects.get(key).onsuccess = spin;
            };
            spin();
          };
          first.onerror = () => reject(first.error);
        };
      }),
    { database, store, key, index },
  );
}

/** Lets the transaction of {@link holdStore} finish. */
export async function releaseStore(page: Page): Promise<void> {
  await page.evaluate(() => (window as unknown as { __releaseStore?: () => void }).__releaseStore?.());
}

/**
 * Starts keeping every stash `lab.ticker` announces for fiber `fiberId` on the lab's
 * BroadcastChannel (it posts right before `ctx.stash`), for `stashAnnounced`. Call it before
 * anything that makes the next announcement: one posted before `stashAnnounced` listens is kept.
 */
export async function watchStashes(page: Page, channel: string, fiberId: string): Promise<void> {
  await page.evaluate(
    ({ channel, fiberId }) => {
      const seen: number[] = [];
      (window as unknown as { __stashes?: Record<string, number[]> }).__stashes = { [fiberId]: seen };
      const bc = new BroadcastChannel(channel);
      bc.onmessage = (event: MessageEvent<{ fiberId?: string; stashing?: number }>) => {
        const { data } = event;
        if (data.fiberId === fiberId && typeof data.stashing === "number") seen.push(data.stashing);
      };
    },
    { channel, fiberId },
  );
}

/**
 * Resolves once `lab.ticker` announced a stash of fiber `fiberId` with `ticks > above`, since
 * `watchStashes` started (an announcement that came before this call counts: the stash it
 * announces may be the one in flight).
 */
export async function stashAnnounced(page: Page, fiberId: string, above: number): Promise<number> {
  const handle = await page.waitForFunction(
    ({ fiberId, above }) =>
      (window as unknown as { __stashes?: Record<string, number[]> }).__stashes?.[fiberId]?.find(
        (ticks) => ticks > above,
      ) ?? false,
    { fiberId, above },
    { polling: 10 },
  );
  return (await handle.jsonValue()) as number;
}
