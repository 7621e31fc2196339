/**
 * The demo worker's own IndexedDB database (`fiberline-demo`): the assistant's settings, with the
 * API key that never leaves the worker (kept encrypted, `secrets.ts`), the non-extractable key it
 * is encrypted with, and the log of the approval-gated `delete_file` tool. Only the worker opens
 * it; the page reads it through `demo-routes.ts`.
 */

import { type DBSchema, type IDBPDatabase, openDB } from "idb";
import type { DeletionEntry, PublicSettings, SettingsUpdate } from "../shared/demo-api";
import { apiKeyProblem, modelProblem } from "../shared/settings-rules";
import { type KeyStore, openSecret, type SealedSecret, sealSecret } from "./secrets";

/** The stored settings: the public ones plus the key, encrypted (a plain string from before v2). */
export interface StoredSettings extends Omit<PublicSettings, "hasApiKey"> {
  apiKey?: SealedSecret | string;
}

interface DemoSchema extends DBSchema {
  settings: { key: string; value: StoredSettings };
  deletions: { key: string; value: DeletionEntry };
  keys: { key: string; value: CryptoKey };
}

/** The mock model with its default speed: the demo works with no account and no network. */
export const DEFAULT_SETTINGS: StoredSettings = {
  provider: "mock",
  mockDelayMs: 35,
  baseUrl: "",
  model: "",
  continuation: false,
};

const SETTINGS_KEY = "assistant";

let database: Promise<IDBPDatabase<DemoSchema>> | undefined;

function open(): Promise<IDBPDatabase<DemoSchema>> {
  database ??= openDB<DemoSchema>("fiberline-demo", 2, {
    upgrade(db, oldVersion) {
      if (oldVersion < 1) {
        db.createObjectStore("settings");
        db.createObjectStore("deletions", { keyPath: "key" });
      }
      if (oldVersion < 2) db.createObjectStore("keys");
    },
    terminated() {
      database = undefined;
    },
  });
  return database;
}

const KEY_ID = "api-key-encryption";

/** The AES key the API key is sealed with, kept in this database as a non-extractable `CryptoKey`. */
const keys: KeyStore = {
  get: async () => await (await open()).get("keys", KEY_ID),
  put: async (key) => {
    await (await open()).put("keys", key, KEY_ID);
  },
};

/** The settings, the key still sealed. A key saved in plain text by an older demo is sealed now. */
export async function readSettings(): Promise<StoredSettings> {
  const stored = await (await open()).get("settings", SETTINGS_KEY);
  const settings = { ...DEFAULT_SETTINGS, ...stored };
  if (typeof settings.apiKey === "string") {
    settings.apiKey = await sealSecret(keys, settings.apiKey);
    await (await open()).put("settings", settings, SETTINGS_KEY);
  }
  return settings;
}

/**
 * The API key in plain text, for the one request the worker is about to make with it; never
 * store, log, journal or return it.
 */
export async function readApiKey(settings: StoredSettings): Promise<string | undefined> {
  const sealed = settings.apiKey;
  if (sealed === undefined) return undefined;
  return typeof sealed === "string" ? sealed : await openSecret(keys, sealed);
}

/** The settings without the key, as the page may see them. */
export function publicSettings(settings: StoredSettings): PublicSettings {
  const { apiKey, ...rest } = settings;
  return { ...rest, hasApiKey: apiKey !== undefined && apiKey !== "" };
}

/** Validates and applies a change; throws `TypeError` with a message a person can act on. */
export async function updateSettings(update: SettingsUpdate): Promise<StoredSettings> {
  const next: StoredSettings = { ...(await readSettings()) };
  if (update.provider !== undefined) {
    if (update.provider !== "mock" && update.provider !== "custom")
      throw new TypeError(`provider must be "mock" or "custom", got ${JSON.stringify(update.provider)}.`);
    next.provider = update.provider;
  }
  if (update.mockDelayMs !== undefined) {
    const delay = Number(update.mockDelayMs);
    if (!Number.isFinite(delay) || delay < 0 || delay > 2_000)
      throw new TypeError("The mock model's delay must be a number of ms from 0 to 2000.");
    next.mockDelayMs = Math.round(delay);
  }
  if (update.baseUrl !== undefined) next.baseUrl = String(update.baseUrl).trim();
  if (update.model !== undefined) next.model = String(update.model).trim();
  if (update.continuation !== undefined) next.continuation = Boolean(update.continuation);
  if (update.apiKey === null || update.apiKey === "") delete next.apiKey;
  else if (update.apiKey !== undefined) {
    const key = String(update.apiKey).trim();
    const problem = apiKeyProblem(key);
    if (problem) throw new TypeError(problem);
    next.apiKey = await sealSecret(keys, key);
  }
  const modelIssue = modelProblem(next.model);
  if (modelIssue && (update.model !== undefined || next.provider === "custom"))
    throw new TypeError(modelIssue);
  if (next.provider === "custom") {
    if (next.baseUrl === "")
      throw new TypeError("A custom provider needs a base URL, e.g. https://api.openai.com/v1.");
    try {
      const url = new URL(next.baseUrl, self.location.href);
      if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("protocol");
    } catch {
      throw new TypeError(`"${next.baseUrl}" is not an http(s) URL.`);
    }
    if (next.model === "") throw new TypeError("A custom provider needs a model id, e.g. gpt-4o-mini.");
  }
  await (await open()).put("settings", next, SETTINGS_KEY);
  return next;
}

/** Records a deletion the assistant's `delete_file` tool was approved to make (nothing is deleted). */
export async function recordDeletion(key: string, path: string): Promise<DeletionEntry> {
  const db = await open();
  const existing = await db.get("deletions", key);
  if (existing) return existing;
  const entry: DeletionEntry = { key, path, at: Date.now() };
  await db.put("deletions", entry);
  return entry;
}

/** Every recorded deletion, oldest first. */
export async function readDeletions(): Promise<DeletionEntry[]> {
  const all = await (await open()).getAll("deletions");
  return all.sort((a, b) => a.at - b.at);
}
