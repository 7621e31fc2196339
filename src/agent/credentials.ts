/**
 * Credentials of the OpenAI-compatible provider kept out of everything that is journaled or
 * streamed: user names and passwords taken out of `baseUrl`, the list of secrets to redact, and
 * `scrubError`, which copies an error and its causes with every secret redacted. Used by
 * `openai.ts` and `openai-chunks.ts`.
 */

/**
 * Takes a user name and password out of `baseUrl`: `fetch` refuses such URLs with an error that
 * quotes them, and every message would carry them. Returns the URL without them, the Basic
 * credentials they stand for, and the forms in which they could be echoed back.
 */
export function splitCredentials(baseUrl: string): {
  baseUrl: string;
  basicAuth: string | undefined;
  urlSecrets: string[];
} {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return { baseUrl, basicAuth: undefined, urlSecrets: [] }; // relative: no credentials possible
  }
  if (url.username === "" && url.password === "") return { baseUrl, basicAuth: undefined, urlSecrets: [] };
  const user = safeDecode(url.username);
  const password = safeDecode(url.password);
  const basicAuth = base64(`${user}:${password}`);
  const urlSecrets = [url.username, url.password, user, password, basicAuth, `${user}:${password}`];
  url.username = "";
  url.password = "";
  return { baseUrl: url.href, basicAuth, urlSecrets };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function base64(text: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * `text` with the credentials of every URL in it (`https://user:password@host`) replaced: for
 * messages of code whose secrets Fiberline does not hold (an AI SDK provider), where a platform
 * error quotes the URL it was given.
 */
export function redactUrlCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]+@/gi, "$1[redacted]@");
}

/** The strings to redact from messages, longest first: the key, credential headers' values, URL credentials. */
export function collectSecrets(
  apiKey: string | undefined,
  headers: Readonly<Record<string, string>> | undefined,
  urlSecrets: readonly string[],
): string[] {
  const secrets: string[] = urlSecrets.filter((secret) => secret.length >= 4);
  if (apiKey !== undefined && apiKey.length >= 4) secrets.push(apiKey);
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (!/auth|key|token|secret|cookie/i.test(name)) continue;
    const token = value.replace(/^(?:Bearer|Basic)\s+/i, "");
    if (token.length >= 4) secrets.push(token);
  }
  // Longest first, so a secret that contains another is redacted whole.
  return secrets.sort((a, b) => b.length - a.length);
}

/**
 * A copy of an error safe to journal: name, message, stack and `code` redacted, and the same
 * for each cause (as deep as `serializeError` goes). Platform errors quote URLs and bodies, so a
 * raw one never becomes a `cause`.
 */
export function scrubError(error: unknown, scrub: (text: string) => string, depth = 0): Error {
  if (!(error instanceof Error)) return new Error(scrub(String(error)));
  const copy = new Error(scrub(error.message));
  copy.name = scrub(error.name);
  copy.stack = error.stack === undefined ? undefined : scrub(error.stack);
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") (copy as { code?: string }).code = scrub(code);
  if (error.cause !== undefined && depth < 4) copy.cause = scrubError(error.cause, scrub, depth + 1);
  return copy;
}

/** `text` with every secret replaced by `[redacted]`. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join("[redacted]");
  return out;
}
