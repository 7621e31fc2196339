/**
 * The raw IndexedDB baseline: what the same browser, in the same kind of context, with the same
 * durability and record sizes, does with no Fiberline in between. Every engine workload is
 * reported as a ratio to one of these, measured in the same run.
 *
 * The baseline is written the plain way (one `put`, wait for `complete`); no explicit
 * `tx.commit()`, no batching unless the workload is the batched one.
 */

export type Durability = "relaxed" | "strict";

/** A row keyed `[fiberId, n]`, as the engine keys journal entries and chunks. */
export interface RawRow {
  fiberId: string;
  n: number;
  [field: string]: unknown;
}

/** How many owner records `openRaw` writes for fenced batches (`fiber-0`...), one per B2 fiber. */
export const FENCED_RECORDS = 100;

/**
 * Opens (creating) a baseline database with one `[fiberId, n]`-keyed store, `rows`, a
 * `records` store holding ~300-byte records keyed "fiber" and `fiber-<i>` (what fenced writes
 * read), and `stashes`, rows under a unique `fiber` index as the engine keeps a fiber's stash.
 */
export function openRaw(name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore("rows", { keyPath: ["fiberId", "n"] });
      const records = request.result.createObjectStore("records");
      const record = (id: string) => ({ id, generation: 1, status: "running", pad: "x".repeat(240) });
      records.put(record("fiber"), "fiber");
      request.result.createObjectStore("stashes").createIndex("fiber", "fiber", { unique: true });
      for (let i = 0; i < FENCED_RECORDS; i++) records.put(record(`fiber-${i}`), `fiber-${i}`);
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error(`opening ${name} is blocked`));
  });
}

/** Deletes a database (closing nothing: callers close their connections first). */
export function deleteDatabase(name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = () => resolve();
    request.onerror = () => reject(request.error);
    request.onblocked = () => resolve();
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"));
  });
}

/** Settles with `request`'s result (a read's, in the fenced shapes). */
function settled<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * `count` sequential stash-shaped writes: one transaction each that rewrites one row in place
 * (key `["fiber", 1]`) in a store with a unique index, committed at once (`tx.commit()`), as
 * `IdbStore` writes a stash-only commit; returns ms per transaction. What a stash costs with no
 * Fiberline in between: the floor of B1's stash row.
 */
export async function rawStashPuts(
  db: IDBDatabase,
  durability: Durability,
  count: number,
  value: (n: number) => unknown,
): Promise<number> {
  const t0 = performance.now();
  for (let n = 0; n < count; n++) {
    const tx = db.transaction("stashes", "readwrite", { durability });
    tx.objectStore("stashes").put({ fiber: "fiber", value: value(n), at: Date.now() }, ["fiber", 1]);
    const finished = done(tx);
    tx.commit();
    await finished;
  }
  return (performance.now() - t0) / count;
}

/** `count` sequential transactions of one `put` each; returns ms per transaction. */
export async function rawSinglePuts(
  db: IDBDatabase,
  durability: Durability,
  count: number,
  row: (n: number) => RawRow,
): Promise<number> {
  const t0 = performance.now();
  for (let n = 0; n < count; n++) {
    const tx = db.transaction("rows", "readwrite", { durability });
    tx.objectStore("rows").put(row(n));
    await done(tx);
  }
  return (performance.now() - t0) / count;
}

/**
 * `count` sequential *fenced* writes: one transaction each that puts a row and reads the
 * `records` row beside it, waits for the read (the fence: is the writer still the owner?), then
 * commits. The least a write that must be refused to a stale owner costs when its row cannot
 * fence itself (an append, unlike a stash row rewritten in place); returns ms per transaction.
 */
export async function rawFencedPuts(
  db: IDBDatabase,
  durability: Durability,
  count: number,
  row: (n: number) => RawRow,
): Promise<number> {
  const t0 = performance.now();
  for (let n = 0; n < count; n++) {
    const tx = db.transaction(["records", "rows"], "readwrite", { durability });
    const fence = settled(tx.objectStore("records").get("fiber"));
    tx.objectStore("rows").put(row(n));
    const finished = done(tx);
    await fence;
    tx.commit();
    await finished;
  }
  return (performance.now() - t0) / count;
}

/**
 * One transaction of `count` fenced writes (at most `FENCED_RECORDS`): a read of each owner's
 * record and a put, committed once the reads are back, as a fenced batch of `count` fibers' steps
 * must at the least; returns puts per second.
 */
export async function rawFencedBatch(
  db: IDBDatabase,
  durability: Durability,
  count: number,
  row: (n: number) => RawRow,
): Promise<number> {
  const t0 = performance.now();
  const tx = db.transaction(["records", "rows"], "readwrite", { durability });
  const records = tx.objectStore("records");
  const rows = tx.objectStore("rows");
  const reads: Promise<unknown>[] = [];
  for (let n = 0; n < count; n++) {
    reads.push(settled(records.get(`fiber-${n % FENCED_RECORDS}`)));
    rows.put(row(n));
  }
  const finished = done(tx);
  await Promise.all(reads);
  tx.commit();
  await finished;
  return count / ((performance.now() - t0) / 1000);
}

/** `count` puts in one transaction; returns puts per second. */
export async function rawBatchedPuts(
  db: IDBDatabase,
  durability: Durability,
  count: number,
  row: (n: number) => RawRow,
): Promise<number> {
  const t0 = performance.now();
  const tx = db.transaction("rows", "readwrite", { durability });
  const rows = tx.objectStore("rows");
  for (let n = 0; n < count; n++) rows.put(row(n));
  await done(tx);
  return count / ((performance.now() - t0) / 1000);
}

/** One `getAll` of a fiber's rows in `store` (keyed `[fiberId or handle, n]`); returns ms and how many rows came back. */
export async function rawGetAll(
  db: IDBDatabase,
  store: string,
  fiberId: string | number,
): Promise<{ ms: number; rows: number }> {
  const t0 = performance.now();
  const tx = db.transaction(store, "readonly");
  const request = tx
    .objectStore(store)
    .getAll(IDBKeyRange.bound([fiberId, Number.NEGATIVE_INFINITY], [fiberId, Number.POSITIVE_INFINITY]));
  const rows = await new Promise<unknown[]>((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return { ms: performance.now() - t0, rows: rows.length };
}

/** Every row of every object store of database `name`, with its store name and key, as stored. */
export function dumpDatabase(
  name: string,
): Promise<Array<{ store: string; key: IDBValidKey; value: unknown }>> {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(name);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const names = [...db.objectStoreNames];
      const rows: Array<{ store: string; key: IDBValidKey; value: unknown }> = [];
      const tx = db.transaction(names, "readonly");
      for (const store of names) {
        const cursor = tx.objectStore(store).openCursor();
        cursor.onsuccess = () => {
          const at = cursor.result;
          if (at === null) return;
          rows.push({ store, key: at.key, value: at.value });
          at.continue();
        };
      }
      tx.oncomplete = () => {
        db.close();
        resolve(rows);
      };
      tx.onabort = () => reject(tx.error);
    };
  });
}

/** A string of `length` random, incompressible characters (base64 alphabet). */
export function randomText(length: number): string {
  const bytes = new Uint8Array(Math.ceil((length * 3) / 4) + 3);
  crypto.getRandomValues(bytes);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).slice(0, length);
}

/** A row of about `bytes` bytes of JSON, for matching the engine's record sizes. */
export function paddedRow(fiberId: string, n: number, bytes: number): RawRow {
  const base = JSON.stringify({ fiberId, n, pad: "" }).length;
  return { fiberId, n, pad: "x".repeat(Math.max(0, bytes - base)) };
}
