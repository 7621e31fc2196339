/**
 * A bounded ring buffer of the interesting events of one schedule (store calls with their
 * outcome, faults, crashes, actions, chunk appends, engine reports), each stamped with virtual
 * time. A violation prints its tail as the minimal trace; a replay of the same seed prints the
 * same lines, which the replay test compares.
 */

/** One trace line. */
export interface TraceEntry {
  /** Running number of the entry in the schedule (not reset by wrap-around). */
  n: number;
  /** Virtual time, ms since the schedule started. */
  t: number;
  kind: string;
  /** The text, or a function that builds it when the trace is printed (hot paths stay cheap). */
  text: string | (() => string);
}

/** The trace of one schedule: the last `capacity` entries plus a digest of all of them. */
export class Trace {
  readonly #capacity: number;
  readonly #ring: TraceEntry[] = [];
  readonly #now: () => number;
  #count = 0;
  #hash = 0x811c9dc5;

  /** `now` gives virtual time relative to the schedule's start. */
  constructor(now: () => number, capacity = 200) {
    this.#now = now;
    this.#capacity = capacity;
  }

  /**
   * Records one event. A function `text` is called only when the trace is printed, so it must
   * read values that do not change afterwards.
   */
  add(kind: string, text: string | (() => string)): void {
    const entry: TraceEntry = { n: this.#count++, t: this.#now(), kind, text };
    this.#hash = fnv(
      this.#hash,
      typeof text === "string" ? `${entry.t}|${kind}|${text}` : `${entry.t}|${kind}`,
    );
    if (this.#ring.length < this.#capacity) this.#ring.push(entry);
    else this.#ring[entry.n % this.#capacity] = entry;
  }

  /** How many events were recorded in all. */
  get count(): number {
    return this.#count;
  }

  /** A digest of every event recorded (kind, time and eager text), in order. */
  get digest(): string {
    return `${this.#count}:${(this.#hash >>> 0).toString(16)}`;
  }

  /** The last `n` entries, oldest first. */
  tail(n = 40): TraceEntry[] {
    const ordered =
      this.#ring.length < this.#capacity
        ? this.#ring.slice()
        : [
            ...this.#ring.slice(this.#count % this.#capacity),
            ...this.#ring.slice(0, this.#count % this.#capacity),
          ];
    return ordered.slice(-n);
  }

  /** The last `n` entries as printable lines. */
  format(n = 40): string[] {
    return this.tail(n).map(
      (e) => `  #${e.n} t=${e.t}ms ${e.kind.padEnd(8)} ${typeof e.text === "string" ? e.text : e.text()}`,
    );
  }
}

function fnv(hash: number, text: string): number {
  let h = hash;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
