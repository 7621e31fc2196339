/**
 * One continuity schedule from one seed (`npm run simulate -- --continuity`): random fiber
 * programs started in a browser home that replicates to an edge home over a faulty link, while
 * the schedule kills either home (and brings it back, sometimes only after the lease lapsed),
 * cuts the link for short and long spells, sends events as a page or a webhook would, and
 * attaches pages that follow each fiber's stream from the browser and, once the fiber moved,
 * from the edge. Then faults stop, both homes come back, and the final checks run
 * (`continuity-checks.ts`) beside the ones made along the way (`continuity-world.ts`, the
 * ledgers). Deterministic: the same seed gives the same trace digest and the same violations.
 */

import { cancelReplicated, cancelShipped } from "../continuity/cancel";
import { bufferedEventId, sendShippedEvent } from "../continuity/send-event";
import { type FiberRecord, type FiberStatus, isTerminal } from "../core/records";
import type { CancelReply } from "../sw/protocol";
import type { AgentStats } from "./agent-log";
import { type CancelAnswer, checkContinuity } from "./continuity-checks";
import { type ContinuityBug, ContinuityWorld, HOME, type HomeNode } from "./continuity-world";
import { Findings } from "./findings";
import { Prng } from "./prng";
import { codeOf, describeProgram, generateProgram } from "./program";
import type { ScheduleResult } from "./simulate";
import { Trace } from "./trace";
import { VirtualTime } from "./virtual-time";
import type { StoreKind } from "./world";

/** Continuity schedules run no agent fibers (yet). */
const NO_AGENTS: AgentStats = {
  fibers: 0,
  completed: 0,
  requests: 0,
  cuts: 0,
  toolRuns: 0,
  reruns: 0,
  gatedRuns: 0,
  approvals: 0,
  duplicatedApprovals: 0,
};

/** Options of `runContinuitySchedule`. */
export interface ContinuityOptions {
  /** Plant a bug, to prove the checks report it. */
  plant?: ContinuityBug;
  /** Trace lines kept with each violation and returned in `trace` (default 40). */
  traceLines?: number;
  /** Timer steps after which the schedule is declared livelocked (default 40,000). */
  maxSteps?: number;
  /**
   * The browser's store: `MemoryStore` with an outbox in memory (default), or `"idb"`: `IdbStore`
   * on fake-indexeddb keeping the outbox in its commits' transactions, reloaded at every launch.
   */
  store?: StoreKind;
  /**
   * On `"idb"`, whether half the schedules install a new version of the browser's worker beside
   * the running one (default true): two workers share the database's outbox, each with its own
   * copy in memory, under one set of Web Locks, until the new one activates.
   */
  updates?: boolean;
}

/** The verdict of one continuity schedule. */
export interface ContinuityResult extends ScheduleResult {
  /** Fibers that changed home (the edge took them over) in this schedule. */
  handoffs: number;
  /** Browser launches that loaded unacknowledged positions from the outbox (`store: "idb"`). */
  reloadedPending: number;
  /** Fibers the browser took back from the edge (`comeHome`) and adopted. */
  cameHome: number;
  /** New versions of the browser's worker installed beside a running one, and those activated. */
  updates: { installed: number; activated: number };
  /** Answers the browser's mirrors got whole and as deltas, and copies checked at a cursor. */
  mirrorReads: { whole: number; delta: number; checked: number };
  /** The most claims any one fiber of the schedule had, across both homes. */
  maxClaims: number;
  /** Cancels answered, those answered `cancelled`, and those forwarded to the browser (`202`). */
  cancels: { answered: number; cancelled: number; forwarded: number };
  /** Events a fence dropped in the browser that were sent on to the edge under their id. */
  sentOn: number;
  /**
   * `awaitStart: false` fibers: browser step attempts that began before the replica held their
   * start, and attempts the edge ran again because that start never reached it.
   */
  eager: { unshipped: number; repeated: number };
}

/**
 * Runs the continuity schedule of `seed` and checks it.
 *
 * @example
 * const { violations } = await runContinuitySchedule(7);
 */
export async function runContinuitySchedule(
  seed: number,
  options: ContinuityOptions = {},
): Promise<ContinuityResult> {
  const time = new VirtualTime(options.store === "idb");
  const consoleError = console.error;
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const rng = new Prng(seed ^ 0x5eed_c0de);
  const trace = new Trace(() => time.elapsed, Math.max(200, options.traceLines ?? 0));
  const findings = new Findings(seed, trace, () => time.elapsed);
  findings.lines = options.traceLines ?? 40;
  console.error = (...args: unknown[]) => trace.add("report", args.map(String).join(" ").slice(0, 160));
  try {
    const programs = Array.from({ length: rng.int(1, 3) }, (_, i) => generateProgram(rng.fork(), i, false));
    // The edge's clock offset draws from its own stream, so the rest of a schedule is drawn as it
    // was before clocks differed: half the schedules keep one clock.
    const clocks = new Prng(seed ^ 0xc10c_5e3d);
    const edgeSkewMs = clocks.chance(0.5) ? 0 : clocks.pick([-2_000, -700, -250, 250, 700, 2_000]);
    // Updates too (`"idb"` only): a schedule without them is the one it was before they existed.
    const updateRng = new Prng(seed ^ 0x0bd_a7e5);
    const updates =
      options.store === "idb" &&
      options.updates !== false &&
      options.plant === undefined &&
      updateRng.chance(0.5);
    // Fibers whose kind sets `awaitStart: false`: their own stream too. A planted bug other than
    // the one about them keeps every fiber on Rule A, as before.
    const eagerRng = new Prng(seed ^ 0xea9e_25a7);
    const eagerStarts = new Set(
      programs
        .map((_, i) => `f${i}`)
        .filter(() =>
          options.plant === "eager-past-lease" ? true : options.plant === undefined && eagerRng.chance(0.3),
        ),
    );
    const world = new ContinuityWorld(
      rng.fork(),
      trace,
      findings,
      programs,
      options.plant,
      options.store,
      edgeSkewMs,
      updates,
      eagerStarts,
      // Mirror reads cross the network too: delays, losses, an edge down. Their own stream.
      new Prng(seed ^ 0x4ead_5eed),
    );
    const window = world.rng.int(3_000, 9_000);
    trace.add(
      "plan",
      `${programs.length} fibers, ${JSON.stringify(world.settings)}, link ${JSON.stringify(world.link.plan)}, window ${window}${options.store === "idb" ? ", store idb" : ""}${updates ? ", updates" : ""}${eagerStarts.size > 0 ? `, awaitStart: false for ${[...eagerStarts]}` : ""}`,
    );
    programs.forEach((program, i) => {
      findings.context.set(`f${i}`, describeProgram(program));
      trace.add("program", `f${i} = ${describeProgram(program)}`);
    });
    // Cancels draw from their own stream, so a schedule without one is the one it always was.
    const actions = new ContinuityActions(world, new Prng(seed ^ 0xca9ce1), new Prng(seed ^ 0x5e_d0_0e));
    world.spawnEdge("first start");
    world.spawnBrowser("first launch");
    actions.plan(window);
    if (updates) {
      for (let k = updateRng.int(1, 2); k > 0; k--) {
        const overlapMs = updateRng.int(50, 2 * world.settings.homeLeaseMs);
        setTimeout(() => world.update(overlapMs), updateRng.int(0, window));
      }
    }
    const maxSteps = options.maxSteps ?? 40_000;
    let stop = await time.runUntil(window, maxSteps);

    world.browserPlan.active = false;
    world.edgePlan.active = false;
    world.link.plan.active = false;
    world.link.heal();
    actions.faultsStopped = true;
    trace.add("phase", "faults stop");
    world.spawnEdge("back after the faults");
    world.spawnBrowser("relaunched after the faults");
    const stoppedAt = time.elapsed;
    const lease = world.settings.homeLeaseMs;
    const quiet = stoppedAt + 20 * lease + 20_000;
    for (let t = stoppedAt; stop !== "step-limit" && t < quiet; ) {
      t = Math.min(quiet, t + 1_000);
      stop = await time.runUntil(t, maxSteps);
      // A crash decided while faults were on can land just after they stopped (a write under
      // way): the home it killed comes back, as any would.
      world.spawnEdge("back after a late fault");
      world.spawnBrowser("relaunched after a late fault");
      if (t >= stoppedAt + 2 * lease && actions.settled()) break;
    }
    if (stop === "step-limit")
      findings.add("livelock", `more than ${maxSteps} timer steps by t=${time.elapsed}ms`);
    trace.add("phase", "quiescent: final checks");
    checkContinuity({
      world,
      fiberIds: actions.fiberIds,
      accepted: actions.accepted,
      cancels: actions.cancels,
      cancelSent: actions.cancelSent,
    });
    const handoffs = actions.fiberIds.filter(
      (id) => (world.edgeLedger.get(id)?.record?.home?.epoch ?? 1) > 1,
    ).length;
    actions.closeReaders();
    world.killBrowser("end of schedule");
    world.killEdge("end of schedule");
    await time.runUntil(time.elapsed, time.steps + 1000);
    return {
      seed,
      violations: findings.violations,
      digest: trace.digest,
      trace: trace.format(options.traceLines ?? 40),
      steps: time.steps,
      virtualMs: time.elapsed,
      planted: world.plantTriggered,
      agents: NO_AGENTS,
      handoffs,
      reloadedPending: world.reloadedPending,
      cameHome: world.comeHomes.adopted,
      updates: { ...world.updates },
      mirrorReads: { ...world.mirrorReads },
      maxClaims: Math.max(0, ...world.claims.values()),
      cancels: {
        answered: actions.cancels.length,
        cancelled: actions.cancels.filter((c) => c.status === "cancelled").length,
        forwarded: actions.cancels.filter((c) => c.forwarded).length,
      },
      sentOn: actions.sentOn,
      eager: { ...world.eager },
    };
  } finally {
    console.error = consoleError;
    Error.stackTraceLimit = stackTraceLimit;
    time.uninstall();
  }
}

/** A page following one fiber's stream, from the browser while it runs there, then the edge. */
interface Page {
  id: number;
  fiberId: string;
  last: number;
  controller: AbortController;
  ended: boolean;
}

/** The actions of one continuity schedule. */
class ContinuityActions {
  readonly fiberIds: string[];
  /** Per fiber, the `send` numbers whose `sendEvent` was answered. */
  readonly accepted = new Map<string, Set<number>>();
  /** What each answered cancel said. */
  readonly cancels: CancelAnswer[] = [];
  /** Fibers a cancel was sent to (their result is not compared with the oracle). */
  readonly cancelSent = new Set<string>();
  faultsStopped = false;
  /** Events sent on to the edge after a fence (`#sendOn`). */
  sentOn = 0;
  readonly #world: ContinuityWorld;
  readonly #cancelRng: Prng;
  /** Draws of sends added later (a second page's send, the delay of an event sent on): their own stream. */
  readonly #sendRng: Prng;
  /** Cancels not answered yet. */
  #pendingCancels = 0;
  readonly #pages: Page[] = [];
  #sends = 0;
  /** Sends not yet answered or given up. */
  #pendingSends = 0;

  constructor(world: ContinuityWorld, cancelRng: Prng, sendRng: Prng) {
    this.#world = world;
    this.#cancelRng = cancelRng;
    this.#sendRng = sendRng;
    this.fiberIds = world.programs.map((_, i) => `f${i}`);
  }

  /** Schedules every action inside `window`; sends may follow until `window + 3000`. */
  plan(window: number): void {
    const world = this.#world;
    const { rng } = world;
    const lease = world.settings.homeLeaseMs;
    const at = (t: number, fn: () => void) => setTimeout(fn, Math.max(0, Math.round(t)));
    world.programs.forEach((program, i) => {
      const id = this.fiberIds[i] as string;
      const startAt = rng.int(0, window / 2);
      at(startAt, () => this.#start(i, 0));
      for (const name of program.waits) at(rng.int(startAt, window + 3_000), () => this.#send(id, name));
      if (rng.chance(0.7)) at(rng.int(startAt, window), () => this.#attach(id, 0));
      // The handoff back: for some fibers the browser mirrors, it asks for the fiber at the edge
      // whenever its mirror's read finds it suspended there, as `comeHome: "at-suspension"` does.
      if (rng.chance(0.6)) at(rng.int(startAt, window), () => this.#comeHomePoll(id));
      at(startAt, () => this.#followPoll(id));
    });
    for (const id of this.fiberIds) {
      if (this.#cancelRng.chance(0.15)) at(this.#cancelRng.int(0, window + 2_000), () => this.#cancel(id));
    }
    for (let k = rng.int(1, 6); k > 0; k--) {
      const t = rng.int(0, window);
      const roll = rng.next();
      // Short absences stay inside the lease; long ones outlast it, so the edge takes over.
      const away = rng.chance(0.5) ? rng.int(100, lease / 2) : rng.int(lease + 500, 3 * lease);
      if (roll < 0.35) {
        at(t, () => world.killBrowser("every tab closed"));
        at(t + away, () => world.spawnBrowser("a page came back"));
      } else if (roll < 0.6) {
        at(t, () => world.killEdge("workerd killed"));
        at(t + rng.int(50, 1_500), () => world.spawnEdge("a request or its alarm woke it"));
      } else {
        at(t, () => world.link.cut(away));
      }
    }
  }

  /**
   * Polls `fiberId` as a browser's mirror does while it follows it, asking for it back when the
   * replica shows it suspended at the edge (and now and then when it does not: a stale read),
   * until the fiber ends or the schedule does.
   */
  #comeHomePoll(fiberId: string): void {
    const world = this.#world;
    const record = world.edgeLedger.get(fiberId)?.record;
    if (this.#closed || (record !== undefined && isTerminal(record.status))) return;
    const suspended = record?.status === "sleeping" || record?.status === "waiting";
    // The planted `grant-while-running` asks at every poll: its grant is the bug.
    const ask = suspended || world.planted === "grant-while-running" || world.rng.chance(0.1);
    // Asked by a worker whose outbox says the fiber is away (either one, during an update).
    if (ask) world.background(`come-home ${fiberId}`, world.comeHome(fiberId));
    setTimeout(() => this.#comeHomePoll(fiberId), world.rng.int(200, 800));
  }

  /**
   * Now and then, has the browser's mirror follow `fiberId` if it is away (a worker that finds a
   * fiber away follows it from then on), until the fiber ends or the schedule does.
   */
  #followPoll(fiberId: string): void {
    const world = this.#world;
    const record = world.edgeLedger.get(fiberId)?.record;
    if (this.#closed || (record !== undefined && isTerminal(record.status))) return;
    world.followAway(fiberId);
    setTimeout(() => this.#followPoll(fiberId), world.rng.int(300, 1_000));
  }

  /**
   * Cancels `fiberId` as a page or another device would: at the edge's cancel route
   * (`cancelReplicated`, which forwards it to a browser that runs the fiber, and sometimes waits
   * for its end), or in the browser that runs it (`cancelShipped`, answered once the end is
   * shipped; if the fiber moved meanwhile, at the edge, as `BrowserContinuity.cancel` does).
   */
  #cancel(fiberId: string): void {
    const world = this.#world;
    const rng = this.#cancelRng;
    const edge = world.edge;
    const browser = world.browser;
    const reason = `cancel of ${fiberId}`;
    const atEdge = (): Promise<CancelReply> => {
      const node = world.edge;
      if (!node || node.crashed) return Promise.reject(new Error("edge down"));
      const waitForEnd = rng.chance(0.5) ? (id: string) => this.#endOf(id, 1_500) : undefined;
      return cancelReplicated(
        { runtime: node.runtime, arbiter: node.arbiter, ...(waitForEnd ? { waitForEnd } : {}) },
        fiberId,
        reason,
      );
    };
    let by: string;
    let cancel: () => Promise<CancelReply>;
    if (rng.chance(0.6) && edge && !edge.crashed) {
      by = edge.name;
      cancel = atEdge;
    } else if (browser && !browser.crashed && world.outbox.where(fiberId)?.status === "home") {
      by = browser.name;
      cancel = async () => {
        try {
          return {
            status: await cancelShipped({ runtime: browser.runtime, outbox: world.outbox }, fiberId, reason),
          };
        } catch (error) {
          if (codeOf(error) !== "fenced") throw error;
          world.trace.add("action", `cancel ${fiberId}: moved away, at the edge`);
          return atEdge();
        }
      };
    } else {
      world.trace.add("action", `cancel ${fiberId}: no home takes it now`);
      return;
    }
    this.cancelSent.add(fiberId);
    this.#pendingCancels++;
    world.trace.add("action", `cancel ${fiberId} via ${by}`);
    cancel()
      .then(
        (reply) => {
          world.trace.add(
            "done",
            `cancel ${fiberId} -> ${reply.status}${reply.forwarded ? " (forwarded)" : ""}`,
          );
          this.cancels.push({ fiberId, by, at: Date.now(), ...reply });
          if (reply.forwarded) this.#checkCarriedOut(fiberId, by);
        },
        (error: unknown) => world.trace.add("error", `cancel ${fiberId}: ${codeOf(error)}`),
      )
      .finally(() => this.#pendingCancels--);
  }

  /**
   * A forwarded cancel is carried out within a bound: by the browser at its next answer (a
   * heartbeat at most), or by the takeover once its lease lapsed (a lease and an alarm, plus an
   * edge kill or two in the way). Past it, a fiber still live in the replica ignored the cancel
   * (it may have ended otherwise first: that is allowed).
   */
  #checkCarriedOut(fiberId: string, by: string): void {
    const world = this.#world;
    const bound = 4 * world.settings.homeLeaseMs + 5_000;
    setTimeout(() => {
      const record = world.edgeLedger.get(fiberId)?.record;
      if (record !== undefined && !isTerminal(record.status))
        world.findings.add(
          "cancel-ignored",
          `a cancel via ${by} was forwarded ${bound} ms ago; the replica is still ${record.status}`,
          fiberId,
        );
    }, bound);
  }

  /** The replica's terminal status of `fiberId` once it has one, or `undefined` after `ms`. */
  async #endOf(fiberId: string, ms: number): Promise<FiberStatus | undefined> {
    for (let waited = 0; waited <= ms; waited += 50) {
      const status = (await this.#world.edgeStore.getFiber(fiberId))?.status;
      if (status !== undefined && isTerminal(status)) return status;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return undefined;
  }

  /** Whether nothing more can happen: every fiber settled in the replica and shipped. */
  settled(): boolean {
    const world = this.#world;
    if (this.#pendingSends > 0 || this.#pendingCancels > 0) return false;
    for (const id of this.fiberIds) {
      const record = world.edgeLedger.get(id)?.record;
      const local = world.localLedger.get(id)?.record;
      if (!record) {
        if (local) return false;
        continue;
      }
      if (!world.outbox.settled(id) && world.outbox.where(id)?.status === "home") {
        if (world.outbox.hasPending(id)) return false;
      }
      if (isTerminal(record.status)) continue;
      // A cancel the arbiter holds for the browser is on its way into the fiber.
      if (record.home?.cancel !== undefined) return false;
      if (record.status !== "waiting" || record.wakeAt !== undefined) return false;
      // An event the arbiter holds for the browser is on its way into the fiber.
      if ((record.home?.pushed?.length ?? 0) > 0) return false;
      const wanted = new Set(record.waitingFor ?? []);
      const inbox = world.edgeLedger.get(id)?.inbox ?? [];
      if (inbox.some((e) => e.consumedBy === undefined && wanted.has(e.name))) return false;
    }
    return this.#pages.every((p) => p.ended || !this.#endedInReplica(p.fiberId));
  }

  #closed = false;

  /** Aborts every page and stops every poll (the end of the schedule). */
  closeReaders(): void {
    this.#closed = true;
    for (const page of this.#pages) page.controller.abort();
  }

  #endedInReplica(fiberId: string): boolean {
    const record = this.#world.edgeLedger.get(fiberId)?.record;
    return record !== undefined && isTerminal(record.status);
  }

  /** Starts fiber `index` in the browser; a start that failed or hung is made again (it joins). */
  #start(index: number, tries: number): void {
    const world = this.#world;
    const id = this.fiberIds[index] as string;
    const program = world.programs[index];
    const browser = world.browser;
    if (!program || tries > 12) return;
    if (world.edgeLedger.get(id)?.record || world.localLedger.get(id)?.record) {
      // Created: the outbox ships it; only a start that never reached the store is made again.
      return;
    }
    if (!browser || browser.crashed) {
      setTimeout(() => this.#start(index, tries + 1), 500);
      return;
    }
    world.trace.add("action", `start ${id} on ${browser.name}`);
    world.background(`start ${id}`, browser.runtime.start(program.name, null, { id }));
    setTimeout(() => this.#start(index, tries + 1), 1_500);
  }

  /**
   * Sends the event a program waits for, as a page does while the fiber runs in the browser and
   * a webhook does at the edge (wherever the fiber runs: the arbiter pushes it to a browser that
   * holds the fiber). Sent once: an unanswered send is never repeated
   * (the check is then that it arrived at most once).
   */
  #send(fiberId: string, name: string, send = ++this.#sends, tries = 0): void {
    const world = this.#world;
    if (tries === 0) this.#pendingSends++;
    const retry = (why: string) => {
      if (tries >= 30) {
        this.#settle(send);
        world.trace.add("action", `send ${fiberId} ${name} {send:${send}} given up: ${why}`);
        return;
      }
      setTimeout(() => this.#send(fiberId, name, send, tries + 1), 300);
    };
    // A page sends one event at a time to a fiber; now and then a second page sends beside it.
    if ((this.#busy.get(fiberId) ?? 0) > 0 && !this.#sendRng.chance(0.25)) {
      setTimeout(() => this.#send(fiberId, name, send, tries), 100);
      return;
    }
    const record = world.edgeLedger.get(fiberId)?.record;
    const where = world.outbox.where(fiberId);
    const browser = world.browser;
    let via: { node: HomeNode; sendEvent: () => Promise<void> } | undefined;
    // Some events come from elsewhere (a webhook) and reach the edge wherever the fiber runs:
    // while a browser holds it, the arbiter pushes them to that browser.
    const webhook = world.rng.chance(0.35);
    if (webhook && record?.home !== undefined && world.edge && !world.edge.crashed) {
      const edge = world.edge;
      via = { node: edge, sendEvent: () => edge.runtime.sendEvent(fiberId, name, { send }) };
    } else if (
      where?.status !== "away" &&
      browser &&
      !browser.crashed &&
      localHere(world.localLedger.get(fiberId)?.record)
    )
      via = {
        node: browser,
        // Answered once shipped, as the Service Worker host answers a page; an event whose
        // fiber moved away first is sent on to the edge under the id it had here, as
        // `BrowserContinuity.sendEvent` does.
        sendEvent: async () => {
          const outbox = world.outbox;
          try {
            await sendShippedEvent(
              { runtime: browser.runtime, store: world.replicating, outbox },
              fiberId,
              name,
              { send },
            );
          } catch (error) {
            const eventId = bufferedEventId(error);
            if (
              browser.crashed ||
              codeOf(error) !== "fenced" ||
              eventId === undefined ||
              outbox.where(fiberId)?.status !== "away"
            )
              throw error;
            await this.#sendOn(fiberId, name, send, eventId);
          }
        },
      };
    else if (record?.home?.home === "edge" && world.edge && !world.edge.crashed) {
      const edge = world.edge;
      via = { node: edge, sendEvent: () => edge.runtime.sendEvent(fiberId, name, { send }) };
    }
    if (!via) {
      retry("no home takes it now");
      return;
    }
    const { node } = via;
    world.trace.add("action", `send ${fiberId} ${name} {send:${send}} via ${node.name}`);
    this.#busy.set(fiberId, (this.#busy.get(fiberId) ?? 0) + 1);
    let inFlight = true;
    const landed = () => {
      if (!inFlight) return;
      inFlight = false;
      const left = (this.#busy.get(fiberId) ?? 1) - 1;
      if (left > 0) this.#busy.set(fiberId, left);
      else this.#busy.delete(fiberId);
    };
    via.sendEvent().then(
      () => {
        landed();
        this.#settle(send);
        const accepted = this.accepted.get(fiberId) ?? new Set();
        accepted.add(send);
        this.accepted.set(fiberId, accepted);
        world.trace.add("action", `send {send:${send}} accepted by ${node.name}`);
      },
      (error: unknown) => {
        landed();
        const code = codeOf(error);
        if (code === "fiber_ended" || error instanceof SentOnAndLost || this.#settled.has(send)) {
          this.#settle(send);
          return;
        }
        // Refused before anything was stored (a fence, a store error, not created yet): again.
        retry(code);
      },
    );
    // A send to a home that dies hangs: the page that made it is gone, and it is not repeated
    // (it may still complete, when a relaunched browser ships what it buffered).
    const check = setInterval(() => {
      if (this.#settled.has(send)) clearInterval(check);
      else if (node.crashed) {
        clearInterval(check);
        landed();
        this.#settle(send);
      }
    }, 500);
  }

  /**
   * An event the browser buffered and a fence dropped, sent on to the edge's runtime under its id
   * (`EdgeLink.sendEvent`): it takes a network delay, now and then a long one (so the fiber may
   * come home meanwhile), and fails, delivering nothing, if the link is cut or the edge is down
   * when it arrives (the page sends again). Once delivered its answer is not lost: a failure
   * after delivery abandons the send (a page cannot tell whether it arrived).
   */
  async #sendOn(fiberId: string, name: string, send: number, eventId: string): Promise<void> {
    const world = this.#world;
    const rng = this.#sendRng;
    const delay = rng.chance(0.3) ? rng.int(100, 3_000) : rng.int(1, 20);
    this.sentOn++;
    world.trace.add("action", `send {send:${send}} sent on to the edge as ${eventId} in ${delay} ms`);
    await new Promise((resolve) => setTimeout(resolve, delay));
    const edge = world.edge;
    if (!edge || edge.crashed || world.link.isCut) throw new Error("the event sent on reached no edge");
    try {
      await edge.runtime.sendEvent(fiberId, name, { send }, { eventId });
    } catch (error) {
      if (codeOf(error) === "fiber_ended") throw error;
      throw new SentOnAndLost(error);
    }
  }

  /** Per fiber, the sends under way. */
  readonly #busy = new Map<string, number>();
  /** Sends answered, given up or abandoned. */
  readonly #settled = new Set<number>();
  #settle(send: number): void {
    if (this.#settled.has(send)) return;
    this.#settled.add(send);
    this.#pendingSends--;
  }

  /** A page follows `fiberId`'s stream from seq `after`, wherever the fiber runs. */
  #attach(fiberId: string, after: number, page?: Page): void {
    const world = this.#world;
    const reader: Page = page ?? {
      id: this.#pages.length + 1,
      fiberId,
      last: after,
      controller: new AbortController(),
      ended: false,
    };
    if (!page) this.#pages.push(reader);
    if (reader.ended || (this.faultsStopped && reader.controller.signal.aborted)) return;
    const browser = world.browser;
    const away = world.outbox.where(fiberId)?.status === "away";
    const node =
      !away && browser && !browser.crashed
        ? browser
        : world.edge && !world.edge.crashed
          ? world.edge
          : undefined;
    const again = () => setTimeout(() => this.#attach(fiberId, reader.last, reader), 400);
    if (!node || (node === world.edge && !world.edgeLedger.get(fiberId)?.record)) {
      again();
      return;
    }
    const controller = new AbortController();
    reader.controller = controller;
    world.trace.add("reader", `P${reader.id} follows ${fiberId} on ${node.name} after ${reader.last}`);
    // A page on the browser moves to the edge once the fiber moved there or the browser died.
    const watch = setInterval(() => {
      const moved = node.where === "browser" && world.outbox.where(fiberId)?.status === "away";
      if (node.crashed || moved) controller.abort();
    }, 300);
    void (async () => {
      try {
        for await (const event of node.runtime.events(fiberId, {
          after: reader.last,
          signal: controller.signal,
        })) {
          if (event.seq !== reader.last + 1)
            world.findings.add("page-gap", `P${reader.id} got #${event.seq} after #${reader.last}`, fiberId);
          reader.last = event.seq;
          world.show(fiberId, event, `P${reader.id} on ${node.name}`);
          if (event.type === "fiber.end") reader.ended = true;
        }
      } catch (error) {
        world.trace.add("reader", `P${reader.id} on ${node.name} failed: ${codeOf(error)}`);
      } finally {
        clearInterval(watch);
      }
      if (!reader.ended) again();
    })();
  }
}

/** An event sent on to the edge whose answer failed after delivery: the send is abandoned. */
class SentOnAndLost extends Error {
  constructor(cause: unknown) {
    super(`the event sent on got no answer: ${codeOf(cause)}`);
  }
}

/**
 * Whether a page sends to the browser's own runtime: the fiber has a local record that does not
 * name another home. A copy the mirror rebuilt names the edge (and no outbox knows it): a page
 * goes through the host, whose `sendEvent` sends it to the edge (`BrowserContinuity.settle`).
 */
function localHere(record: FiberRecord | undefined): boolean {
  return record !== undefined && (record.home === undefined || record.home.home === HOME);
}
