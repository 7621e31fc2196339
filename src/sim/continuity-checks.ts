/**
 * The final checks of a continuity schedule, once faults stopped and both homes settled, on the
 * replica (the merged history) and the browser's own store: every fiber reached the edge and
 * ended or waits with nothing to wake it; what the browser still calls its own is exactly the
 * replica, and what it shipped before a change of home is the replica's prefix (invariant 2);
 * every chunk a page was shown is the merged history's chunk at that seq (invariant 4); every
 * accepted event is in the replica once and consumed by at most one wait (invariant 5); and a
 * deterministic program returns what an uninterrupted run returns, wherever it ran.
 */

import { type FiberStatus, isTerminal, type JournalEntry, type StreamChunk } from "../core/records";
import { canonical } from "./agent-program";
import type { ContinuityWorld } from "./continuity-world";
import { oracle } from "./program";
import { EPOCH } from "./virtual-time";

/** What one answered cancel said, and through which home it went. */
export interface CancelAnswer {
  fiberId: string;
  by: string;
  /** When it was answered (virtual time). */
  at: number;
  status: FiberStatus;
  forwarded?: true;
}

/** What the final checks need besides the world. */
export interface ContinuityFinal {
  world: ContinuityWorld;
  fiberIds: readonly string[];
  /** Per fiber, the `send` numbers whose `sendEvent` was answered. */
  accepted: ReadonlyMap<string, ReadonlySet<number>>;
  /** Every answered cancel. */
  cancels?: readonly CancelAnswer[];
  /** Fibers a cancel was sent to, answered or not. */
  cancelSent?: ReadonlySet<string>;
}

/** Runs every final check; violations go to the world's findings. */
/** More claims granted for one fiber than any schedule's work explains (`wake-storm`). */
const WAKE_STORM_CLAIMS = 50;

export function checkContinuity({
  world,
  fiberIds,
  accepted,
  cancels = [],
  cancelSent = new Set(),
}: ContinuityFinal): void {
  // The replica's times are on the edge's clock.
  const now = world.edgeNow();
  fiberIds.forEach((id, i) => {
    const program = world.programs[i];
    const fail = (invariant: string, detail: string) => world.findings.add(invariant, detail, id);
    const replica = world.edgeLedger.get(id);
    const local = world.localLedger.get(id);
    const record = replica?.record;
    if (!replica || !record) {
      if (local?.record)
        fail("never-replicated", `the browser holds it (${local.record.status}), the edge nothing`);
      return;
    }
    if (record.status === "running")
      fail("stranded-running", `still running at the end (owner ${record.owner})`);
    // Every claim granted is a pick-up: a schedule's waits, sleeps, crashes and handoffs make a
    // handful (at most 6 in 300 schedules), a fiber woken over and over with nothing to do makes
    // them by the dozen.
    const claims = world.claims.get(id) ?? 0;
    if (claims > WAKE_STORM_CLAIMS) fail("wake-storm", `${claims} claims granted across both homes`);
    if (
      !isTerminal(record.status) &&
      record.wakeAt !== undefined &&
      record.wakeAt < now - 4 * world.settings.homeLeaseMs
    )
      fail("missed-wake", `${record.status} with wakeAt t=${record.wakeAt - EPOCH}ms`);
    if (record.status === "waiting") {
      const wanted = new Set(record.waitingFor ?? []);
      const buffered = replica.inbox.find((e) => e.consumedBy === undefined && wanted.has(e.name));
      if (buffered)
        fail("waiting-with-buffered-event", `waits for ${[...wanted]} with #${buffered.seq} unconsumed`);
    }

    const where = world.outbox.where(id);
    if (local?.record) {
      const shippedUpTo = world.outbox.visibleHead(id);
      const prefix = local.stream.filter((c) => c.seq <= shippedUpTo);
      const differs = prefix.find((c) => !sameChunk(c, replica.stream[c.seq - 1]));
      if (differs)
        fail("replica-not-a-prefix", `shipped chunk #${differs.seq} ${differs.type} differs in the replica`);
      if (where?.status === "home") {
        if (!world.outbox.settled(id) && isTerminal(local.record.status))
          fail(
            "unshipped-at-end",
            `ended here but the outbox still holds positions past ${world.outbox.acked(id)}`,
          );
        if (world.outbox.settled(id) && !sameJournal(local.journal, replica.journal))
          fail("replica-differs", "the browser's journal and the replica's differ after everything shipped");
      }
    }

    for (const [seq, chunk] of world.shown.get(id) ?? []) {
      const held = replica.stream[seq - 1];
      if (!held || held.type !== chunk.type || JSON.stringify(held.data) !== chunk.data)
        fail(
          "shown-chunk-rewritten",
          `${chunk.by} was shown #${seq} ${chunk.type}; the merged stream holds ${held ? held.type : "nothing"}`,
        );
    }

    const sends = new Map<number, number>();
    for (const event of replica.inbox) {
      const send = (event.payload as { send?: number } | null)?.send;
      if (typeof send === "number") sends.set(send, (sends.get(send) ?? 0) + 1);
    }
    for (const [send, count] of sends)
      if (count > 1)
        fail("event-duplicated", `event {send:${send}} is in the replica's inbox ${count} times`);
    for (const send of accepted.get(id) ?? [])
      if (!sends.has(send))
        fail("event-lost", `event {send:${send}} was accepted but the replica's inbox lacks it`);
    const consumed = new Map<number, string>();
    for (const entry of replica.journal) {
      const send = (entry.result as { send?: number } | undefined)?.send;
      if (entry.kind !== "event" || entry.status !== "completed" || typeof send !== "number") continue;
      const other = consumed.get(send);
      if (other) fail("one-event-two-waits", `event {send:${send}} satisfied ${other} and ${entry.key}`);
      consumed.set(send, entry.key);
    }

    for (const answer of cancels.filter((c) => c.fiberId === id)) {
      // Told "cancelled": the merged history must say so, whichever home carried it out.
      if (answer.status === "cancelled" && record.status !== "cancelled")
        fail(
          "cancel-undone",
          `a cancel via ${answer.by} answered cancelled; the replica is ${record.status}`,
        );
      // Forwarded: durable, so the fiber must have ended (cancelled, or otherwise first).
      if (answer.forwarded && !isTerminal(record.status))
        fail("cancel-forgotten", `a cancel via ${answer.by} was forwarded; the replica is ${record.status}`);
      // ...and carried out soon: the browser that runs the fiber hears it in its next answer (a
      // heartbeat at most), or stops at its lease's end and the takeover ends the fiber. No
      // operation of the fiber starts a lease (and a second) after the cancel was forwarded.
      const late = answer.at + world.settings.homeLeaseMs + 1_000;
      const started = replica.journal.find((e) => answer.forwarded && e.startedAt > late);
      if (started)
        fail(
          "cancel-ignored",
          `${started.key} started ${started.startedAt - answer.at} ms after a cancel via ${answer.by} was forwarded`,
        );
    }

    const code = record.error?.code ?? "";
    // Replays are exact in either home, timed waits included: a divergence is the engine's fault.
    if (record.status === "failed" && code === "replay_diverged")
      fail("replay-diverged", (record.error?.message ?? "").slice(0, 200));
    if (!program?.deterministic || !isTerminal(record.status)) return;
    if (cancelSent.has(id) && record.status === "cancelled") return;
    if (record.status === "failed" && ["recovery_exhausted", "recovery_aborted"].includes(code)) return;
    const events = new Map<string, number[]>();
    for (const e of replica.inbox) {
      const list = events.get(e.name) ?? [];
      list.push((e.payload as { send: number }).send);
      events.set(e.name, list);
    }
    const expected = oracle(program, events);
    const got = record.status === "completed" ? JSON.stringify(record.result) : `${record.status} ${code}`;
    if (expected !== undefined && got !== JSON.stringify(expected))
      fail(
        "result-differs",
        `ended with ${got.slice(0, 160)}; an uninterrupted run returns ${JSON.stringify(expected).slice(0, 160)}`,
      );
  });
}

function sameChunk(a: StreamChunk, b: StreamChunk | undefined): boolean {
  return (
    b !== undefined &&
    a.seq === b.seq &&
    a.type === b.type &&
    JSON.stringify(a.data) === JSON.stringify(b.data)
  );
}

/** Same entries, whatever the key order each store reads them back in (IdbStore's differs). */
function sameJournal(a: readonly JournalEntry[], b: readonly JournalEntry[]): boolean {
  return canonical(a) === canonical(b);
}
