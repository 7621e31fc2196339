/**
 * Fibers that are not running when the browser dies: one sleeping on a durable timer and one
 * waiting for a person's approval. After a SIGKILL and a relaunch, the timer still fires (not
 * early), the approval still resumes the fiber, and nothing ran twice.
 */

import { approvalEvent, approvalKey, deletions, rpc, startAssistant, startTicker } from "./demo";
import { expect, test } from "./scenario";

test("a fiber sleeping across a browser crash wakes when its timer is due and completes", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  const ticker = await startTicker(app, { count: 6, intervalMs: 50, sleepAfter: 3, sleepMs: 6_000 });
  await expect
    .poll(async () => (await rpc<{ status: string }>(app.page, "get", ticker.id)).status)
    .toBe("sleeping");
  await app.crashBrowser();
  await app.relaunch();
  await app.openTab("/");
  await expectIntact(ticker, background);
  expect(ticker.log.events.filter((e) => e.type === "tick")).toHaveLength(6);
});

test("a fiber waiting for approval across a browser crash resumes on the approval, its tool runs once", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  const reply = await startAssistant(app, "Please delete report.pdf");
  await reply.log.count(1, "tool.approval");
  await expect
    .poll(async () => (await rpc<{ status: string }>(app.page, "get", reply.id)).status)
    .toBe("waiting");
  await app.crashBrowser();
  await app.relaunch();
  await app.openTab("/");
  expect((await rpc<{ status: string }>(app.page, "get", reply.id)).status).toBe("waiting");
  await rpc(app.page, "sendEvent", reply.id, approvalEvent(reply.log), { approved: true });
  await expectIntact(reply, background);
  expect((await deletions(app.page)).filter((d) => d.key === approvalKey(reply.log))).toHaveLength(1);
  expect(reply.log.events.filter((e) => e.type === "tool.result")).toHaveLength(1);
});
