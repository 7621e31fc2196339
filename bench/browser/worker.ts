/**
 * The dedicated bench worker: runs one engine job (B1, B2, B6, B7, B8, B10) per worker instance, so
 * each job starts on a fresh heap with fresh IndexedDB connections. The page creates it, posts
 * `run`, answers checkpoints on behalf of the harness, and terminates it after `done`.
 */

import { b10Handoff, b10Steps } from "./jobs/continuity-jobs";
import { b8 } from "./jobs/disk-jobs";
import { idbCosts } from "./jobs/idb-costs";
import { b6, b7, b12 } from "./jobs/recovery-jobs";
import { b1, b2 } from "./jobs/step-jobs";
import type { FromWorker, JobContext, ToWorker } from "./protocol";
import type { Durability } from "./raw-idb";

interface WorkerScope {
  postMessage(message: FromWorker): void;
  addEventListener(type: "message", listener: (event: MessageEvent<ToWorker>) => void): void;
}

const scope = self as unknown as WorkerScope;

// biome-ignore lint/suspicious/noExplicitAny: jobs take their own parameter shapes
const jobs: Record<string, (ctx: JobContext, params: any) => Promise<unknown>> = {
  b1,
  b2,
  b6,
  b7,
  b8,
  b12,
  "b10-steps": b10Steps,
  "b10-handoff": b10Handoff,
  "idb-costs": idbCosts,
};

let answer: ((data: unknown) => void) | null = null;

scope.addEventListener("message", (event) => {
  const message = event.data;
  if (message.type === "reply") {
    const resolve = answer;
    answer = null;
    resolve?.(message.data);
    return;
  }
  const job = jobs[message.job];
  if (!job) {
    scope.postMessage({ type: "error", message: `unknown job ${message.job}` });
    return;
  }
  const ctx: JobContext = {
    durability: (message.params.durability as Durability | undefined) ?? "relaxed",
    checkpoint(name, data) {
      return new Promise((resolve) => {
        answer = resolve;
        scope.postMessage({ type: "checkpoint", name, data });
      });
    },
  };
  job(ctx, message.params).then(
    (result) => scope.postMessage({ type: "done", result }),
    (error: unknown) =>
      scope.postMessage({
        type: "error",
        message: error instanceof Error ? `${error.name}: ${error.message}\n${error.stack}` : String(error),
      }),
  );
});
