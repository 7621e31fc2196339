/**
 * A shipment as it crosses the wire (`POST .../replicate`, the edge value codec's JSON), summed
 * up: read by the edge Worker's fault hooks (`edge-worker.ts`, in workerd) and by the continuity
 * torture run's tapped link (`e2e/torture/continuity-homes.ts`, in Node). No Node or Worker APIs.
 */

import type { Shipment } from "../../src/continuity/protocol";
import { decodeValue } from "../../src/edge/value-codec";

/** What a shipment carries. */
export interface ShipmentSummary {
  epoch: number;
  /** Its first position, and how many it carries (none: a heartbeat). */
  from: number;
  count: number;
  /** Its entries' types (`create`, `commit`, `event`), in order. */
  types: string[];
  /** The seqs of the stream chunks it carries, in order. */
  seqs: number[];
}

/** Reads the body of a shipment. */
export function readShipment(body: string): ShipmentSummary {
  const shipment = decodeValue(body) as Shipment;
  return {
    epoch: shipment.epoch,
    from: shipment.from,
    count: shipment.entries.length,
    types: shipment.entries.map((e) => e.type),
    seqs: shipment.entries.flatMap((e) =>
      (e.type === "create" ? e.chunks : e.type === "commit" ? (e.group.chunks ?? []) : []).map((c) => c.seq),
    ),
  };
}
