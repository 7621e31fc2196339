/**
 * The tab host: the fallback of `fiberline/client` where no Service Worker can run. Reached
 * through `connect({ fallback: { runtime } })`; not a package entry of its own.
 */

export { fiberChunks } from "../sw/fiber-chunks";
export { DEFAULT_TABS_NAME, TABS_PROTOCOL_VERSION, type TabMessage } from "./protocol";
export { type TabFallbackOptions, TabHost, type TabHostOptions } from "./tab-host";
export { TabLeader, type TabLeaderOptions, type TabLocks } from "./tab-leader";
