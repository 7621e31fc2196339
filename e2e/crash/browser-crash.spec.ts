/**
 * The browser SIGKILLed (every tab, the worker and the browser process, mid-instruction) and
 * relaunched on the same profile, at the worst moments: during a step, during a stash, during a
 * model's streamed reply and during a tool call. Each fiber resumes when a page opens again and
 * completes once; the reader sees each chunk once; nothing that completed runs again.
 */

import { LAB_CHANNEL } from "../../app/lab-fibers";
import { holdStore, stashAnnounced, watchStashes } from "./blockers";
import {
  approvalCallId,
  approvalEvent,
  approvalKey,
  deletions,
  effectsOf,
  executionsAgainstJournal,
  inspect,
  rpc,
  setMockDelay,
  startAssistant,
  startBatch,
  startEffects,
  startTicker,
} from "./demo";
import { expect, test } from "./scenario";

test("SIGKILL during a step: the interrupted step runs again under its key, the others never", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  const effects = await startEffects(app, { count: 5, intervalMs: 1_000 });
  await effects.log.count(1, "progress");
  // Mid-step: the effect of the next step is in the ledger, its progress chunk not yet.
  await expect
    .poll(
      async () =>
        (await effectsOf(app.page, effects.id)).keys -
        effects.log.events.filter((e) => e.type === "progress").length,
    )
    .toBe(1);
  await app.crashBrowser();
  await app.relaunch();
  await app.openTab("/");
  await expectIntact(effects, background);
  const ledger = await effectsOf(app.page, effects.id);
  // The cut-off step ran at most once more, under the same idempotency key, and only where the
  // journal records a second attempt (it may have completed just before the kill: then none).
  expect(ledger.reExecutions).toBeLessThanOrEqual(1);
  for (const step of await executionsAgainstJournal(app.page, effects.id)) {
    expect(step.executions, step.key).toBeLessThanOrEqual(step.attempts);
  }
  expect(effects.log.events.filter((e) => e.type === "fiber.recovered")).toHaveLength(1);
});

test("SIGKILL during a stash: the stash is all or nothing and the fiber resumes from its journal", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  const ticker = await startTicker(app, { count: 12, intervalMs: 100, stash: true });
  // Kept from before the hold: the announcement of the stash the hold catches may come before
  // `stashAnnounced` is asked (it once did, and the test waited for one that never came).
  await watchStashes(app.page, LAB_CHANNEL, ticker.id);
  await ticker.log.count(4, "tick");
  // Hold the stash rows: the last stash that committed is read inside the hold (by fiber id, the
  // rows being keyed [fiberId, generation]), so a later announced stash is certainly in flight,
  // waiting on the hold, when the browser dies.
  const committed = (await holdStore(app.page, "fiberline", "stashes", ticker.id, { index: "fiber" })) as {
    value?: { ticks: number };
  } | null;
  const before = committed?.value?.ticks ?? 0;
  const inFlight = await stashAnnounced(app.page, ticker.id, before);
  expect(inFlight).toBeGreaterThan(before);
  await app.crashBrowser();
  await app.relaunch();
  await app.openTab("/");
  await expectIntact(ticker, background);
  expect(ticker.log.events.filter((e) => e.type === "fiber.recovered")).toHaveLength(1);
});

test("SIGKILL during a fiber + stash fiber: it picks up from its last stash, each effect applied once, each chunk once", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  const batch = await startBatch(app, { count: 6, intervalMs: 400 });
  await batch.log.count(2, "progress");
  // Mid-step: the next item's effect is in the ledger, its progress chunk not yet.
  await expect
    .poll(
      async () =>
        (await effectsOf(app.page, batch.id)).keys -
        batch.log.events.filter((e) => e.type === "progress").length,
    )
    .toBe(1);
  await app.crashBrowser();
  await app.relaunch();
  await app.openTab("/");
  await expectIntact(batch, background);
  const ledger = await effectsOf(app.page, batch.id);
  expect(ledger.reExecutions).toBeLessThanOrEqual(1);
  expect(batch.log.events.filter((e) => e.type === "fiber.recovered")).toHaveLength(1);
  // Every stash of the run after the crash was kept: the snapshot names the last item.
  expect((await inspect(app.page, batch.id)).snapshot).toEqual({ done: 6 });
});

test("SIGKILL during a model stream: the reply continues where it stopped, equal to the uninterrupted one", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  await setMockDelay(app.page, 60);
  const reply = await startAssistant(app, "Explain durable execution for agent loops in a few sentences");
  await reply.log.count(12, "text.delta");
  await app.crashBrowser();
  await app.relaunch();
  await app.openTab("/");
  await expectIntact(reply, background);
  const types = reply.log.events.map((e) => e.type);
  expect(types.filter((t) => t === "fiber.recovered")).toHaveLength(1);
  // The mock continues an assistant prefix: one seamless message, no reset.
  expect(types).not.toContain("message.reset");
});

test("SIGKILL during a tool call: the tool runs again under the call's key, its effect is recorded once", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  const reply = await startAssistant(app, "Please delete notes.txt");
  await reply.log.count(1, "tool.approval");
  const callId = approvalCallId(reply.log);
  // Hold the deletion log, approve, and wait until the tool's step has started: it is blocked in
  // its side effect when the browser dies.
  await holdStore(app.page, "fiberline-demo", "deletions", approvalKey(reply.log));
  await rpc(app.page, "sendEvent", reply.id, approvalEvent(reply.log), { approved: true });
  await expect
    .poll(
      async () =>
        (await inspect(app.page, reply.id)).journal.find((e) => e.key === `tool:${callId}#1`)?.status,
    )
    .toBe("started");
  await app.crashBrowser();
  await app.relaunch();
  await app.openTab("/");
  await expectIntact(reply, background);
  const step = (await inspect(app.page, reply.id)).journal.find((e) => e.key === `tool:${callId}#1`);
  expect(step).toMatchObject({ status: "completed", attempt: 2 });
  const recorded = (await deletions(app.page)).filter((d) => d.key === approvalKey(reply.log));
  expect(recorded).toHaveLength(1);
  expect(reply.log.events.filter((e) => e.type === "tool.result")).toHaveLength(1);
});
