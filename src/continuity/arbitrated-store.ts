/**
 * `ArbitratedStore`: the edge runtime's `Store` where fibers are replicated to it. A replica the
 * arbiter has not handed to the edge (its `home` is still a browser) is never claimed here, even
 * once that browser's lease lapsed: only the arbiter's takeover (epoch + 1, home `edge`, in its
 * own transaction, serialised with the shipments it applies) moves a fiber to the edge, so the
 * edge never runs a fiber while a shipment of the browser can still be applied to it. The Durable
 * Object host's locks claim by force (`exclusive`), which is why this is a store rule and not a
 * lease the runtime could override.
 */

import type { InboxEvent } from "../core/records";
import type { ClaimRequest, ClaimResult, Store } from "../core/store";
import type { Arbiter } from "./arbiter";
import { ForwardingStore } from "./forwarding-store";
import { EDGE_HOME } from "./protocol";

/** How soon the runtime asks again for a replica whose browser lease already lapsed. */
const TAKEOVER_RETRY_MS = 500;

/** The edge runtime's view of the replica store. */
export class ArbitratedStore extends ForwardingStore {
  readonly #arbiter: Arbiter | undefined;

  /**
   * With `arbiter`, every event for a replica goes through it (`Arbiter.accept`): one a browser's
   * fiber must get is pushed to that browser, and the replica's inbox grows only in the arbiter's
   * order. Without it, events go straight into the store.
   */
  constructor(inner: Store, arbiter?: Arbiter) {
    super(inner);
    this.#arbiter = arbiter;
  }

  override enqueueEvent(event: Omit<InboxEvent, "seq" | "consumedBy">): Promise<InboxEvent> {
    return this.#arbiter ? this.#arbiter.accept(event) : this.inner.enqueueEvent(event);
  }

  override claimFiber(id: string, request: ClaimRequest): Promise<ClaimResult> {
    // Through the arbiter's turn for the fiber, so no handoff back (`comeHome`) slips between
    // reading who holds it and claiming it. Without an arbiter nothing changes a fiber's home.
    if (this.#arbiter)
      return this.#arbiter.claimAtEdge(id, request.now, () => this.inner.claimFiber(id, request));
    return this.#claimUnlessHeld(id, request);
  }

  async #claimUnlessHeld(id: string, request: ClaimRequest): Promise<ClaimResult> {
    const record = await this.inner.getFiber(id);
    const home = record?.home;
    if (record === undefined || home === undefined || home.home === EDGE_HOME)
      return this.inner.claimFiber(id, request);
    // Held by a browser: the runner tries again when the lease ends, or soon after a lapse.
    const retryAt = Math.max(home.until, request.now + TAKEOVER_RETRY_MS);
    return { status: "held", record: { ...record, leaseUntil: retryAt } };
  }
}
