/**
 * The agent loop under random conversations and random faults. The model reuses tool-call ids
 * across and within replies; approvals are sent zero, one or two times; the model's streams are
 * cut at any byte (with errors that quote the URL and headers); the process crashes at any write.
 * Invariants: each tool call has its own key and does its effect at most once; a tool that needs
 * approval runs only after an approval for that very call; the final messages equal an
 * uninterrupted run's; no secret appears anywhere in the store.
 */

import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { Runtime } from "../core/runtime";
import type { Store } from "../core/store";
import { MemoryStore } from "../store/memory-store";
import { type CrashableStore, crashableStore } from "../testing/crash-store";
import { type AgentOutput, defineAgent } from "./agent";
import {
  agentRuntime,
  closeRuntimes,
  recordingTool,
  renderedText,
  storedEvents,
  storeText,
  type ToolRun,
} from "./agent-harness";
import { ScriptedModel, type ScriptedReply } from "./scripted-model";

afterEach(closeRuntimes);

const PASSWORD = "pw-SECRET-31337";
const HEADER_KEY = "hk-SECRET-8008135";
const SECRETS = [PASSWORD, HEADER_KEY, btoa(`bob:${PASSWORD}`)];

interface Call {
  id: string;
  tool: "delete_file" | "touch";
  /** How many times the approval is sent (delete_file only), and what it says. */
  times: 0 | 1 | 2;
  approved: boolean;
}
interface Scenario {
  turns: { text: string; calls: Call[] }[];
  finalText: string;
  /** Per model request: where to cut its body, as a fraction of its length. */
  cuts: (number | null)[];
  crashAtWrite: number | null;
  applyCrashingWrite: boolean;
}

const text = fc.constantFrom("", "Sure.", "Let me check 🙂 that.", "日本語 and 🎉🎉 mixed", "x".repeat(23));
const call = fc.record({
  id: fc.constantFrom("call_0", "call_1"),
  tool: fc.constantFrom("delete_file" as const, "touch" as const),
  times: fc.constantFrom(0 as const, 1 as const, 2 as const, 1 as const),
  approved: fc.boolean(),
});
const scenario: fc.Arbitrary<Scenario> = fc.record({
  turns: fc.array(fc.record({ text, calls: fc.array(call, { minLength: 1, maxLength: 2 }) }), {
    maxLength: 3,
  }),
  finalText: text.map((t) => `${t} Done.`),
  cuts: fc.array(fc.option(fc.double({ min: 0, max: 0.999, noNaN: true })), { maxLength: 8 }),
  crashAtWrite: fc.option(fc.integer({ min: 1, max: 60 })),
  applyCrashingWrite: fc.boolean(),
});

function script(s: Scenario): ScriptedReply[] {
  return [
    ...s.turns.map((turn, t) => ({
      text: turn.text,
      toolCalls: turn.calls.map((c, i) => ({
        id: c.id,
        name: c.tool,
        arguments: JSON.stringify({ path: `f${t}.${i}` }),
      })),
    })),
    { text: s.finalText },
  ];
}

/** The planned approval of the call whose path is `path`. */
function planOf(s: Scenario, path: string): Call {
  const [t, i] = path.slice(1).split(".").map(Number);
  const planned = s.turns[t ?? -1]?.calls[i ?? -1];
  if (!planned) throw new Error(`no call for ${path}`);
  return planned;
}

type Outcome =
  | { status: "completed"; output: AgentOutput }
  | { status: "blocked" }
  | { status: "failed"; error: unknown };

/** Plays the person: answers each approval as planned, by counting what the inbox holds. */
async function drive(
  rt: Runtime,
  disk: Store,
  id: string,
  s: Scenario,
  dying?: CrashableStore,
): Promise<Outcome | "crashed"> {
  const deadline = Date.now() + 8_000;
  while (Date.now() < deadline) {
    if (dying?.crashed) return "crashed";
    const record = await disk.getFiber(id);
    if (record?.status === "completed") return { status: "completed", output: record.result as AgentOutput };
    if (record?.status === "failed") return { status: "failed", error: record.error };
    const events = await storedEvents(disk, id);
    const inbox = await disk.readInbox(id);
    let blocked = false;
    for (const approval of events.filter((e) => e.type === "tool.approval")) {
      const data = approval.data as {
        event: string;
        messageId: string;
        index: number;
        arguments: { path: string };
      };
      const plan = planOf(s, data.arguments.path);
      const answered = events.some((e) => {
        const r = e.data as { messageId?: string; index?: number };
        return e.type === "tool.result" && r.messageId === data.messageId && r.index === data.index;
      });
      if (plan.times === 0 && !answered) blocked = true;
      for (let n = inbox.filter((e) => e.name === data.event).length; n < plan.times; n++) {
        const sent = rt.sendEvent(id, data.event, { approved: plan.approved });
        // A send into a crashed process hangs; what reached the store is counted next time round.
        if ((await Promise.race([sent.then(() => "sent"), sleep(50)])) !== "sent") break;
      }
    }
    if (blocked && record?.status === "waiting") return { status: "blocked" };
    await sleep(5);
  }
  throw new Error(`fiber ${id} neither finished nor blocked in time`);
}

const sleep = (ms: number) => new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms));

interface Played {
  outcome: Outcome;
  runs: ToolRun[];
  crashed: boolean;
  cuts: number;
  disk: MemoryStore;
  id: string;
}

async function play(s: Scenario, faults: boolean): Promise<Played | undefined> {
  const runs: ToolRun[] = [];
  let cutsUsed = 0;
  const model = new ScriptedModel({
    replies: script(s),
    cut: (request, body) => {
      const at = faults ? s.cuts[request] : null;
      if (at === null || at === undefined || cutsUsed >= 3) return undefined;
      cutsUsed++;
      return Math.floor(at * body.length);
    },
    cutError: (url, init) => new TypeError(`terminated: ${url} ${JSON.stringify(init?.headers)}`),
  });
  const agent = defineAgent({
    name: "prop",
    model: model.provider({
      baseUrl: `http://bob:${PASSWORD}@scripted.invalid/v1`,
      headers: { "x-api-key": HEADER_KEY },
    }),
    tools: [recordingTool(runs, { requiresApproval: true }), recordingTool(runs, { name: "touch" })],
    modelRetry: { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 2 },
  });
  const disk = new MemoryStore();
  const crashAt = faults ? s.crashAtWrite : null;
  const dying = crashableStore(
    disk,
    crashAt === null ? {} : { crashAtWrite: crashAt, applyCrashingWrite: s.applyCrashingWrite },
  );
  const first = agentRuntime(agent, dying);
  const started = await Promise.race([
    first.start(agent, { messages: [{ role: "user", content: "go" }] }),
    sleep(200),
  ]);
  // Crashed before start returned: the fiber exists only if its creating write was applied.
  const id = started?.id ?? (await disk.listFibers())[0]?.id;
  if (id === undefined) return undefined; // nothing was written: nothing to check
  let outcome = started === undefined ? "crashed" : await drive(first, disk, id, s, dying);
  if (outcome === "crashed") {
    const second = agentRuntime(agent, disk);
    await second.recover();
    outcome = await drive(second, disk, id, s);
    if (outcome === "crashed") throw new Error("a store that cannot crash crashed");
  }
  return { outcome, runs, crashed: dying.crashed, cuts: cutsUsed, disk, id };
}

describe("the agent loop under random conversations and faults", () => {
  it("keeps every invariant", { timeout: 120_000 }, async () => {
    const seen = { crashed: 0, cut: 0, blocked: 0, gatedRuns: 0, duplicatedApprovals: 0 };
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const reference = await play({ ...s, cuts: [], crashAtWrite: null }, false);
        const faulty = await play(s, true);
        await closeRuntimes();
        if (!reference || !faulty) return;
        const executed = faulty.runs;
        seen.crashed += faulty.crashed ? 1 : 0;
        seen.cut += faulty.cuts > 0 ? 1 : 0;
        seen.blocked += faulty.outcome.status === "blocked" ? 1 : 0;
        seen.gatedRuns += executed.some((r) => planOf(s, r.path).tool === "delete_file") ? 1 : 0;
        seen.duplicatedApprovals += s.turns.some((t) =>
          t.calls.some((c) => c.tool === "delete_file" && c.times === 2),
        )
          ? 1
          : 0;
        // Each call its own key; an effect at most once per key; re-runs only after a crash.
        const keyOf = new Map<string, string>();
        for (const run of executed) {
          expect(keyOf.get(run.path) ?? run.key).toBe(run.key);
          keyOf.set(run.path, run.key);
        }
        expect(new Set(keyOf.values()).size).toBe(keyOf.size);
        for (const key of keyOf.values())
          expect(executed.filter((r) => r.key === key && r.effect)).toHaveLength(1);
        if (!faulty.crashed) expect(executed).toHaveLength(keyOf.size);
        // Consent: a gated tool ran only where its own call was approved.
        const inbox = await faulty.disk.readInbox(faulty.id);
        for (const run of executed.filter((r) => planOf(s, r.path).tool === "delete_file")) {
          const plan = planOf(s, run.path);
          expect(plan.approved && plan.times > 0).toBe(true);
          expect(inbox.some((e) => e.name === `approval:${run.key}`)).toBe(true);
        }
        // Same end as the uninterrupted run.
        expect(faulty.outcome.status).toBe(reference.outcome.status);
        if (faulty.outcome.status === "completed" && reference.outcome.status === "completed")
          expect(faulty.outcome.output.messages).toEqual(reference.outcome.output.messages);
        expect([...renderedText(await storedEvents(faulty.disk, faulty.id)).values()]).toEqual([
          ...renderedText(await storedEvents(reference.disk, reference.id)).values(),
        ]);
        expect(new Set(executed.map((r) => r.path))).toEqual(new Set(reference.runs.map((r) => r.path)));
        const stored = await storeText(faulty.disk);
        for (const secret of SECRETS) expect(stored).not.toContain(secret);
      }),
      {
        numRuns: 30,
        // AGENT_PROP_EXAMPLE='<counterexample JSON>' replays one scenario.
        ...(process.env.AGENT_PROP_EXAMPLE
          ? { examples: [[JSON.parse(process.env.AGENT_PROP_EXAMPLE)]], numRuns: 1 }
          : {}),
      },
    );
    // The faults the invariants are about did happen.
    if (!process.env.AGENT_PROP_EXAMPLE)
      for (const [what, count] of Object.entries(seen)) expect(count, what).toBeGreaterThan(0);
  });
});
