/**
 * The continuity wire protocol between a browser home and a fiber's arbiter (its Durable Object),
 * as docs/design/continuity.md defines it: what a shipment carries, how the arbiter answers, and
 * the constants both sides share. Discriminated unions on a string field, plain data only (they
 * cross HTTP as JSON through the edge value codec). Used by `Arbiter`, `Outbox` and `Shipper`.
 */

import type { FiberRecord, InboxEvent, StreamChunk } from "../core/records";
import type { WriteGroup } from "../core/store";

/** The home name of the edge. A browser home is `browser:<deviceId>` (`browserHome`). */
export const EDGE_HOME = "edge";

/** The home name of one browser profile. */
export function browserHome(deviceId: string): string {
  return `browser:${deviceId}`;
}

/**
 * The id a browser home gives an event it buffers for a replicated fiber: `<home>@<epoch>:<seq>`,
 * the fiber's home epoch and the event's local inbox seq. The arbiter keeps, per `<home>@<epoch>`,
 * the highest seq it applied (`HomeLease.eventMarks`). The epoch is part of it because a home's
 * seqs start over where a fiber that came home had its copy's inbox rebuilt from the replica's:
 * an event buffered at seq 4, dropped by a fence and sent on to the edge under its id, must not
 * be taken there for the event buffered at seq 4 after the fiber came home.
 */
export function homeEventId(home: string, epoch: number, seq: number): string {
  return `${home}@${epoch}:${seq}`;
}

/** The lease the arbiter grants when it has not been told otherwise (30 s). */
export const DEFAULT_LEASE_MS = 30_000;
/** At most this many positions in one shipment. */
export const MAX_BATCH_ENTRIES = 256;
/** At most this many bytes (estimated) in one shipment, unless a single position is larger. */
export const MAX_BATCH_BYTES = 256 * 1024;
/** The default bound of one fiber's outbox (4 MiB): past it, that fiber's commits wait. */
export const DEFAULT_OUTBOX_BYTES = 4 * 1024 * 1024;

/** One commit of a replicated fiber, as the browser made it durable, at its outbox position. */
export type ShippedEntry =
  /** Position 1: `createFiber` (the record and its `fiber.start` chunk). */
  | { pos: number; type: "create"; record: FiberRecord; chunks: StreamChunk[] }
  /** A `commit` group of the fiber that its local store applied (a fenced group is never shipped). */
  | { pos: number; type: "commit"; group: WriteGroup }
  /** An event the browser's store buffered, with its local `seq` and its id (`homeEventId`). */
  | { pos: number; type: "event"; event: InboxEvent; eventId: string };

/** `POST {prefix}/fibers/:id/replicate`: positions `from`, `from + 1`... of one fiber. */
export interface Shipment {
  /** The home sending (`browser:<deviceId>`). */
  home: string;
  /** The home epoch the sender believes it holds (1 from the fiber's creation). */
  epoch: number;
  /** The first position of `entries` (or, for a heartbeat with no entries, the next one). */
  from: number;
  entries: ShippedEntry[];
}

/**
 * An event the arbiter accepted while a browser held the fiber (a webhook, another device), pushed
 * to that browser in its answers until the browser ships it back as part of its history.
 * `eventId` is `edge:<n>`; the browser enqueues the event with it (`InboxEvent.eventId`), once.
 */
export interface PushedEvent {
  eventId: string;
  name: string;
  payload: unknown;
  /** When the arbiter accepted it (its clock). */
  at: number;
}

/** The arbiter's answer to a shipment. */
export type ShipmentAnswer =
  /**
   * Applied (or already held): the replica holds every position up to `appliedPos`, and the
   * sender's lease runs `leaseMs` more (a duration: the two clocks differ). `events`: the events
   * the arbiter holds for the sender to enqueue (see `PushedEvent`), again in every answer until
   * they are shipped back. `cancel`: a cancel the arbiter accepted for the fiber (a
   * `POST .../cancel` that reached the edge): the sender cancels the fiber, and the answer
   * carries it until a shipment ends the fiber.
   */
  | {
      status: "ok";
      appliedPos: number;
      leaseMs: number;
      events?: PushedEvent[];
      cancel?: { reason: string };
    }
  /**
   * `409 fenced`: the sender's epoch is over; `home` runs the fiber under `epoch`. `appliedPos`
   * is how far the replica holds the epoch just before it: the sender's positions up to there
   * are part of the fiber's history (their waiters are answered), the rest are dropped.
   */
  | { status: "fenced"; epoch: number; home: string; appliedPos: number }
  /** `409 out_of_order`: the shipment left a gap; resend from `appliedPos + 1`. */
  | { status: "out_of_order"; appliedPos: number };

/**
 * The arbiter's answer to `POST {prefix}/fibers/:id/come-home` (`Arbiter.comeHome`): a browser
 * that mirrors a fiber the edge runs asks for it back at a suspension point (`comeHome:
 * "at-suspension"` on its kind).
 */
export type ComeHomeAnswer =
  /**
   * The fiber is the asker's from now on, under `epoch`, for `leaseMs` (renewed by its shipments
   * as always). Its next positions follow `appliedPos`. The replica does not change until the
   * asker ships: the asker brings its copy up to the replica, then runs the fiber.
   */
  | { status: "granted"; epoch: number; appliedPos: number; leaseMs: number }
  /**
   * Not now: `running` (the edge is running it, or an event for it waits in the replica's
   * inbox), `held` (another browser holds it), `ended`. Ask again at a later suspension.
   */
  | { status: "refused"; reason: "running" | "held" | "ended" };

/**
 * Rule C: the moment (on the sender's clock) after which the sender must stop writing, given
 * that the shipment sent at `sentAt` was answered with `leaseMs`. The margin,
 * `max(1 s, leaseMs / 10)`, covers a difference in clock rates between the two homes.
 */
export function leaseDeadline(sentAt: number, leaseMs: number): number {
  return sentAt + leaseMs - Math.max(1_000, leaseMs / 10);
}

/**
 * A clock for Rule C that a wall clock set back cannot slow down, nor a suspended machine hold
 * back: it reads the wall clock (`wall`, default `Date.now`), but never less than its last reading
 * plus the time the monotonic clock (`monotonic`, default `performance.now`) counted since. Set
 * back a minute (the user, NTP, a VM restored), it goes on at the monotonic clock's pace, so a
 * lease still ends a lease of real time after it began; after a sleep, which some platforms'
 * monotonic clocks do not count, the wall clock's leap carries it forward, so a lease that ended
 * meanwhile has ended here too. Never goes back. One per home (its readings only compare with
 * each other's): deadlines made on it are not stored.
 */
export function leaseClock(
  wall: () => number = Date.now,
  monotonic: (() => number) | undefined = globalThis.performance?.now.bind(globalThis.performance),
): () => number {
  if (monotonic === undefined) return wall;
  let last = wall();
  let lastMono = monotonic();
  return () => {
    const mono = monotonic();
    last = Math.max(wall(), last + (mono - lastMono));
    lastMono = mono;
    return last;
  };
}
