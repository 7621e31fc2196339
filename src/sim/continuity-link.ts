/**
 * The simulated network between a browser home and its arbiter, for continuity schedules: each
 * shipment takes a random virtual delay each way, and while faults are active a request or its
 * answer may be dropped, a request delivered twice (the copy later, so copies and retries
 * overtake each other: reordering), and the whole link cut for a while. A send whose answer
 * does not come back within `timeoutMs` rejects, as a `fetch` with a deadline does; the
 * arbiter may still apply it (the shipper's retry is then a duplicate it ignores).
 */

import type { Shipment, ShipmentAnswer } from "../continuity/protocol";
import type { Prng } from "./prng";
import type { Trace } from "./trace";

/** The link's fault knobs, drawn per schedule; `active` goes false when faults stop. */
export interface LinkPlan {
  active: boolean;
  /** Probability that a request, or an answer, is lost. */
  drop: number;
  /** Probability that a request is delivered a second time, later. */
  duplicate: number;
  /** Highest one-way delay (ms); most deliveries take a few ms. */
  maxDelayMs: number;
}

/** Where shipments go: the arbiter of the edge process, or nothing while it is down. */
export type Deliver = (fiberId: string, shipment: Shipment) => Promise<ShipmentAnswer> | undefined;

/** One browser's link to the edge. */
export class SimLink {
  readonly plan: LinkPlan;
  readonly #rng: Prng;
  readonly #trace: Trace;
  readonly #deliver: Deliver;
  readonly #timeoutMs: number;
  #cutUntil = 0;
  #sent = 0;

  constructor(rng: Prng, trace: Trace, plan: LinkPlan, deliver: Deliver, timeoutMs: number) {
    this.#rng = rng;
    this.#trace = trace;
    this.plan = plan;
    this.#deliver = deliver;
    this.#timeoutMs = timeoutMs;
  }

  /** Cuts the link for `ms` from now: nothing gets through either way. */
  cut(ms: number): void {
    this.#cutUntil = Math.max(this.#cutUntil, Date.now() + ms);
    this.#trace.add("LINK", `cut for ${ms} ms`);
  }

  /** Heals a cut at once (the end of the faults). */
  heal(): void {
    this.#cutUntil = 0;
  }

  get isCut(): boolean {
    return Date.now() < this.#cutUntil;
  }

  /** Sends `shipment` and resolves with the answer, or rejects after the timeout. */
  send(fiberId: string, shipment: Shipment): Promise<ShipmentAnswer> {
    const n = ++this.#sent;
    const label = `L${n} ${fiberId} e${shipment.epoch} from ${shipment.from} +${shipment.entries.length}`;
    return new Promise<ShipmentAnswer>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        this.#trace.add("link", `${label} timed out`);
        reject(new Error("the shipment got no answer in time"));
      }, this.#timeoutMs);
      const answer = (value: ShipmentAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      };
      this.#transmit(fiberId, shipment, label, answer, true);
      if (this.#faulty(this.plan.duplicate))
        this.#transmit(fiberId, shipment, `${label} (copy)`, answer, false);
    });
  }

  #transmit(
    fiberId: string,
    shipment: Shipment,
    label: string,
    answer: (value: ShipmentAnswer) => void,
    first: boolean,
  ): void {
    if (this.isCut || this.#faulty(this.plan.drop)) {
      this.#trace.add("link", `${label} lost on the way`);
      return;
    }
    const extra = first ? 0 : this.#rng.int(1, this.plan.maxDelayMs);
    setTimeout(() => {
      if (this.isCut) {
        this.#trace.add("link", `${label} lost in a cut`);
        return;
      }
      const reply = this.#deliver(fiberId, shipment);
      if (reply === undefined) {
        this.#trace.add("link", `${label} reached no arbiter`);
        return;
      }
      reply.then(
        (value) => {
          this.#trace.add("link", `${label} -> ${describeAnswer(value)}`);
          if (this.isCut || this.#faulty(this.plan.drop)) {
            this.#trace.add("link", `${label} answer lost`);
            return;
          }
          setTimeout(() => answer(value), this.#delay());
        },
        (error: unknown) =>
          this.#trace.add("link", `${label} -> arbiter threw ${String(error).slice(0, 100)}`),
      );
    }, this.#delay() + extra);
  }

  #delay(): number {
    return this.#rng.chance(0.1) ? this.#rng.int(20, this.plan.maxDelayMs) : this.#rng.int(1, 10);
  }

  #faulty(p: number): boolean {
    return this.plan.active && this.#rng.chance(p);
  }
}

function describeAnswer(answer: ShipmentAnswer): string {
  if (answer.status === "ok") return `ok ${answer.appliedPos} lease ${answer.leaseMs}`;
  if (answer.status === "fenced") return `fenced e${answer.epoch} ${answer.home}`;
  return `out_of_order ${answer.appliedPos}`;
}
