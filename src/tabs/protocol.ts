/**
 * The wire protocol of the tab host (the no-Service-Worker fallback of `fiberline/client`):
 * messages on one `BroadcastChannel` shared by every tab of the origin that called
 * `connect({ fallback })`. One tab, the leader elected by a Web Lock, runs the runtime; the others
 * (followers) reach it here. A BroadcastChannel cannot carry MessagePorts, so every message names
 * the tab it comes from (`from`) or is for (`to`), and calls and streams carry a per-tab number.
 * Values are structured-cloned; stream data travels as JSON text, as on every other transport.
 *
 *   any tab  -> all     { type: "hello", from }                  who leads? (a follower, at start)
 *   leader   -> all     { type: "leader", leader }               announced at takeover and on hello
 *   follower -> leader  { type: "call", from, leader, call, method, args }
 *   leader   -> tab     { type: "result" | "failed", to, call, ... }
 *   follower -> leader  { type: "subscribe", from, leader, stream, fiber, after }
 *   leader   -> tab     { type: "chunk", to, stream, seq, event, at, data }* then "end" | "error",
 *                       or only "ended" when the fiber ended and the cursor is at its end
 *   follower -> leader  { type: "unsubscribe", from, stream }
 *
 * A request names the leader instance it is for; another instance ignores it (the follower
 * learns of the new leader from its announcement and retries). Each tab holds a Web Lock named
 * after its id for its lifetime, so the leader learns when a follower is gone and stops its streams.
 */

import type { SerializedError } from "../core/errors";
import type { RpcMethod, WorkerInfo } from "../sw/protocol";

/** Bumped on any incompatible change below; tabs of different versions do not talk. */
export const TABS_PROTOCOL_VERSION = 1;

/** The default name of the election lock and the channel (`connect({ fallback: { name } })`). */
export const DEFAULT_TABS_NAME = "fiberline/tabs";

/** The Web Lock a tab holds while it lives, named after its id. */
export function tabLockName(name: string, tab: string): string {
  return `${name}/tab/${tab}`;
}

/** The Web Lock the leader holds while it leads. */
export function leaderLockName(name: string): string {
  return `${name}/leader`;
}

/** Every message on the channel. */
export type TabMessage =
  | { type: "hello"; v: number; from: string }
  | { type: "leader"; v: number; leader: WorkerInfo }
  | {
      type: "call";
      v: number;
      from: string;
      leader: string;
      call: number;
      method: RpcMethod;
      args: unknown[];
    }
  | { type: "result"; to: string; call: number; value: unknown }
  | { type: "failed"; to: string; call: number; error: SerializedError }
  | {
      type: "subscribe";
      v: number;
      from: string;
      leader: string;
      stream: number;
      fiber: string;
      after: number;
    }
  | { type: "unsubscribe"; from: string; stream: number }
  | { type: "opened"; to: string; stream: number; created: number }
  | { type: "chunk"; to: string; stream: number; seq: number; event: string; at: number; data: string }
  | { type: "end"; to: string; stream: number }
  | { type: "ended"; to: string; stream: number }
  | { type: "error"; to: string; stream: number; error: SerializedError };

/** Replies of the leader to one stream. */
export type StreamMessage = Extract<TabMessage, { stream: number; to: string }>;

/** Whether `data` is a message of this protocol (anything else on the channel is ignored). */
export function isTabMessage(data: unknown): data is TabMessage {
  const type = (data as { type?: unknown } | null)?.type;
  return typeof type === "string";
}
