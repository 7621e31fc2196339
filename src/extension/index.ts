/**
 * `fiberline/extension`: host a Fiberline runtime in a Manifest V3 extension's background
 * worker (recovery on every worker start, `chrome.alarms` wake-ups, keep-alive, control calls
 * and event streams for the extension's pages over `chrome.runtime` ports). Pages connect with
 * `connect({ extension: true })` of `fiberline/client`.
 */

export type {
  ChromeAlarm,
  ChromeAlarmsLike,
  ChromeEvent,
  ChromeLike,
  ChromeManagementLike,
  ChromePort,
  ChromeRuntimeConnector,
  ChromeRuntimeLike,
} from "./chrome-types";
export {
  createExtensionHost,
  type ExtensionHost,
  type ExtensionHostOptions,
  PACKED_ALARM_MINIMUM_MS,
  UNPACKED_ALARM_MINIMUM_MS,
} from "./host";
export {
  CONTROL_PORT,
  type ControlReply,
  type ControlRequest,
  EXTENSION_PROTOCOL_VERSION,
  STREAM_PORT,
  type StreamReply,
  type StreamRequest,
} from "./protocol";
export { WakeAlarm, type WakeAlarmOptions, type WakePlan } from "./wake-alarm";
