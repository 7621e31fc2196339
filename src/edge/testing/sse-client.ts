/**
 * Reads a fiber's event stream from a test Worker the way a client would: `GET .../events`,
 * parsed with the SSE parser of `src/core/sse.ts`, until `fiber.end`, the end of the body, or a
 * broken connection (a killed workerd), whichever comes first.
 */

import { readSse } from "../../core/sse";
import type { TestWorker } from "./workerd";

/** One chunk as it crossed the wire. */
export interface WireEvent {
  seq: number;
  type: string;
  data: unknown;
  at: number;
}

/** What one connection delivered and how it ended. */
export interface StreamRead {
  events: WireEvent[];
  ended: "fiber.end" | "closed" | "broken";
}

/** Reads `id`'s stream after `after`; `onEvent` sees each chunk as it arrives. */
export async function readStream(
  worker: TestWorker,
  id: string,
  after: number,
  onEvent?: (event: WireEvent) => void,
): Promise<StreamRead> {
  const events: WireEvent[] = [];
  try {
    const response = await worker.fetch(
      `/__fiberline/fibers/${encodeURIComponent(id)}/events?after=${after}`,
    );
    if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
    for await (const message of readSse(response.body, undefined, { fields: ["at"] })) {
      const event = {
        seq: Number(message.id),
        type: message.event,
        data: JSON.parse(message.data) as unknown,
        at: Number(message.fields?.at),
      };
      events.push(event);
      onEvent?.(event);
      if (event.type === "fiber.end") return { events, ended: "fiber.end" };
    }
    return { events, ended: "closed" };
  } catch {
    return { events, ended: "broken" };
  }
}
