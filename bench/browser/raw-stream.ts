/**
 * B3's hand-written floor for "durable, then delivered": what an app would write in its Service
 * Worker with no Fiberline, doing what B3's emitter and the event route do between them. The same
 * chunks (the emitter's, yielding every `burst`) are put in raw IndexedDB transactions, one open
 * at a time, each taking every chunk made while the one before committed (the engine's group
 * commit); once a transaction completes, its chunks are framed as the event route frames them
 * and enqueued on the page's response. No journal, no record, no fence, no stream hub: only the
 * work no implementation of the promise (a chunk reaches the page only once durable) can skip.
 */

import { now } from "./clock";
import { nextTask } from "./fibers";
import { type Durability, deleteDatabase, openRaw, type RawRow } from "./raw-idb";

export interface RawStreamParams {
  n: number;
  burst: number;
  text: string;
}

/** Streams prepared by the page (`bench/raw-stream-prepare`), by id, until it fetches them. */
const prepared = new Map<string, RawStreamParams>();

/** Keeps `params` for the page's fetch of `/bench-raw/fibers/<id>/events`; returns the id. */
export function prepareRawStream(params: RawStreamParams): string {
  const id = `raw-stream-${crypto.randomUUID()}`;
  prepared.set(id, params);
  return id;
}

const PATH = /^\/bench-raw\/fibers\/([^/]+)\/events$/;

/** The response for a fetch of a prepared raw stream, or `undefined` when `url` is not one. */
export function rawStreamResponse(url: URL, durability: Durability): Response | undefined {
  const id = PATH.exec(url.pathname)?.[1];
  const params = id === undefined ? undefined : prepared.get(id);
  if (id === undefined || params === undefined) return undefined;
  prepared.delete(id);
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const name = `raw-stream-${id.slice(-8)}`;
      const db = await openRaw(name);
      try {
        let pending: RawRow[] = [];
        let committing: Promise<void> | undefined;
        const commitAll = async () => {
          while (pending.length > 0) {
            const batch = pending;
            pending = [];
            const tx = db.transaction("rows", "readwrite", { durability });
            const rows = tx.objectStore("rows");
            for (const row of batch) rows.put(row);
            await new Promise<void>((resolve, reject) => {
              tx.oncomplete = () => resolve();
              tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"));
            });
            let text = "";
            for (const row of batch) {
              text += `id: ${row.n}\nevent: token\nat: ${row.at}\ndata: ${JSON.stringify(row.data)}\n\n`;
            }
            controller.enqueue(encoder.encode(text));
          }
        };
        const commit = () => {
          committing ??= commitAll().finally(() => {
            committing = undefined;
          });
        };
        for (let i = 0; i < params.n; i++) {
          const data = { i, t: now(), text: params.text };
          pending.push({ fiberId: id, n: i + 1, type: "token", data, at: Date.now() });
          commit();
          if (i % params.burst === params.burst - 1) await nextTask();
        }
        while (committing !== undefined || pending.length > 0) {
          await committing;
          if (pending.length > 0) commit();
        }
        const end = params.n + 1;
        controller.enqueue(
          encoder.encode(`id: ${end}\nevent: fiber.end\nat: ${Date.now()}\ndata: {"status":"completed"}\n\n`),
        );
        controller.close();
      } catch (error) {
        controller.error(error);
      } finally {
        db.close();
        await deleteDatabase(name);
      }
    },
  });
  return new Response(body, {
    // `x-fiberline`: what the page's reader (`fiberline/client`) takes for its host's answer.
    headers: { "content-type": "text/event-stream", "cache-control": "no-store", "x-fiberline": "1" },
  });
}
