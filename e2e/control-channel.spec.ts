/**
 * The comlink control channel in a real browser: errors thrown in the worker arrive in the page
 * with their class and code, a busy worker makes calls miss their deadline without breaking the
 * channel, and a worker stopped mid-call rejects the call with `worker_restarted` instead of
 * leaving it hanging.
 */

import { expect, startFiber, test } from "./support/fixtures";

test("errors thrown in the worker keep their class and code in the page", async ({ session }) => {
  const page = await session.open();
  const { id } = await startFiber(page, "ticker", { ticks: 1, intervalMs: 1 });
  const errors = await page.evaluate(async (fiberId) => {
    const { fx } = window;
    const client = await fx.client();
    await client.result(fiberId);
    const summarize = (e: unknown, cls: new (...args: never[]) => Error) => ({
      ofClass: e instanceof cls,
      isFiberlineError: e instanceof fx.errors.FiberlineError,
      name: (e as Error).name,
      code: (e as { code?: string }).code,
      message: (e as Error).message,
    });
    // biome-ignore lint/suspicious/noExplicitAny: deliberately not a registered fiber name
    const unknown = await client.start("no-such-fiber" as any, {}).catch((e: unknown) => e);
    const missing = await client.inspect("ghost").catch((e: unknown) => e);
    const badId = await client.get("not an id").catch((e: unknown) => e);
    const ended = await client.sendEvent(fiberId, "late").catch((e: unknown) => e);
    return {
      unknown: summarize(unknown, fx.errors.UnknownFiberError),
      missing: summarize(missing, fx.errors.FiberNotFoundError),
      badId: summarize(badId, fx.errors.InvalidInputError),
      ended: summarize(ended, fx.errors.FiberlineError),
    };
  }, id);
  expect(errors.unknown).toMatchObject({
    ofClass: true,
    isFiberlineError: true,
    name: "UnknownFiberError",
    code: "unknown_fiber",
  });
  expect(errors.unknown.message).toContain('"no-such-fiber"');
  expect(errors.missing).toMatchObject({
    ofClass: true,
    name: "FiberNotFoundError",
    code: "fiber_not_found",
  });
  expect(errors.badId).toMatchObject({ ofClass: true, name: "InvalidInputError", code: "invalid_id" });
  expect(errors.ended).toMatchObject({ ofClass: true, code: "fiber_ended" });
});

test("a call to a busy worker rejects at its deadline with deadline_exceeded, and the channel recovers", async ({
  session,
}) => {
  const page = await session.open("/?timeout=1000");
  const outcome = await page.evaluate(async () => {
    const client = await window.fx.client();
    const before = await client.heartbeat();
    await window.fx.freezeWorker(3_000);
    const started = performance.now();
    const error = await client.list().catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    return {
      instance: before.instanceId,
      isConnectionError: error instanceof window.fx.errors.ConnectionError,
      code: (error as { code?: string }).code,
      elapsed,
    };
  });
  expect(outcome).toMatchObject({ isConnectionError: true, code: "deadline_exceeded" });
  expect(outcome.elapsed).toBeGreaterThanOrEqual(900);
  expect(outcome.elapsed).toBeLessThan(2_500);
  // Once the worker is free again, calls work on the same instance: nothing was restarted.
  await expect
    .poll(() =>
      page.evaluate(async () => (await (await window.fx.client()).heartbeat()).instanceId).catch(() => null),
    )
    .toBe(outcome.instance);
});

test("a call pending while the worker is stopped rejects with worker_restarted, then calls reach the new worker", async ({
  session,
}) => {
  const page = await session.open();
  const first = await page.evaluate(async () => (await (await window.fx.client()).heartbeat()).instanceId);
  await page.evaluate(() => window.fx.freezeWorker(8_000));
  await page.evaluate(() => {
    const started = performance.now();
    (window as unknown as { pending: Promise<unknown> }).pending = window.fx
      .client()
      .then((c) => c.list())
      .then(
        () => ({ resolved: true }),
        (e: unknown) => ({
          isConnectionError: e instanceof window.fx.errors.ConnectionError,
          code: (e as { code?: string }).code,
          elapsed: performance.now() - started,
        }),
      );
  });
  await session.stopWorkers(page);
  const pending = await page.evaluate(() => (window as unknown as { pending: Promise<unknown> }).pending);
  expect(pending).toMatchObject({ isConnectionError: true, code: "worker_restarted" });
  // Well before the call's 10 s deadline: the client found the new instance by itself.
  expect((pending as { elapsed: number }).elapsed).toBeLessThan(5_000);
  const second = await page.evaluate(async () => (await (await window.fx.client()).heartbeat()).instanceId);
  expect(second).not.toBe(first);
});

test("result() gives the value as stored, whether the fiber ended before the call or during it", async ({
  session,
}) => {
  const page = await session.open();
  const results = await page.evaluate(async () => {
    const client = await window.fx.client();
    const kinds = (value: { at: unknown; n: unknown }) => ({
      date: value.at instanceof Date,
      n: typeof value.n,
    });
    // Ends while result() follows its stream (whose copy went through JSON) ...
    const running = await client.start("dated", { ms: 300 });
    const during = kinds(await client.result(running.id));
    // ... and after: result() reads the record.
    const before = kinds(await client.result(running.id));
    return { during, before };
  });
  expect(results.during).toEqual({ date: true, n: "bigint" });
  expect(results.before).toEqual(results.during);
});
