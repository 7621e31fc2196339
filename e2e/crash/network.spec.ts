/**
 * The network goes away around a model call: the call fails and its step retries while offline,
 * and the reply completes once the browser is back online, equal to the uninterrupted reply.
 * (Chromium's offline emulation fails new requests; a response already streaming goes on, so the
 * browser goes offline before the call.)
 */

import { inspect, setMockDelay, startAssistant } from "./demo";
import { expect, test } from "./scenario";

test("offline during a model call: the call retries, and completes once back online", async ({
  app,
  open,
  expectIntact,
}) => {
  const background = await open();
  await setMockDelay(app.page, 50);
  await app.goOffline();
  const reply = await startAssistant(app, "Why do agent loops need durable execution?");
  // The model step started while offline; its requests fail and are retried inside the step
  // (model retries run within one attempt of the step, so the journal shows attempt 1).
  await expect
    .poll(async () => (await inspect(app.page, reply.id)).journal.find((e) => e.key === "model#1")?.status, {
      timeout: 30_000,
    })
    .toBe("started");
  await expect.poll(() => app.page.evaluate(() => navigator.onLine)).toBe(false);
  expect((await inspect(app.page, reply.id)).record.status).toBe("running");
  await app.goOnline();
  await expectIntact(reply, background);
  expect(reply.log.events.map((e) => e.type)).not.toContain("fiber.recovered");
});
