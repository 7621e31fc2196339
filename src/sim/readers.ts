/**
 * Stream readers of one schedule: `runtime.events(id, { after })` attached from any live node
 * at any cursor, detached with an `AbortSignal`, and reconnecting readers that attach again
 * (possibly to another node, e.g. after the one they read from crashed) from the last `seq`
 * they saw. Every delivered chunk is checked at delivery time: it continues the reader's
 * sequence with no gap or duplicate, nothing follows `fiber.end`, and it is already durable
 * (the ledger holds the same chunk at that `seq`). A share of the readers are slow while faults
 * go on: they stall between chunks (up to 3 s of virtual time, across leases, ends and
 * collections), so chunks queue behind them and a stalled reader resumes on a stream that moved
 * on, or on an id that names another fiber by then.
 */

import { isTerminal } from "../core/records";
import { describe, type FiberImage } from "./ledger";
import type { Prng } from "./prng";
import { codeOf } from "./program";
import type { SimNode, World } from "./world";

/** One attachment of one reader. */
export interface ReaderState {
  id: number;
  fiberId: string;
  node: SimNode;
  after: number;
  last: number;
  sawEnd: boolean;
  status: "open" | "ended" | "aborted" | "failed";
  error?: string;
  /** Reattach from `last` when detached or when the node dies. */
  reconnect: boolean;
  controller: AbortController;
  /** The chance this reader stalls after each chunk (0: never). */
  stalls: number;
  /** Which fiber under the id this attachment reads (`Ledger.lives`), fixed by its first chunk. */
  life?: number;
}

/** The readers of one schedule. */
export class Readers {
  readonly #world: World;
  readonly #stalls: Prng | undefined;
  readonly all: ReaderState[] = [];

  /**
   * `stalls`: the random stream slow readers draw from (a stream of their own, so the world's
   * draws stay as they were); no reader stalls without it.
   */
  constructor(world: World, stalls?: Prng) {
    this.#world = world;
    this.#stalls = stalls;
    world.onCrash((node) => {
      for (const reader of this.all) {
        if (reader.node === node && reader.status === "open") this.#drop(reader, "its node crashed");
      }
    });
  }

  /** Attaches a reader to `fiberId` on `node` from cursor `after`. */
  attach(fiberId: string, after: number, node: SimNode, reconnect: boolean): ReaderState {
    const reader: ReaderState = {
      id: this.all.length + 1,
      fiberId,
      node,
      after,
      last: after,
      sawEnd: false,
      status: "open",
      reconnect,
      controller: new AbortController(),
      stalls: this.#stalls?.chance(0.3) ? this.#stalls.pick([0.1, 0.5]) : 0,
    };
    this.all.push(reader);
    this.#world.trace.add(
      "reader",
      `R${reader.id} attaches to ${fiberId} on ${node.name} after ${after}${reconnect ? " (reconnecting)" : ""}${reader.stalls > 0 ? " (slow)" : ""}`,
    );
    void this.#run(reader);
    return reader;
  }

  /** Detaches `reader`; a reconnecting one attaches again later from its last seq. */
  detach(reader: ReaderState, why: string): void {
    if (reader.status !== "open") return;
    this.#drop(reader, why);
  }

  /** Aborts every open reader (the end of the schedule). */
  closeAll(): void {
    for (const reader of this.all) if (reader.status === "open") reader.controller.abort();
  }

  #drop(reader: ReaderState, why: string): void {
    reader.status = "aborted";
    reader.controller.abort();
    this.#world.trace.add(
      "reader",
      `R${reader.id} detaches from ${reader.fiberId} at ${reader.last}: ${why}`,
    );
    if (!reader.reconnect || reader.sawEnd) return;
    const world = this.#world;
    setTimeout(
      () => {
        const live = world.live;
        if (live.length === 0) return;
        this.attach(reader.fiberId, reader.last, world.rng.pick(live), true);
      },
      world.rng.int(0, 800),
    );
  }

  async #run(reader: ReaderState): Promise<void> {
    const { signal } = reader.controller;
    try {
      for await (const event of reader.node.runtime.events(reader.fiberId, { after: reader.after, signal })) {
        if (reader.status !== "open") return;
        this.#check(reader, event);
        // Only while faults go on: past them a schedule checks that every reader ends.
        if (reader.stalls > 0 && this.#world.plan.active && this.#stalls?.chance(reader.stalls)) {
          const ms = this.#stalls.int(1, 3000);
          this.#world.trace.add("reader", `R${reader.id} stalls ${ms} ms at ${reader.last}`);
          await new Promise((resolve) => setTimeout(resolve, ms));
          if (reader.status !== "open") return;
        }
      }
      if (reader.status !== "open") return;
      reader.status = signal.aborted ? "aborted" : "ended";
      this.#world.trace.add("reader", `R${reader.id} of ${reader.fiberId} ended at ${reader.last}`);
      if (reader.status === "ended" && !reader.sawEnd) {
        // Ending with no fiber.end is right only for a cursor at or past the end of an ended fiber.
        const image = this.#world.ledger.get(reader.fiberId);
        const record = image?.record;
        const pastEnd =
          record !== undefined && isTerminal(record.status) && record.streamHead <= reader.after;
        if (!image?.collected && !pastEnd) {
          this.#world.findings.add(
            "reader-ended-early",
            `R${reader.id} (after ${reader.after}) ended at seq ${reader.last} without fiber.end`,
            reader.fiberId,
          );
        }
      }
    } catch (error) {
      if (reader.status !== "open") return;
      if (codeOf(error) === "store_error") {
        // A read of storage failed (the read faults): the reader stops with the store's typed
        // error, and one that reconnects goes on from its last seq, as the page's client does.
        this.#drop(reader, "store_error");
        return;
      }
      reader.status = "failed";
      reader.error = codeOf(error);
      this.#world.trace.add("reader", `R${reader.id} of ${reader.fiberId} failed: ${reader.error}`);
      if (reader.error !== "fiber_not_found") {
        this.#world.findings.add("reader-error", `R${reader.id} failed with ${reader.error}`, reader.fiberId);
      }
    }
  }

  #check(reader: ReaderState, event: { seq: number; type: string; data: unknown; at: number }): void {
    const world = this.#world;
    const fail = (invariant: string, detail: string) =>
      world.findings.add(
        invariant,
        `R${reader.id} on ${reader.node.name} (after ${reader.after}): ${detail}`,
        reader.fiberId,
      );
    if (reader.sawEnd) fail("reader-after-end", `got ${describe(event)} after fiber.end`);
    if (event.seq <= reader.last) fail("reader-duplicate", `got seq ${event.seq} after seq ${reader.last}`);
    else if (event.seq !== reader.last + 1)
      fail("reader-gap", `got seq ${event.seq} right after seq ${reader.last}`);
    // Matched with the fiber this attachment reads, which a stalled reader may still be reading
    // after its collection, when the ledger's image is another fiber's under the same id.
    const lives = world.ledger.lives(reader.fiberId);
    const holds = (image: FiberImage | undefined) => {
      const durable = image?.stream[event.seq - 1];
      return (
        durable !== undefined &&
        durable.seq === event.seq &&
        durable.type === event.type &&
        durable.at === event.at &&
        JSON.stringify(durable.data) === JSON.stringify(event.data)
      );
    };
    if (reader.life === undefined) {
      const first = lives.findLastIndex(holds);
      if (first >= 0) reader.life = first;
    }
    if (reader.life === undefined || !holds(lives[reader.life])) {
      const other = lives.findLastIndex(holds);
      if (other >= 0) {
        fail(
          "reader-crossed-fibers",
          `got ${describe(event)} of another fiber under the id (life ${other}) than the one it was reading (life ${reader.life})`,
        );
      } else {
        const durable = lives.at(-1)?.stream[event.seq - 1];
        fail(
          "reader-not-durable",
          `got ${describe(event)}; storage holds ${durable ? describe(durable) : "nothing"} there`,
        );
      }
    }
    reader.last = Math.max(reader.last, event.seq);
    if (event.type === "fiber.end") reader.sawEnd = true;
  }

  /** At quiescence: a reader still open on a fiber that ended (or was collected) never ended. */
  checkEnded(): void {
    for (const reader of this.all) {
      if (reader.status !== "open" || reader.node.crashed) continue;
      const image = this.#world.ledger.get(reader.fiberId);
      const record = image?.record;
      if (!record) continue;
      if (image.collected || isTerminal(record.status)) {
        this.#world.findings.add(
          "reader-never-ended",
          `R${reader.id} on ${reader.node.name} (after ${reader.after}, at ${reader.last}) still open; the fiber ${image.collected ? "was collected" : `ended ${record.status} at seq ${record.streamHead}`}`,
          reader.fiberId,
        );
      }
    }
  }
}
