/**
 * The demo's own small HTTP API between the page and its worker (not part of Fiberline's wire
 * protocol): settings and the crash lab's counts, served by `app/worker/demo-routes.ts` under
 * `/demo-api/`. Types only plus the page-side fetch helpers; both sides import this file.
 */

import type { EffectCounts } from "../lab-fibers";

/** Where the worker serves the demo's routes. */
export const DEMO_API = "/demo-api";

/** Which model the assistant uses. */
export type ProviderKind = "mock" | "custom";

/** The settings as the page sees them: never the API key, only whether one is saved. */
export interface PublicSettings {
  provider: ProviderKind;
  /** Delay between the mock model's tokens, in ms. */
  mockDelayMs: number;
  /** The OpenAI-compatible API root of the custom provider, e.g. `https://api.openai.com/v1`. */
  baseUrl: string;
  /** The custom provider's model id. */
  model: string;
  /** Whether the custom endpoint continues a trailing assistant message (llama.cpp, Ollama). */
  continuation: boolean;
  /** Whether an API key is saved in the worker's storage. */
  hasApiKey: boolean;
}

/** A settings change: omitted fields stay; `apiKey: null` removes the saved key. */
export interface SettingsUpdate {
  provider?: ProviderKind;
  mockDelayMs?: number;
  baseUrl?: string;
  model?: string;
  continuation?: boolean;
  apiKey?: string | null;
}

/** What `GET /demo-api/deletions` returns: the approval-gated tool's recorded (not real) deletions. */
export interface DeletionEntry {
  key: string;
  path: string;
  at: number;
}

/**
 * A reply's model call as the worker sees it (`GET /demo-api/model-call?fiberId=`): which
 * attempt runs, and while it waits, why and until when. `null` when the worker made no call for
 * that fiber since it started.
 */
export interface ModelCallStatus {
  /** 1-based attempt of the current model call. */
  attempt: number;
  maxAttempts: number;
  /**
   * `calling`: a request is out; `offline`: waiting for the network before sending it;
   * `streaming`: the model answers; `retrying`: the attempt failed, the next starts at `retryAt`;
   * `failed`: no attempt is left, or the error cannot change; `done`: the call finished.
   */
  state: "calling" | "offline" | "streaming" | "retrying" | "failed" | "done";
  /** When the next attempt starts (ms since the epoch), while `retrying`. */
  retryAt?: number;
  /** Why the last failed attempt failed. */
  lastError?: string;
}

/** The JSON error body of the demo routes. */
export interface DemoApiError {
  error: { code: string; message: string };
}

/** An error from the demo API, with the worker's `code`. */
export class DemoApiFailure extends Error {
  override name = "DemoApiFailure";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  const response = await fetch(`${DEMO_API}${path}`, {
    ...init,
    headers: { "content-type": "application/json", ...init?.headers },
  });
  const type = response.headers.get("content-type") ?? "";
  if (!type.includes("application/json")) {
    throw new DemoApiFailure(
      "not_controlled",
      "The demo's Service Worker did not answer: this page is not controlled by it yet. Reload the page.",
    );
  }
  const body = (await response.json()) as T | DemoApiError;
  if (!response.ok) {
    const error = (body as DemoApiError).error;
    throw new DemoApiFailure(error?.code ?? "demo_api_error", error?.message ?? `HTTP ${response.status}`);
  }
  return body as T;
}

/** Page side of the demo API. */
export const demoApi = {
  getSettings: () => call<PublicSettings>("/settings"),
  saveSettings: (update: SettingsUpdate) =>
    call<PublicSettings>("/settings", { method: "PUT", body: JSON.stringify(update) }),
  effects: (fiberId?: string) =>
    call<EffectCounts>(`/lab/effects${fiberId ? `?fiberId=${encodeURIComponent(fiberId)}` : ""}`),
  deletions: () => call<DeletionEntry[]>("/deletions"),
  modelCall: (fiberId: string) =>
    call<ModelCallStatus | null>(`/model-call?fiberId=${encodeURIComponent(fiberId)}`),
};
