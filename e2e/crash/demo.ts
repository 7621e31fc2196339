/**
 * The crash suite's view of the built demo app: start its fibers (`lab.ticker`, `lab.effects`, the
 * assistant on the mock model) with a follower that reads each stream through every fault, read
 * the worker's records and the lab's effect ledger, and judge a finished fiber against the
 * invariants: no lost, duplicated or reordered chunk at the reader, no completed step run again,
 * no side effect applied twice, and the assistant's replies equal to the mock's uninterrupted ones.
 * Used by `e2e/crash/*.spec.ts` and the torture run (`e2e/torture/`).
 */

import { randomUUID } from "node:crypto";
import type { Page } from "@playwright/test";
import {
  type EffectCounts,
  type EffectsInput,
  overlappingRuns,
  type TickerInput,
} from "../../app/lab-fibers";
import type { DeletionEntry } from "../../app/shared/demo-api";
import { ASSISTANT_SYSTEM_PROMPT } from "../../app/worker/assistant";
import { type AgentOutput, type ToolCallRef, toolCallKey } from "../../src/agent/agent";
import { mockReply } from "../../src/agent/mock-model";
import type { ChatMessage } from "../../src/agent/types";
import type { FiberEvent, JournalEntry } from "../../src/core/records";
import type { FiberInspection } from "../../src/core/runtime";
import { type AppSession, checkStream, type StreamFollower } from "../../src/testing/index";

/** The tools the demo assistant offers the model (its reply depends on them). */
export const ASSISTANT_TOOLS = ["calculator", "clock", "delete_file"] as const;

/** One fiber under test: what was started, and the follower reading its stream. */
export type Subject =
  | { kind: "ticker"; id: string; input: TickerInput; log: StreamFollower }
  | { kind: "effects"; id: string; input: EffectsInput; log: StreamFollower }
  | {
      kind: "assistant";
      id: string;
      input: { messages: ChatMessage[] };
      log: StreamFollower;
      /** The messages before the input that the worker read by reference (`historyRef`), if any. */
      history?: ChatMessage[];
    };

/** What {@link verify} found; every count is 0 and `problems` empty for a correct run. */
export interface Verdict {
  lost: number;
  duplicated: number;
  reordered: number;
  /** Completed steps that ran again, and side effects applied twice. */
  reExecuted: number;
  duplicatedEffects: number;
  problems: string[];
}

type ClientMethod = "start" | "get" | "inspect" | "sendEvent" | "heartbeat" | "list";

/**
 * Calls the page's client, again when the worker restarted under the call (`worker_restarted`)
 * or did not answer in time: every call made here is safe to repeat (starts carry an id).
 */
export async function rpc<T>(page: Page, method: ClientMethod, ...args: unknown[]): Promise<T> {
  return (await page.evaluate(
    async ({ method, args }) => {
      const client = window.fiberline as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
      for (let attempt = 1; ; attempt++) {
        try {
          return await client[method]?.(...args);
        } catch (error) {
          const code = (error as { code?: string }).code;
          if (attempt >= 6 || (code !== "worker_restarted" && code !== "deadline_exceeded")) throw error;
        }
      }
    },
    { method, args },
  )) as T;
}

/** Everything durable about a fiber. */
export function inspect(page: Page, id: string): Promise<FiberInspection> {
  return rpc<FiberInspection>(page, "inspect", id);
}

/** The lab's effect ledger for one fiber (`GET /demo-api/lab/effects`). */
export async function effectsOf(page: Page, id: string): Promise<EffectCounts> {
  return await page.evaluate(async (fiberId) => {
    const response = await fetch(`/demo-api/lab/effects?fiberId=${encodeURIComponent(fiberId)}`);
    if (!response.ok) throw new Error(`GET /demo-api/lab/effects: HTTP ${response.status}`);
    return (await response.json()) as EffectCounts;
  }, id);
}

/**
 * Per step key, how many times the ledger outside the browser saw its body run, beside the
 * attempts the fiber's journal recorded for it: a body never runs without a journaled attempt,
 * so `executions <= attempts` for every key, and a step the journal shows on its first attempt
 * ran once.
 */
export async function executionsAgainstJournal(
  page: Page,
  id: string,
): Promise<Array<{ key: string; executions: number; attempts: number }>> {
  const [ledger, inspection] = await Promise.all([effectsOf(page, id), inspect(page, id)]);
  const attempts = new Map(
    inspection.journal.filter((e) => e.kind === "step").map((e) => [`${id}:${e.key}`, e.attempt]),
  );
  return ledger.entries.map((e) => ({
    key: e.key,
    executions: e.executions,
    attempts: attempts.get(e.key) ?? 0,
  }));
}

/** The approval-gated tool's recorded deletions (`GET /demo-api/deletions`). */
export async function deletions(page: Page): Promise<DeletionEntry[]> {
  return await page.evaluate(async () => {
    const response = await fetch("/demo-api/deletions");
    if (!response.ok) throw new Error(`GET /demo-api/deletions: HTTP ${response.status}`);
    return (await response.json()) as DeletionEntry[];
  });
}

/** Sets the mock model's delay between tokens (the worker's settings). */
export async function setMockDelay(page: Page, ms: number): Promise<void> {
  const status = await page.evaluate(async (mockDelayMs) => {
    const response = await fetch("/demo-api/settings", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ mockDelayMs }),
    });
    return response.status;
  }, ms);
  if (status !== 200) throw new Error(`PUT /demo-api/settings: HTTP ${status}`);
}

/** Starts `lab.ticker` from the session's current page and follows its stream. */
export async function startTicker(app: AppSession, input: TickerInput): Promise<Subject> {
  const id = randomUUID();
  await rpc(app.page, "start", "lab.ticker", input, { id });
  return { kind: "ticker", id, input, log: app.follow(id) };
}

/** Starts `lab.effects` from the session's current page and follows its stream. */
export async function startEffects(app: AppSession, input: EffectsInput): Promise<Subject> {
  const id = randomUUID();
  await rpc(app.page, "start", "lab.effects", input, { id });
  return { kind: "effects", id, input, log: app.follow(id) };
}

/**
 * Starts `lab.batch` (the effects in the fiber + stash shape) from the session's current page and
 * follows its stream; judged as `lab.effects` is.
 */
export async function startBatch(app: AppSession, input: EffectsInput): Promise<Subject> {
  const id = randomUUID();
  await rpc(app.page, "start", "lab.batch", input, { id });
  return { kind: "effects", id, input, log: app.follow(id) };
}

/** Starts the assistant on one user message and follows its stream. */
export async function startAssistant(app: AppSession, prompt: string): Promise<Subject> {
  const id = randomUUID();
  const input = { messages: [{ role: "user", content: prompt } satisfies ChatMessage] };
  await rpc(app.page, "start", "assistant", input, { id });
  return { kind: "assistant", id, input, log: app.follow(id) };
}

/** The `toolCallId` of the first `tool.approval` chunk a follower received. */
export function approvalCallId(log: StreamFollower): string {
  const approval = log.events.find((e) => e.type === "tool.approval");
  const callId = (approval?.data as { toolCallId?: string } | undefined)?.toolCallId;
  if (!callId) throw new Error(`Fiber ${log.fiberId} asked for no approval yet.`);
  return callId;
}

/** The event that answers the first `tool.approval` chunk a follower received (bound to that call). */
export function approvalEvent(log: StreamFollower): string {
  const approval = log.events.find((e) => e.type === "tool.approval");
  const event = (approval?.data as { event?: string } | undefined)?.event;
  if (!event) throw new Error(`Fiber ${log.fiberId} asked for no approval yet.`);
  return event;
}

/** The `idempotencyKey` the tool of the first `tool.approval` chunk runs with (`toolCallKey`). */
export function approvalKey(log: StreamFollower): string {
  const approval = log.events.find((e) => e.type === "tool.approval");
  if (!approval) throw new Error(`Fiber ${log.fiberId} asked for no approval yet.`);
  return toolCallKey(approval.data as ToolCallRef);
}

/** The mock model's uninterrupted reply to the demo assistant, given the conversation so far. */
export function expectedReply(conversation: readonly ChatMessage[]): ReturnType<typeof mockReply> {
  return mockReply([{ role: "system", content: ASSISTANT_SYSTEM_PROMPT }, ...conversation], {
    tools: ASSISTANT_TOOLS,
  });
}

/** Journal entries of steps named `name` (by `name#n` key), in run order. */
function stepsNamed(journal: readonly JournalEntry[], prefix: string): JournalEntry[] {
  return journal.filter((e) => e.kind === "step" && e.key.startsWith(prefix)).sort((a, b) => a.pos - b.pos);
}

/**
 * Judges a finished fiber. Waits for its `fiber.end` at the follower, re-reads the whole stream
 * from the page to compare, then checks its kind's invariants against the journal (and ledger).
 */
export async function verify(app: AppSession, subject: Subject, timeoutMs = 90_000): Promise<Verdict> {
  const verdict: Verdict = {
    lost: 0,
    duplicated: 0,
    reordered: 0,
    reExecuted: 0,
    duplicatedEffects: 0,
    problems: [],
  };
  const problem = (text: string) => verdict.problems.push(`${subject.kind} ${subject.id}: ${text}`);
  const events = await subject.log.done({ timeoutMs });
  const report = checkStream(events, { after: subject.log.after });
  verdict.lost = report.lost.length;
  verdict.duplicated = report.duplicated.length;
  verdict.reordered = report.reordered.length;
  if (report.lost.length) problem(`lost seq ${report.lost.join(",")}`);
  if (report.duplicated.length) problem(`duplicated seq ${report.duplicated.join(",")}`);
  if (report.reordered.length) problem(`reordered seq ${report.reordered.join(",")}`);
  if (report.afterEnd) problem(`${report.afterEnd} chunk(s) after fiber.end`);
  if (report.status !== "completed")
    problem(`ended ${report.status}: ${JSON.stringify((events.at(-1)?.data as { error?: unknown })?.error)}`);
  // What the reader saw is what the worker keeps: a fresh read from 0 gives the same chunks.
  const stored = await app.readEvents(subject.id);
  const seen = new Map(events.map((e) => [e.seq, e]));
  for (const chunk of stored) {
    const mine = seen.get(chunk.seq);
    if (mine && (mine.type !== chunk.type || JSON.stringify(mine.data) !== JSON.stringify(chunk.data)))
      problem(`seq ${chunk.seq} read as ${mine.type} but stored as ${chunk.type}`);
  }
  if (stored.length !== events.length)
    problem(`reader saw ${events.length} chunks, the stream holds ${stored.length}`);
  const info = await inspect(app.page, subject.id);
  const chunks = (type: string) => events.filter((e) => e.type === type);
  /** A step whose last attempt began after the chunk that followed its completion ran again. */
  const ranAgain = (step: JournalEntry | undefined, after: FiberEvent | undefined, what: string) => {
    if (!step || !after) return;
    if (step.startedAt > after.at) {
      verdict.reExecuted++;
      problem(`${what} (${step.key}, attempt ${step.attempt}) ran again after it had completed`);
    }
  };
  switch (subject.kind) {
    case "ticker": {
      const ticks = chunks("tick");
      const is = ticks.map((e) => (e.data as { i: number }).i);
      const want = Array.from({ length: subject.input.count }, (_, i) => i);
      if (JSON.stringify(is) !== JSON.stringify(want)) problem(`ticks ${is.join(",")}`);
      const steps = stepsNamed(info.journal, "tick#");
      if (steps.length !== subject.input.count || steps.some((s) => s.status !== "completed"))
        problem(`journal holds ${steps.filter((s) => s.status === "completed").length} completed ticks`);
      for (const [k, step] of steps.entries()) ranAgain(step, ticks[k], `tick step ${k}`);
      if (
        subject.input.stash &&
        JSON.stringify(info.snapshot) !== JSON.stringify({ ticks: subject.input.count })
      )
        problem(`snapshot ${JSON.stringify(info.snapshot)}`);
      if (subject.input.sleepAfter !== undefined) {
        const nap = info.journal.find((e) => e.kind === "sleep");
        const next = ticks[subject.input.sleepAfter];
        if (nap?.status !== "completed") problem(`sleep ${nap?.status ?? "missing"}`);
        else if (next && nap.dueAt !== undefined && next.at < nap.dueAt)
          problem(`tick ${subject.input.sleepAfter} came before the sleep was due`);
      }
      break;
    }
    case "effects": {
      const progress = chunks("progress");
      const done = progress.map((e) => (e.data as { done: number }).done);
      const want = Array.from({ length: subject.input.count }, (_, i) => i + 1);
      if (JSON.stringify(done) !== JSON.stringify(want)) problem(`progress ${done.join(",")}`);
      const steps = stepsNamed(info.journal, "effect#");
      if (steps.length !== subject.input.count || steps.some((s) => s.status !== "completed"))
        problem(`journal holds ${steps.filter((s) => s.status === "completed").length} completed effects`);
      for (const [k, step] of steps.entries()) ranAgain(step, progress[k], `effect step ${k}`);
      const ledger = await effectsOf(app.page, subject.id);
      if (ledger.keys !== subject.input.count) problem(`ledger holds ${ledger.keys} keys`);
      for (const entry of ledger.entries) {
        const step = steps[entry.index];
        // Each execution of a step body is an attempt the journal recorded before it ran; more
        // executions than attempts means two runners ran one attempt: an effect applied twice.
        if (!step || entry.executions > step.attempt) {
          verdict.duplicatedEffects++;
          problem(`effect ${entry.index} ran ${entry.executions} times in ${step?.attempt ?? 0} attempt(s)`);
        }
        // The ledger's own times, independent of the journal: no execution began while another
        // of the same step was still running (a killed one never ends, and is not compared).
        const overlap = overlappingRuns(entry.runs ?? []);
        if (overlap) {
          verdict.duplicatedEffects++;
          problem(`effect ${entry.index} had two executions at once: ${overlap}`);
        }
        const after = progress[entry.index];
        if (after && entry.lastAt > after.at) {
          verdict.reExecuted++;
          problem(`effect ${entry.index} was applied again after its step completed`);
        }
      }
      break;
    }
    case "assistant": {
      const output = info.record.result as AgentOutput | undefined;
      const messages = output?.messages ?? [];
      const starts = new Map<string, number>();
      const ends = new Map<string, number>();
      const text = new Map<string, string>();
      for (const e of events) {
        const data = e.data as { messageId?: string; delta?: string };
        if (!data.messageId) continue;
        if (e.type === "message.start") starts.set(data.messageId, (starts.get(data.messageId) ?? 0) + 1);
        if (e.type === "message.end") ends.set(data.messageId, (ends.get(data.messageId) ?? 0) + 1);
        if (e.type === "message.reset") text.set(data.messageId, "");
        if (e.type === "text.delta")
          text.set(data.messageId, (text.get(data.messageId) ?? "") + (data.delta ?? ""));
      }
      // A model step streams its `message.end` *inside* the step, so an attempt that starts after
      // it is legitimate: the completion rides the next write, a crash came first, and the new
      // attempt returns the streamed reply without a request (`replayPartial`). A request made
      // again would stream more of that message after its end: that is what is checked.
      // (Tool results and approvals name the message whose call they answer: they come after it.)
      const streamed = new Set([
        "message.start",
        "message.reset",
        "message.retry",
        "text.delta",
        "reasoning.delta",
        "tool.call",
        "message.end",
      ]);
      const ended = new Set<string>();
      for (const e of events) {
        const id = (e.data as { messageId?: string } | null)?.messageId;
        if (id === undefined || !streamed.has(e.type)) continue;
        if (ended.has(id)) {
          verdict.reExecuted++;
          problem(
            `model call for ${id} streamed ${e.type} (seq ${e.seq}) after its message.end: it ran again`,
          );
        }
        if (e.type === "message.end") ended.add(id);
      }
      let turn = 0;
      for (let j = subject.input.messages.length; j < messages.length; j++) {
        const message = messages[j];
        if (message?.role !== "assistant") continue;
        turn++;
        const want = expectedReply([...(subject.history ?? []), ...messages.slice(0, j)]);
        if ((message.content ?? "") !== want.text)
          problem(`turn ${turn} says ${JSON.stringify(message.content)}`);
        const calls = (message.tool_calls ?? []).map((c) => [c.id, c.function.name, c.function.arguments]);
        const wantCalls = want.toolCalls.map((c) => [c.id, c.name, c.arguments]);
        if (JSON.stringify(calls) !== JSON.stringify(wantCalls))
          problem(`turn ${turn} calls ${JSON.stringify(calls)}`);
        const messageId = `${subject.id}:m${turn}`;
        if (starts.get(messageId) !== 1)
          problem(`${starts.get(messageId) ?? 0} message.start for turn ${turn}`);
        if (ends.get(messageId) !== 1) problem(`${ends.get(messageId) ?? 0} message.end for turn ${turn}`);
        if ((text.get(messageId) ?? "") !== want.text)
          problem(`turn ${turn} streamed text differs from its reply`);
      }
      if (turn === 0) problem("no assistant reply in the result");
      const results = chunks("tool.result");
      const calls = chunks("tool.call");
      for (const call of calls) {
        const callId = (call.data as { toolCallId: string }).toolCallId;
        const answers = results.filter((r) => (r.data as { toolCallId: string }).toolCallId === callId);
        if (answers.length !== 1) problem(`${answers.length} tool.result for ${callId}`);
        ranAgain(
          info.journal.find((e) => e.key === `tool:${callId}#1`),
          answers[0],
          `tool call ${callId}`,
        );
      }
      break;
    }
  }
  return verdict;
}
