/**
 * The `Replication` port: what the engine asks of a host that replicates some fibers to a second
 * home (continuity, `src/continuity`, docs/design/continuity.md). Two rules need the engine: a
 * step's function runs only once its `started` entry is shipped (Rule A), and readers see a
 * chunk only once it is shipped (Rule B). A runtime without `replication`, and every fiber the
 * port does not call replicated, behave exactly as before.
 */

import type { StreamChunk } from "./records";

/** The replication state the engine consults (implemented by `Outbox` in `src/continuity`). */
export interface Replication {
  /** Whether `fiberId` is replicated; the other methods matter only for those that are. */
  replicated(fiberId: string): boolean;
  /**
   * Rule A: resolves once every commit of `fiberId` made so far is shipped; rejects when it never
   * will be from here (`fenced`: another home runs it; `lease_lapsed`), and the run then stops
   * as it does on a fenced write.
   */
  shipped(fiberId: string): Promise<void>;
  /** Rule B: the highest `seq` of `fiberId` readers may see. */
  visibleHead(fiberId: string): number;
  /** Calls `listener` whenever a fiber's `visibleHead` rises; returns the unsubscribe. */
  onShipped(listener: (fiberId: string) => void): () => void;
  /**
   * Calls `listener` when what `fiberId` committed here and had not shipped will never ship (its
   * home changed: fenced): the chunks held for it must never be shown, whatever `visibleHead`
   * says later (the fiber's history past the shipped prefix is another home's). Optional: a port
   * that never discards has no such moment.
   */
  onDiscarded?(listener: (fiberId: string) => void): () => void;
  /**
   * Calls `listener` when this home's lease on `fiberId` ended with no newer acknowledgement
   * (Rule C): the run here stops at once, as on a fenced write, aborting the signal of a step in
   * progress (the other home may run it again). Optional: a port without leases has no such moment.
   */
  onLapsed?(listener: (fiberId: string, reason: Error) => void): () => void;
}

/**
 * Rule B on the live path: hands chunks of replicated fibers to `publish` only once they are
 * shipped, in seq order, and every other chunk at once. The runtime routes every commit's chunks
 * through it.
 */
export class ShippedChunks {
  readonly #replication: Replication;
  readonly #publish: (fiberId: string, chunks: readonly StreamChunk[]) => void;
  readonly #held = new Map<string, StreamChunk[]>();
  readonly #unsubscribe: () => void;

  constructor(replication: Replication, publish: (fiberId: string, chunks: readonly StreamChunk[]) => void) {
    this.#replication = replication;
    this.#publish = publish;
    const shipped = replication.onShipped((fiberId) => this.#release(fiberId));
    const discarded = replication.onDiscarded?.((fiberId) => this.#held.delete(fiberId));
    this.#unsubscribe = () => {
      shipped();
      discarded?.();
    };
  }

  /** Publishes `chunks` (durable here) now, or once shipped for a replicated fiber. */
  add(fiberId: string, chunks: readonly StreamChunk[]): void {
    if (!this.#replication.replicated(fiberId)) {
      this.#publish(fiberId, chunks);
      return;
    }
    const held = this.#held.get(fiberId) ?? [];
    held.push(...chunks);
    this.#held.set(fiberId, held);
    this.#release(fiberId);
  }

  /** Stops listening to the replication. */
  close(): void {
    this.#unsubscribe();
    this.#held.clear();
  }

  #release(fiberId: string): void {
    const held = this.#held.get(fiberId);
    if (held === undefined) return;
    const head = this.#replication.visibleHead(fiberId);
    const ready = held.filter((c) => c.seq <= head);
    if (ready.length === 0) return;
    const rest = held.filter((c) => c.seq > head);
    if (rest.length === 0) this.#held.delete(fiberId);
    else this.#held.set(fiberId, rest);
    this.#publish(fiberId, ready);
  }
}
