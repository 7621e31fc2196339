/**
 * The storage banner: what the worker's `watchStorage` store reports (`watchStorageHealth`). Out
 * of space, it says which replies are paused and what to delete, with a "Try again" button
 * (`retryPaused()` of the client) for after the user made room; after the browser deleted the
 * site's database, it says which fibers were lost. Nothing shows while storage is fine.
 */

import { type ReactNode, useEffect, useState } from "react";
import { watchStorageHealth } from "../../src/client/index";
import { useFiberlineClient } from "../../src/react/index";
import type { StorageHealth } from "../../src/sw/protocol";
import type { DemoFibers } from "../client";

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** What the last "Try again" did: nothing yet, under way, or answered that there is still no room. */
type Retry = "idle" | "retrying" | "still_full" | "failed";

export function StorageBanner(): ReactNode {
  const client = useFiberlineClient<DemoFibers>();
  const [health, setHealth] = useState<StorageHealth | undefined>(undefined);
  const [retry, setRetry] = useState<Retry>("idle");
  useEffect(
    () =>
      watchStorageHealth((next) => {
        setHealth(next);
        if (next.state !== "quota_exceeded") setRetry("idle");
      }),
    [],
  );
  if (health === undefined || health.state === "ok") return null;
  if (health.state === "quota_exceeded") {
    const tryAgain = () => {
      if (!client) return;
      setRetry("retrying");
      client.retryPaused().then(
        (next) => {
          if (next) setHealth(next);
          setRetry(next?.state === "quota_exceeded" ? "still_full" : "idle");
        },
        () => setRetry("failed"),
      );
    };
    return (
      <p className="banner" role="alert" data-testid="storage-banner">
        This browser has no storage left for the demo:{" "}
        {plural(health.paused.length, "reply is", "replies are")} paused, with nothing lost. Delete
        conversations you no longer need (Delete, next to each conversation) or clear other sites' data in the
        browser's settings, then press Try again; paused replies also go on by themselves once there is room.
        Finished replies' records are removed a day after they end.{" "}
        {retry === "still_full" && "Still no room: delete something first. "}
        {retry === "failed" && "The worker did not answer; try again in a moment. "}
        <button
          type="button"
          className="button"
          onClick={tryAgain}
          disabled={!client || retry === "retrying"}
          data-testid="storage-retry"
        >
          {retry === "retrying" ? "Trying…" : "Try again"}
        </button>
      </p>
    );
  }
  return (
    <p className="banner" role="alert" data-testid="storage-banner">
      The browser deleted this site's stored data: {plural(health.lost.length, "fiber", "fibers")} (
      {health.lost.join(", ")}) can no longer be resumed. Conversations you start now are stored again.
    </p>
  );
}

/**
 * Whether the browser keeps the demo's storage when space runs short (`persisted` in the worker's
 * storage health: the client asks for it at the first start, and Chromium grants it to sites a
 * person uses often or installed).
 */
export function StorageStatus(): ReactNode {
  const [health, setHealth] = useState<StorageHealth | undefined>(undefined);
  useEffect(() => watchStorageHealth(setHealth), []);
  const persisted = health?.persisted;
  return (
    <section className="panel" aria-labelledby="storage-status-title" data-testid="storage-status">
      <h2 id="storage-status-title">Storage</h2>
      <p>
        {persisted === true &&
          "Persistent: the browser keeps the demo's conversations and fibers even when the device runs low on space."}
        {persisted === false &&
          "Best effort: under storage pressure the browser may delete the demo's data, and with it every fiber. Installing the app usually makes it persistent."}
        {persisted === undefined && "Not reported yet (the worker tells once it has started)."}
        {health?.usage !== undefined && health.quota !== undefined
          ? ` Using ${(health.usage / 2 ** 20).toFixed(1)} MB of ${(health.quota / 2 ** 20).toFixed(0)} MB.`
          : ""}
      </p>
    </section>
  );
}
