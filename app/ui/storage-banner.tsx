/**
 * The storage banner: what the worker's `watchStorage` store reports (`watchStorageHealth`). Out
 * of space, it says which replies are paused and what to delete; after the browser deleted the
 * site's database, it says which fibers were lost. Nothing shows while storage is fine.
 */

import { type ReactNode, useEffect, useState } from "react";
import { watchStorageHealth } from "../../src/client/index";
import type { StorageHealth } from "../../src/sw/protocol";

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function StorageBanner(): ReactNode {
  const [health, setHealth] = useState<StorageHealth | undefined>(undefined);
  useEffect(() => watchStorageHealth(setHealth), []);
  if (health === undefined || health.state === "ok") return null;
  if (health.state === "quota_exceeded") {
    return (
      <p className="banner" role="alert" data-testid="storage-banner">
        This browser has no storage left for the demo:{" "}
        {plural(health.paused.length, "reply is", "replies are")} paused, with nothing lost. Delete
        conversations you no longer need (Delete, next to each conversation) or clear other sites' data in the
        browser's settings; paused replies go on by themselves once there is room. Finished replies' records
        are removed a day after they end.
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
