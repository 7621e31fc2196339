/**
 * The crash suite's Playwright fixtures: `app` (from `fiberline/testing`) on the built demo, and
 * `expectIntact`, the assertion every scenario ends with: each fiber completed, its reader saw every
 * chunk once and in order, no completed step ran again and no side effect was applied twice.
 */

import { expect, test as kit } from "../../src/testing/index";
import { type Subject, startEffects, verify } from "./demo";

export { expect };

export const test = kit.extend<{
  /** Opens the demo and starts a `lab.effects` fiber beside the scenario's own, judged with it. */
  open(path?: string): Promise<Subject>;
  /** Verifies each subject; fails with every problem found. */
  expectIntact(...subjects: Subject[]): Promise<void>;
}>({
  open: async ({ app }, use) => {
    await use(async (path = "/") => {
      await app.openTab(path);
      return await startEffects(app, { count: 12, intervalMs: 150 });
    });
  },
  expectIntact: async ({ app }, use) => {
    await use(async (...subjects) => {
      const verdicts = [];
      for (const subject of subjects) verdicts.push(await verify(app, subject));
      expect(verdicts.flatMap((v) => v.problems)).toEqual([]);
      for (const v of verdicts)
        expect(v).toMatchObject({
          lost: 0,
          duplicated: 0,
          reordered: 0,
          reExecuted: 0,
          duplicatedEffects: 0,
        });
    });
  },
});
