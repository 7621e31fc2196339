/**
 * The worker's event-stream route as a page's `fetch` sees it: JSON errors for unknown fibers and
 * malformed ids or cursors, `Last-Event-ID` resumption, and the app's own requests untouched.
 */

import { expect, startFiber, test } from "./support/fixtures";

interface Answer {
  status: number;
  type: string | null;
  host: string | null;
  body: string;
}

test("404 and 400 answers carry a JSON error body with a code", async ({ session }) => {
  const page = await session.open();
  const { id } = await startFiber(page, "ticker", { ticks: 1, intervalMs: 1 });
  const answers = await page.evaluate(async (fiberId) => {
    const get = async (path: string): Promise<Answer> => {
      const res = await fetch(path);
      return {
        status: res.status,
        type: res.headers.get("content-type"),
        host: res.headers.get("x-fiberline"),
        body: await res.text(),
      };
    };
    return {
      unknown: await get("/__fiberline/fibers/ghost/events"),
      badCursor: await get(`/__fiberline/fibers/${fiberId}/events?after=abc`),
      negativeCursor: await get(`/__fiberline/fibers/${fiberId}/events?after=-3`),
      badId: await get("/__fiberline/fibers/not%20an%20id/events"),
    };
  }, id);
  expect(answers.unknown.status).toBe(404);
  expect(answers.unknown.type).toContain("application/json");
  expect(answers.unknown.host).toBe("1");
  expect(JSON.parse(answers.unknown.body)).toEqual({
    error: {
      code: "fiber_not_found",
      message: expect.stringContaining('"ghost"'),
      name: "FiberNotFoundError",
    },
  });
  for (const bad of [answers.badCursor, answers.negativeCursor]) {
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.code).toBe("invalid_argument");
  }
  expect(answers.badId.status).toBe(400);
  expect(JSON.parse(answers.badId.body).error.code).toBe("invalid_id");
});

test("the stream replays after ?after or Last-Event-ID with id/event/data lines and closes after fiber.end", async ({
  session,
}) => {
  const page = await session.open();
  const { id } = await startFiber(page, "ticker", { ticks: 3, intervalMs: 1 });
  await page.evaluate((fiberId) => window.fx.client().then((c) => c.result(fiberId)), id);
  const bodies = await page.evaluate(async (fiberId) => {
    const url = `/__fiberline/fibers/${fiberId}/events`;
    const fromQuery = await (await fetch(`${url}?after=3`)).text();
    const fromHeader = await (await fetch(`${url}?after=0`, { headers: { "Last-Event-ID": "4" } })).text();
    return { fromQuery, fromHeader };
  }, id);
  const blocks = bodies.fromQuery.trim().split("\n\n");
  expect(blocks).toHaveLength(2);
  expect(blocks[0]).toMatch(/^id: 4\nevent: tick\nat: \d+\ndata: \{"i":3\}$/);
  expect(blocks[1]).toMatch(
    /^id: 5\nevent: fiber\.end\nat: \d+\ndata: \{"status":"completed","result":\{"ticks":3\}\}$/,
  );
  expect(
    bodies.fromHeader
      .trim()
      .split("\n\n")
      .map((b) => b.split("\n")[0]),
  ).toEqual(["id: 5"]);
});

test("requests outside the prefix reach the app's server untouched", async ({ session }) => {
  const page = await session.open();
  const answer = await page.evaluate(async () => {
    const res = await fetch("/hello.txt");
    return { status: res.status, host: res.headers.get("x-fiberline"), body: await res.text() };
  });
  expect(answer).toEqual({ status: 200, host: null, body: "ok\n" });
  expect(await page.evaluate(() => navigator.serviceWorker.controller?.scriptURL)).toMatch(/\/sw\.js$/);
});
