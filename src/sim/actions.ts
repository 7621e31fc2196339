/**
 * The action plan of one schedule, drawn from the seed and laid out on the virtual clock:
 * fiber starts (retried after a transient error or a crash, as a page would), `sendEvent` (the
 * events each program waits for, sometimes duplicated, sometimes to an ended fiber), `cancel`,
 * readers attaching and detaching, `collect()`, `recover()`, clock jumps, explicit crashes,
 * lost Web Locks and a version change (a new node whose definitions bump the version, with or
 * without `compatibleVersions`). Agent fibers get their approvals as a person would give them:
 * when a `tool.approval` chunk becomes durable, the event it announces is sent as many times as
 * the script says (zero, one or two, approving or denying). Outcomes with a contract (typed
 * errors, what `cancel` answered) are recorded for the final checks.
 */

import { isTerminal } from "../core/records";
import type { ApprovalAsked } from "./agent-log";
import { agentInput } from "./agent-program";
import { codeOf } from "./program";
import type { Readers } from "./readers";
import type { VirtualTime } from "./virtual-time";
import type { SimNode, World } from "./world";

/** What a `cancel` call answered. */
export interface CancelOutcome {
  fiberId: string;
  status: string;
  /** Which fiber under the id was cancelled (`Ledger.lifeOf` when the cancel answered). */
  life: number;
}

/** The errors `sendEvent` may reject with under faults. */
const SEND_ERRORS = new Set(["fiber_ended", "fiber_not_found", "store_error"]);
const CANCEL_ERRORS = new Set(["fiber_not_found", "store_error"]);

/** Lays out and runs the actions of one schedule. */
export class Actions {
  readonly #world: World;
  readonly #readers: Readers;
  readonly #time: VirtualTime;
  readonly cancels: CancelOutcome[] = [];
  /** Fibers a cancel was sent to (their result is not compared with the oracle). */
  readonly cancelled = new Set<string>();
  #sends = 0;
  readonly fiberIds: string[];
  /** Approval sends scheduled but not yet made (or waiting to be retried). */
  #approvalsQueued = 0;
  /** Approval sends under way, by send number: the node they were made on. */
  readonly #approvalsInFlight = new Map<number, SimNode>();

  constructor(world: World, readers: Readers, time: VirtualTime) {
    this.#world = world;
    this.#readers = readers;
    this.#time = time;
    this.fiberIds = world.programs.map((_, i) => `f${i}`);
    world.onApproval((asked) => this.#approve(asked));
    // A send made on a node that died hangs: nothing more will come of it.
    world.onCrash((dead) => {
      for (const [send, node] of this.#approvalsInFlight)
        if (node === dead) this.#approvalsInFlight.delete(send);
    });
  }

  /** Whether an approval is still to be sent (the schedule is not settled while one is). */
  get approvalsPending(): boolean {
    return this.#approvalsQueued > 0 || this.#approvalsInFlight.size > 0;
  }

  /** Schedules every action; faults stop at `window`, events may still follow until `window + 3000`. */
  plan(window: number): void {
    const { rng } = this.#world;
    const at = (t: number, fn: () => void) => setTimeout(fn, Math.max(0, Math.round(t)));
    this.#world.programs.forEach((program, i) => {
      const id = this.fiberIds[i] as string;
      const startAt = rng.int(0, window / 2);
      at(startAt, () => this.#start(i, 0));
      const names = new Map<string, number>();
      for (const name of program.waits) names.set(name, (names.get(name) ?? 0) + 1);
      for (const [name, count] of names) {
        const sends = rng.chance(0.15) ? count - 1 : count + (rng.chance(0.25) ? 1 : 0);
        for (let k = 0; k < sends; k++) {
          const t = rng.int(startAt, window + 3000);
          at(t, () => this.#send(id, name, 0));
          if (rng.chance(0.1)) at(t + rng.int(0, 3), () => this.#send(id, name, 0));
        }
      }
    });
    const count = rng.int(3, 14);
    for (let k = 0; k < count; k++) {
      const t = rng.int(0, window);
      const roll = rng.next();
      if (roll < 0.3) at(t, () => this.#attachReader());
      else if (roll < 0.4)
        at(t, () => this.#send(rng.pick(this.fiberIds), rng.pick(["approve", "input"]), 3));
      else if (roll < 0.48) at(t, () => this.#cancel());
      else if (roll < 0.56) at(t, () => this.#onLive("collect()", (n) => n.runtime.collect()));
      else if (roll < 0.64) at(t, () => this.#onLive("recover()", (n) => n.runtime.recover()));
      else if (roll < 0.72) at(t, () => this.#jump());
      else if (roll < 0.8) at(t, () => this.#crashOne());
      else if (roll < 0.86) at(t, () => this.#world.plan.active && this.#world.stealLock());
      else if (roll < 0.9) at(t, () => this.#versionChange());
      else at(t, () => this.#spawnRival());
    }
  }

  #node(): SimNode | undefined {
    const live = this.#world.live;
    return live.length > 0 ? this.#world.rng.pick(live) : undefined;
  }

  #onLive(label: string, fn: (node: SimNode) => Promise<unknown>): void {
    const node = this.#node();
    if (!node) return;
    this.#world.trace.add("action", `${label} on ${node.name}`);
    this.#world.background(`${label} on ${node.name}`, fn(node));
  }

  #start(index: number, tries: number): void {
    const world = this.#world;
    const node = this.#node();
    const id = this.fiberIds[index] as string;
    const program = world.programs[index];
    if (!node || !program || tries > 6) return;
    world.trace.add(
      "action",
      `start ${id} (${program.name}) on ${node.name}${tries ? ` retry ${tries}` : ""}`,
    );
    let settled = false;
    const retry = () => {
      if (!settled) setTimeout(() => this.#start(index, tries + 1), world.rng.int(50, 500));
      settled = true;
    };
    const input = program.agent ? agentInput(id) : { i: index };
    node.runtime.start(program.name, input, { id, idempotencyKey: `key-${id}` }).then(
      () => {
        settled = true;
        world.trace.add("done", `start ${id} on ${node.name}`);
      },
      (error) => {
        world.trace.add("error", `start ${id} on ${node.name}: ${codeOf(error)}`);
        if (codeOf(error) !== "store_error")
          world.findings.add("start-error", `start rejected with ${codeOf(error)}`, id);
        retry();
      },
    );
    // A page whose worker died retries the start (it joins the fiber if the first one landed).
    world.onCrash((dead) => {
      if (dead === node) retry();
    });
  }

  /** Sends the approvals the script plans for `asked.call`, each after a random delay. */
  #approve(asked: ApprovalAsked): void {
    const world = this.#world;
    for (const approved of asked.call.approvals) {
      this.#approvalsQueued++;
      setTimeout(
        () => {
          this.#approvalsQueued--;
          this.#send(asked.fiberId, asked.event, 0, { approved });
        },
        world.rng.int(0, 1500),
      );
    }
  }

  /** `approval`: an approval's payload (tracked until it settles, retries included). */
  #send(id: string, name: string, retries: number, approval?: { approved: boolean }): void {
    const world = this.#world;
    const node = this.#node();
    if (!node) return;
    const send = ++this.#sends;
    const payload = { send, ...approval };
    const approves = approval ? ` approved:${approval.approved}` : "";
    world.trace.add("action", `sendEvent ${id} ${name} {send:${send}${approves}} on ${node.name}`);
    if (approval) this.#approvalsInFlight.set(send, node);
    node.runtime.sendEvent(id, name, payload).then(
      () => {
        this.#approvalsInFlight.delete(send);
        world.trace.add("done", `sendEvent ${id} {send:${send}}`);
      },
      (error) => {
        this.#approvalsInFlight.delete(send);
        const code = codeOf(error);
        world.trace.add("error", `sendEvent ${id} {send:${send}}: ${code}`);
        if (!SEND_ERRORS.has(code))
          world.findings.add("send-event-error", `sendEvent rejected with ${code}`, id);
        if (code === "fiber_ended" && !isTerminal(world.ledger.get(id)?.record?.status ?? "running")) {
          world.findings.add("send-event-error", `sendEvent said fiber_ended but the fiber is live`, id);
        }
        if ((code === "store_error" || code === "fiber_not_found") && retries < 3) {
          if (approval) this.#approvalsQueued++;
          setTimeout(
            () => {
              if (approval) this.#approvalsQueued--;
              this.#send(id, name, retries + 1, approval);
            },
            world.rng.int(100, 1000),
          );
        }
      },
    );
  }

  #cancel(): void {
    const world = this.#world;
    const node = this.#node();
    if (!node) return;
    const id = world.rng.pick(this.fiberIds);
    this.cancelled.add(id);
    world.trace.add("action", `cancel ${id} on ${node.name}`);
    node.runtime.cancel(id, "cancelled by the simulator").then(
      (status) => {
        world.trace.add("done", `cancel ${id} -> ${status}`);
        this.cancels.push({ fiberId: id, status, life: world.ledger.lifeOf(id) });
      },
      (error) => {
        const code = codeOf(error);
        world.trace.add("error", `cancel ${id}: ${code}`);
        if (!CANCEL_ERRORS.has(code)) world.findings.add("cancel-error", `cancel rejected with ${code}`, id);
      },
    );
  }

  #attachReader(): void {
    const world = this.#world;
    const node = this.#node();
    if (!node) return;
    const id = world.rng.pick(this.fiberIds);
    const head = world.ledger.get(id)?.stream.length ?? 0;
    const after = world.rng.chance(0.5) ? 0 : world.rng.int(0, head + 1);
    const reader = this.#readers.attach(id, after, node, world.rng.chance(0.5));
    if (world.rng.chance(0.5)) {
      setTimeout(() => this.#readers.detach(reader, "detached"), world.rng.int(0, 3000));
    }
  }

  #jump(): void {
    if (!this.#world.plan.active) return;
    const ms = this.#world.rng.int(100, 2 * this.#world.settings.leaseMs);
    this.#world.trace.add("FAULT", `clock jumps +${ms} ms`);
    this.#time.jump(ms);
  }

  #crashOne(): void {
    const world = this.#world;
    const node = this.#node();
    if (!node || !world.plan.active || world.plan.crashesLeft <= 0) return;
    world.plan.crashesLeft--;
    world.crash(node, "killed by the schedule");
  }

  #versionChange(): void {
    const world = this.#world;
    if (world.version !== "1") return;
    world.version = "2";
    world.compatible = world.rng.chance(0.5) ? ["1"] : [];
    world.spawn(`version change to 2${world.compatible.length ? " (compatible with 1)" : " (incompatible)"}`);
  }

  #spawnRival(): void {
    if (this.#world.live.length < 3) this.#world.spawn("a second worker on the same store");
  }
}
