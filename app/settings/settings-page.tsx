/**
 * Settings: the assistant's model. The mock model (default, with its speed), or any
 * OpenAI-compatible endpoint with base URL, model and API key. The key goes to the worker once
 * and stays in the worker's IndexedDB: the page only ever learns whether one is saved.
 */

import { type FormEvent, type ReactNode, useCallback, useEffect, useState } from "react";
import { demoApi, type ProviderKind, type PublicSettings, type SettingsUpdate } from "../shared/demo-api";
import { apiKeyProblem, modelProblem } from "../shared/settings-rules";
import { Skeleton } from "../ui/skeleton";
import { StorageStatus } from "../ui/storage-banner";

export function SettingsPage(): ReactNode {
  const [saved, setSaved] = useState<PublicSettings | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [provider, setProvider] = useState<ProviderKind>("mock");
  const [mockDelayMs, setMockDelayMs] = useState(35);
  const [baseUrl, setBaseUrl] = useState("");
  const [model, setModel] = useState("");
  const [continuation, setContinuation] = useState(false);
  const [apiKey, setApiKey] = useState("");
  const [status, setStatus] = useState<{ kind: "ok" | "error"; text: string } | null>(null);
  const [saving, setSaving] = useState(false);

  const apply = useCallback((s: PublicSettings) => {
    setSaved(s);
    setProvider(s.provider);
    setMockDelayMs(s.mockDelayMs);
    setBaseUrl(s.baseUrl);
    setModel(s.model);
    setContinuation(s.continuation);
  }, []);

  useEffect(() => {
    demoApi
      .getSettings()
      .then(apply, (e: unknown) => setLoadError(e instanceof Error ? e.message : String(e)));
  }, [apply]);

  const save = async (update: SettingsUpdate, done: string) => {
    setSaving(true);
    setStatus(null);
    try {
      apply(await demoApi.saveSettings(update));
      setApiKey("");
      setStatus({ kind: "ok", text: done });
    } catch (error) {
      setStatus({ kind: "error", text: error instanceof Error ? error.message : String(error) });
    } finally {
      setSaving(false);
    }
  };

  // Said at once, before the worker (which checks the same rules) is asked.
  const keyIssue = apiKey.trim() === "" ? undefined : apiKeyProblem(apiKey.trim());
  const modelIssue = provider === "custom" ? modelProblem(model.trim()) : undefined;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const issue = modelIssue ?? keyIssue;
    if (issue) {
      setStatus({ kind: "error", text: issue });
      return;
    }
    const update: SettingsUpdate = { provider, mockDelayMs, baseUrl, model, continuation };
    if (apiKey.trim() !== "") update.apiKey = apiKey.trim();
    void save(update, "Saved. The next reply uses these settings.");
  };

  if (loadError)
    return (
      <div className="page">
        <div className="empty error" role="alert">
          <h2>Settings are unavailable</h2>
          <p>{loadError}</p>
          <button type="button" className="button" onClick={() => window.location.reload()}>
            Reload
          </button>
        </div>
      </div>
    );
  if (!saved)
    return (
      <div className="page">
        <Skeleton label="Loading settings" rows={2} />
      </div>
    );

  return (
    <div className="page settings-page">
      <header className="page-head">
        <h1>Settings</h1>
        <p>Which model the assistant talks to. Saved in the Service Worker; each new reply reads them.</p>
      </header>
      <form className="panel settings-form" onSubmit={submit} aria-describedby="settings-status">
        <fieldset className="choice">
          <legend>Provider</legend>
          <label className={`choice-card${provider === "mock" ? " active" : ""}`}>
            <input
              type="radio"
              name="provider"
              value="mock"
              data-testid="provider-mock"
              checked={provider === "mock"}
              onChange={() => setProvider("mock")}
            />
            <span>
              <strong>Mock model</strong>
              <span className="muted">
                Deterministic replies served by the demo's own server at <code>/mock-model/v1</code>. No
                account, no network.
              </span>
            </span>
          </label>
          <label className={`choice-card${provider === "custom" ? " active" : ""}`}>
            <input
              type="radio"
              name="provider"
              value="custom"
              data-testid="provider-custom"
              checked={provider === "custom"}
              onChange={() => setProvider("custom")}
            />
            <span>
              <strong>OpenAI-compatible endpoint</strong>
              <span className="muted">
                OpenAI, OpenRouter, Ollama, llama.cpp, vLLM… (the endpoint must allow CORS).
              </span>
            </span>
          </label>
        </fieldset>

        {provider === "mock" ? (
          <label className="field">
            <span>
              Delay between tokens: <strong>{mockDelayMs} ms</strong>
            </span>
            <input
              type="range"
              min={0}
              max={300}
              step={5}
              value={mockDelayMs}
              data-testid="mock-delay"
              onChange={(e) => setMockDelayMs(Number(e.target.value))}
            />
            <span className="hint">Slow it down to have time to reload or crash mid-reply.</span>
          </label>
        ) : (
          <div className="field-group">
            <label className="field">
              <span>Base URL</span>
              <input
                type="url"
                required
                placeholder="https://api.openai.com/v1"
                value={baseUrl}
                data-testid="base-url"
                onChange={(e) => setBaseUrl(e.target.value)}
              />
            </label>
            <label className="field">
              <span>Model</span>
              <input
                type="text"
                required
                placeholder="gpt-4o-mini"
                value={model}
                data-testid="model"
                onChange={(e) => setModel(e.target.value)}
                aria-invalid={modelIssue !== undefined}
                aria-describedby={modelIssue ? "model-problem" : undefined}
              />
              {modelIssue && (
                <span className="hint form-error" id="model-problem" data-testid="model-problem">
                  {modelIssue}
                </span>
              )}
            </label>
            <label className="field">
              <span>API key</span>
              <input
                type="password"
                autoComplete="off"
                spellCheck={false}
                placeholder={saved.hasApiKey ? "A key is saved; type to replace it" : "sk-…"}
                value={apiKey}
                data-testid="api-key"
                onChange={(e) => setApiKey(e.target.value)}
                aria-invalid={keyIssue !== undefined}
                aria-describedby={keyIssue ? "key-problem key-note" : "key-note"}
              />
              {keyIssue && (
                <span className="hint form-error" id="key-problem" data-testid="key-problem">
                  {keyIssue}
                </span>
              )}
              <span className="hint" id="key-note">
                {saved.hasApiKey ? (
                  <span data-testid="key-saved">
                    ✓ A key is saved in the Service Worker's storage. The page cannot read it back; it is sent
                    only to the endpoint, never written to a fiber's journal or stream.
                  </span>
                ) : (
                  "Kept only in the Service Worker's IndexedDB; never sent back to this page."
                )}
              </span>
            </label>
            <label className="check">
              <input
                type="checkbox"
                checked={continuation}
                onChange={(e) => setContinuation(e.target.checked)}
              />
              <span>
                The endpoint continues a trailing assistant message (llama.cpp, Ollama). Then a reply cut off
                by a crash continues seamlessly; otherwise it is regenerated after a visible reset.
              </span>
            </label>
          </div>
        )}

        <div className="form-actions">
          <button type="submit" className="button primary" data-testid="save-settings" disabled={saving}>
            {saving ? "Saving…" : "Save"}
          </button>
          {saved.hasApiKey && (
            <button
              type="button"
              className="button ghost"
              disabled={saving}
              data-testid="remove-key"
              onClick={() => void save({ apiKey: null }, "The key was removed from the worker.")}
            >
              Remove key
            </button>
          )}
          {saved.provider !== "mock" && (
            <button
              type="button"
              className="button ghost"
              disabled={saving}
              onClick={() => void save({ provider: "mock" }, "Back to the mock model.")}
            >
              Use the mock model
            </button>
          )}
        </div>
        <p
          id="settings-status"
          className={status?.kind === "error" ? "form-error" : "form-ok"}
          role="status"
          data-testid="settings-status"
        >
          {status?.text ?? ""}
        </p>
      </form>
      <StorageStatus />
    </div>
  );
}
