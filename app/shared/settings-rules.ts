/**
 * The rules a custom provider's API key and model id must follow, checked when the settings are
 * saved (by the worker, which stores them, and by the settings page, to say so at once) rather
 * than discovered by every reply: a key with a character HTTP headers cannot carry fails each
 * request with "String contains non ISO-8859-1 code point", and no retry can change that.
 */

/** Longest API key accepted: real keys are a few hundred characters at most. */
export const MAX_API_KEY_LENGTH = 1_024;
/** Longest model id accepted (e.g. `meta-llama/Llama-3.1-70B-Instruct-Turbo` is 38). */
export const MAX_MODEL_LENGTH = 200;

/** Characters a model id may hold: letters, digits and `. _ - : / @ +` (Ollama tags, Hugging Face paths). */
const MODEL_PATTERN = /^[A-Za-z0-9._:/@+-]+$/;

/** Why `key` cannot be sent as `Authorization: Bearer <key>`, or undefined when it can. */
export function apiKeyProblem(key: string): string | undefined {
  if (key.length > MAX_API_KEY_LENGTH)
    return `The API key is ${key.length} characters long; keys are at most ${MAX_API_KEY_LENGTH}. Paste only the key.`;
  for (const char of key) {
    const code = char.codePointAt(0) ?? 0;
    // Printable ISO-8859-1: what an HTTP header value can carry, minus control characters.
    const printable = (code >= 0x21 && code <= 0x7e) || (code >= 0xa1 && code <= 0xff);
    if (!printable) {
      const shown = code < 0x20 || code === 0x7f ? "a control character" : `“${char}”`;
      const what = code === 0x20 || code === 0xa0 ? "a space" : shown;
      return `The API key contains ${what} (U+${code.toString(16).toUpperCase().padStart(4, "0")}), which an HTTP header cannot carry. API keys are plain ASCII: copy it again from your provider.`;
    }
  }
  return undefined;
}

/** Why `model` is not a model id the demo sends, or undefined when it is. */
export function modelProblem(model: string): string | undefined {
  if (model.length > MAX_MODEL_LENGTH)
    return `The model id is ${model.length} characters long; ids are at most ${MAX_MODEL_LENGTH}, e.g. gpt-4o-mini.`;
  if (model !== "" && !MODEL_PATTERN.test(model)) {
    const bad = [...model].find((char) => !MODEL_PATTERN.test(char)) ?? "";
    const what = /\s/.test(bad) ? "a space" : `“${bad}”`;
    return `The model id contains ${what}; ids use letters, digits and . _ - : / @ + (e.g. gpt-4o-mini, llama3.1:8b).`;
  }
  return undefined;
}
